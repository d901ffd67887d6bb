-- Identity by id: see migrations/sqlite/0004_user_ids.sql for the ids.
-- (MySQL evaluates SET assignments left to right, and a TEMPORARY table may
-- appear only once per statement: hence the order below.)

ALTER TABLE users MODIFY owner VARCHAR(200);
UPDATE users SET owner = CONCAT('a-', nick_key) WHERE owner = 'account' OR (owner IS NULL AND password_hash IS NOT NULL);
UPDATE users SET owner = CONCAT('s-', REPLACE(REPLACE(SUBSTRING(owner, 6), '%', '%25'), ':', '%3A')) WHERE owner LIKE 'site:%';
CREATE INDEX users_owner ON users (owner);

ALTER TABLE messages
    ADD COLUMN sender_id VARCHAR(200) NOT NULL DEFAULT '',
    MODIFY conv VARCHAR(300) NOT NULL;
UPDATE messages SET sender_id = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = LOWER(messages.sender) AND u.owner IS NOT NULL),
    CONCAT('l-', LOWER(messages.sender)));

CREATE TEMPORARY TABLE dm_map (
    conv VARCHAR(300) PRIMARY KEY,
    a VARCHAR(32) NOT NULL,
    b VARCHAR(32) NOT NULL,
    ia VARCHAR(200) NOT NULL DEFAULT '',
    ib VARCHAR(200) NOT NULL DEFAULT ''
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO dm_map (conv, a, b)
    SELECT DISTINCT conv, SUBSTRING_INDEX(SUBSTRING_INDEX(conv, ':', 2), ':', -1), SUBSTRING_INDEX(conv, ':', -1)
    FROM messages WHERE conv LIKE 'd:%';
UPDATE dm_map SET
    ia = COALESCE((SELECT u.owner FROM users u WHERE u.nick_key = dm_map.a AND u.owner IS NOT NULL
                   AND (SELECT COUNT(*) FROM users u2 WHERE u2.owner = u.owner) = 1), CONCAT('l-', a)),
    ib = COALESCE((SELECT u.owner FROM users u WHERE u.nick_key = dm_map.b AND u.owner IS NOT NULL
                   AND (SELECT COUNT(*) FROM users u2 WHERE u2.owner = u.owner) = 1), CONCAT('l-', b));
UPDATE messages m JOIN dm_map x ON m.conv = x.conv
   SET m.conv = CONCAT('d:', LEAST(x.ia, x.ib), ':', GREATEST(x.ia, x.ib));
DROP TEMPORARY TABLE dm_map;

ALTER TABLE room_members CHANGE nick_key member VARCHAR(200) NOT NULL;
UPDATE room_members SET member = COALESCE(
    (SELECT u.owner FROM users u WHERE u.nick_key = room_members.member AND u.owner IS NOT NULL),
    CONCAT('n-', member));

ALTER TABLE auth_sessions
    CHANGE nick_key user_id VARCHAR(200) NOT NULL,
    ADD COLUMN nick VARCHAR(32) NOT NULL DEFAULT '';
UPDATE auth_sessions SET nick = user_id, user_id = CONCAT('a-', nick);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);
