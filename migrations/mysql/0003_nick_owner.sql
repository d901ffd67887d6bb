-- The identity that owns a nick: 'account' or 'site:<sub>'. The first
-- non-guest to use a nick owns it; nobody else may register or use it.
ALTER TABLE users ADD COLUMN owner VARCHAR(200);
