-- Room settings (IRC's channel modes, for every door; see docs/protocol.md
-- "mode"). `private` stays what it was: only members join (+i, invite-only;
-- an invite makes a member). What private rooms also were, left out of room
-- lists, is now its own flag, `secret` (+s), set for the existing ones.
ALTER TABLE rooms ADD COLUMN moderated BOOLEAN NOT NULL DEFAULT FALSE;  -- +m
ALTER TABLE rooms ADD COLUMN topic_lock BOOLEAN;                        -- +t; NULL: locked if managed or private
ALTER TABLE rooms ADD COLUMN secret BOOLEAN NOT NULL DEFAULT FALSE;     -- +s
ALTER TABLE rooms ADD COLUMN join_key TEXT NOT NULL DEFAULT '';         -- +k; '': none
ALTER TABLE rooms ADD COLUMN member_limit INTEGER NOT NULL DEFAULT 0;   -- +l; 0: none
UPDATE rooms SET secret = private;

-- Bans (+b): masks `nick!user@host` with `*` and `?`, matched on join and
-- on say. A ban is a denial: it names no user and gives nobody anything.
CREATE TABLE room_bans (
    room_key TEXT NOT NULL,
    mask     TEXT NOT NULL,              -- case-folded
    set_by   TEXT NOT NULL,              -- the nick shown in the ban list
    set_at   BIGINT NOT NULL,            -- ms since the epoch
    PRIMARY KEY (room_key, mask)
);
