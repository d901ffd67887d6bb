-- Identity by id: see migrations/sqlite/0004_user_ids.sql for the ids.

UPDATE users SET owner = 'a-' || nick_key WHERE owner = 'account' OR (owner IS NULL AND password_hash IS NOT NULL);
UPDATE users SET owner = 's-' || replace(replace(substr(owner, 6), '%', '%25'), ':', '%3A') WHERE owner LIKE 'site:%';
CREATE INDEX users_owner ON users (owner);

ALTER TABLE messages ADD COLUMN sender_id TEXT NOT NULL DEFAULT '';
UPDATE messages SET sender_id = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = lower(messages.sender) AND u.owner IS NOT NULL),
    'l-' || lower(messages.sender));

CREATE TEMP TABLE nick_ids AS
    SELECT nick_key,
           CASE WHEN owner IS NOT NULL AND (SELECT COUNT(*) FROM users u2 WHERE u2.owner = users.owner) = 1
                THEN owner ELSE 'l-' || nick_key END AS id
    FROM users;
CREATE TEMP TABLE dm_map AS
    SELECT d.conv,
           COALESCE(na.id, 'l-' || d.a) AS ia,
           COALESCE(nb.id, 'l-' || d.b) AS ib
    FROM (SELECT DISTINCT conv, split_part(conv, ':', 2) AS a, split_part(conv, ':', 3) AS b
          FROM messages WHERE conv LIKE 'd:%') d
    LEFT JOIN nick_ids na ON na.nick_key = d.a
    LEFT JOIN nick_ids nb ON nb.nick_key = d.b;
-- Byte order, as the server compares ids.
UPDATE messages m
   SET conv = 'd:' || LEAST(x.ia COLLATE "C", x.ib COLLATE "C") || ':' || GREATEST(x.ia COLLATE "C", x.ib COLLATE "C")
  FROM dm_map x
 WHERE m.conv = x.conv;
DROP TABLE dm_map;
DROP TABLE nick_ids;

ALTER TABLE room_members RENAME COLUMN nick_key TO member;
UPDATE room_members SET member = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = room_members.member AND u.owner IS NOT NULL),
    'n-' || member);

ALTER TABLE auth_sessions RENAME COLUMN nick_key TO user_id;
ALTER TABLE auth_sessions ADD COLUMN nick TEXT NOT NULL DEFAULT '';
UPDATE auth_sessions SET nick = user_id, user_id = 'a-' || user_id;
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);
