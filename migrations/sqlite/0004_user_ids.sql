-- Identity by id: what a user owns (its messages, its direct-message
-- conversations, memberships and roles, login sessions) belongs to a
-- stable user id, never to a nick that someone else may hold later.
-- Ids: 'a-…' accounts, 's-<sub>' site users (the site's `sub`, with '%'
-- and ':' percent-encoded), 'g-…' guests (one per guest identity), and
-- 'l-<nick>' for senders of messages stored before ids whose nick nobody
-- owned (no one can ever act as them). A membership granted to a nick that
-- nobody owns yet is 'n-<nick>': only the site user of that nick claims it.

-- users.owner is now the id of the identity that owns the nick.
UPDATE users SET owner = 'a-' || nick_key WHERE owner = 'account' OR (owner IS NULL AND password_hash IS NOT NULL);
UPDATE users SET owner = 's-' || replace(replace(substr(owner, 6), '%', '%25'), ':', '%3A') WHERE owner LIKE 'site:%';
CREATE INDEX users_owner ON users (owner);

-- Who sent a message.
ALTER TABLE messages ADD COLUMN sender_id TEXT NOT NULL DEFAULT '';
UPDATE messages SET sender_id = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = lower(messages.sender) AND u.owner IS NOT NULL),
    'l-' || lower(messages.sender));

-- A direct-message conversation is 'd:<id>:<id>' (the two ids in byte
-- order). A nick maps to its owner's id when that owner owns no other nick
-- (so two old conversations never become one), else to 'l-<nick>'.
CREATE TEMP TABLE nick_ids AS
    SELECT nick_key,
           CASE WHEN owner IS NOT NULL AND (SELECT COUNT(*) FROM users u2 WHERE u2.owner = users.owner) = 1
                THEN owner ELSE 'l-' || nick_key END AS id
    FROM users;
CREATE TEMP TABLE dm_map AS
    SELECT conv,
           substr(conv, 3, instr(substr(conv, 3), ':') - 1) AS a,
           substr(conv, 3 + instr(substr(conv, 3), ':')) AS b,
           '' AS new_conv
    FROM (SELECT DISTINCT conv FROM messages WHERE conv LIKE 'd:%');
UPDATE dm_map SET new_conv = (
    SELECT 'd:' || min(ia, ib) || ':' || max(ia, ib) FROM (
        SELECT COALESCE((SELECT id FROM nick_ids WHERE nick_key = dm_map.a), 'l-' || dm_map.a) AS ia,
               COALESCE((SELECT id FROM nick_ids WHERE nick_key = dm_map.b), 'l-' || dm_map.b) AS ib));
UPDATE messages SET conv = (SELECT new_conv FROM dm_map WHERE dm_map.conv = messages.conv) WHERE conv LIKE 'd:%';
DROP TABLE dm_map;
DROP TABLE nick_ids;

-- Memberships and roles belong to ids; a grant to a nick nobody owns waits
-- as 'n-<nick>'.
ALTER TABLE room_members RENAME COLUMN nick_key TO member;
UPDATE room_members SET member = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = room_members.member AND u.owner IS NOT NULL),
    'n-' || member);

-- Login sessions belong to ids; `nick` is the nick a guest holds.
ALTER TABLE auth_sessions RENAME COLUMN nick_key TO user_id;
ALTER TABLE auth_sessions ADD COLUMN nick TEXT NOT NULL DEFAULT '';
UPDATE auth_sessions SET nick = user_id, user_id = 'a-' || user_id;
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);
