//! The per-backend SQL: every query the store runs, written once per
//! dialect (SQLite, PostgreSQL, MySQL/MariaDB), side by side, with bind
//! parameters only. What differs: placeholders (`?` or `$n`), upserts
//! (`ON CONFLICT … DO UPDATE` or `ON DUPLICATE KEY UPDATE`),
//! insert-or-ignore (`INSERT OR IGNORE`, `ON CONFLICT DO NOTHING`,
//! `INSERT IGNORE`) and the integer casts of `MAX(seq)`.

/// The columns `decode` reads, in its order: a message, then the sender,
/// text and deleted flag of the message it answers (NULL if none).
macro_rules! message_columns {
    () => {
        "m.msg_id, m.conv, m.seq, m.room, m.sender, m.recipient, m.text, m.attachments, m.sent_at, m.edited_at, \
         m.deleted, m.sender_id, m.reply_to, p.sender, p.text, p.deleted, m.mentions \
         FROM messages m LEFT JOIN messages p ON p.msg_id = m.reply_to "
    };
}

/// One dialect's SQL.
pub(super) struct Dialect {
    /// `INSERT … INTO messages (…)`; `VALUES` rows follow.
    pub(super) insert_messages: &'static str,
    /// The same, skipping rows whose `msg_id` (or conv and seq) is stored
    /// already: `archive_prefix`, the rows, then `archive_suffix`.
    pub(super) archive_prefix: &'static str,
    pub(super) archive_suffix: &'static str,
    pub(super) last_seq: &'static str,
    /// Newest first: conv, below (exclusive), upto (inclusive), limit.
    pub(super) page_down: &'static str,
    /// Oldest first: conv, above (exclusive), upto (inclusive), limit.
    pub(super) page_up: &'static str,
    /// Oldest first: conv, from (inclusive ms), to (exclusive ms), limit.
    pub(super) transcript: &'static str,
    pub(super) message: &'static str,
    pub(super) edit: &'static str,
    pub(super) delete: &'static str,
    pub(super) room: &'static str,
    /// name_key, name, topic, created_at: insert, or set the topic.
    pub(super) upsert_topic: &'static str,
    /// nick_key, nick, at (created_at and last_seen).
    pub(super) upsert_user: &'static str,
    pub(super) last_seen: &'static str,
    /// nick_key → the users row.
    pub(super) account: &'static str,
    /// Registers a nick that was only seen as a guest: hash, nick, nick_key.
    pub(super) claim_account: &'static str,
    /// nick_key, nick, password_hash, created_at, last_seen.
    pub(super) insert_account: &'static str,
    /// display_name, status, avatar, settings (each NULL = unchanged), nick_key.
    pub(super) update_profile: &'static str,
    /// password_hash, nick_key (an account's: its hash is not NULL).
    pub(super) set_password: &'static str,
    /// token_hash, nick_key, created_at, expires_at.
    pub(super) insert_session: &'static str,
    /// owner, nick_key: claims a nick nobody owns yet.
    pub(super) claim_owner: &'static str,
    /// token_hash, now → nick_key.
    pub(super) session_user: &'static str,
    /// name_key, name, topic, private, managed, created_at, secret.
    pub(super) insert_room: &'static str,
    /// name_key.
    pub(super) delete_room: &'static str,
    /// conv: a destroyed room's messages.
    pub(super) delete_messages: &'static str,
    /// room_key.
    pub(super) delete_members: &'static str,
    /// room_key, nick_key, role.
    pub(super) upsert_member: &'static str,
    /// room_key, nick_key.
    pub(super) remove_member: &'static str,
    /// room_key, nick_key → role.
    pub(super) member_role: &'static str,
    /// member → the keys of the rooms it is a member of.
    pub(super) member_rooms: &'static str,
    /// every named room.
    pub(super) list_rooms: &'static str,
    /// name_key, name, created_at: a row for a room made by joining (it
    /// keeps the settings), unless there is one.
    pub(super) ensure_room: &'static str,
    /// moderated, topic_lock, private, secret, join_key, member_limit, name_key.
    pub(super) reset_room_modes: &'static str,
    /// The same, each NULL leaving its column as it is.
    pub(super) change_room_modes: &'static str,
    /// room_key → mask, set_by, set_at, oldest first.
    pub(super) room_bans: &'static str,
    /// room_key, mask, set_by, set_at: unless it is there already.
    pub(super) add_ban: &'static str,
    /// room_key, mask.
    pub(super) remove_ban: &'static str,
    /// room_key: a destroyed room's bans.
    pub(super) delete_bans: &'static str,
    /// id, pending member: hands a pending grant to the id (a room where
    /// the id is a member already keeps the id's own row).
    pub(super) claim_grants: &'static str,
    /// member: any row (a pending grant reserves its nick).
    pub(super) has_member_rows: &'static str,
    /// member: every row of it.
    pub(super) delete_member_rows: &'static str,
    /// owner id → its account row (the same columns as `account`).
    pub(super) account_by_id: &'static str,
    /// expires_at, user_id.
    pub(super) expire_sessions: &'static str,
    /// nick key, now → a live guest session holding the nick.
    pub(super) guest_holder: &'static str,
    /// now: forget expired sessions.
    pub(super) delete_expired_sessions: &'static str,
    /// owner id → the nick it used last.
    pub(super) nick_of_owner: &'static str,
    /// until, now: every live guest token ends at `until` at the latest.
    pub(super) end_guest_sessions: &'static str,
    /// id, owner, name, content_type, size, width, height, thumb, created_at.
    pub(super) insert_upload: &'static str,
    /// id → the uploads row.
    pub(super) upload: &'static str,
    /// msg_id, attached_at, id, owner, owner: an upload of one of the two owners that no message carries yet.
    pub(super) attach_upload: &'static str,
    /// msg_id: its uploads are free again (its publish failed).
    pub(super) detach_uploads: &'static str,
    /// msg_id → id, thumb of the uploads it carries.
    pub(super) message_uploads: &'static str,
    /// id.
    pub(super) delete_upload: &'static str,
    /// unattached before, gone-message before, limit → id, thumb: uploads never attached in time, of a deleted message, or of a message that has been missing for long (a failed publish, a destroyed room).
    pub(super) stale_uploads: &'static str,
    /// msg_id, user_id, emoji, nick, created_at: a reaction, unless it is there already.
    pub(super) add_reaction: &'static str,
    /// msg_id, user_id, emoji.
    pub(super) remove_reaction: &'static str,
    /// msg_id → each emoji it carries, once.
    pub(super) reaction_emoji: &'static str,
    /// msg_id: a deleted message's reactions.
    pub(super) delete_reactions: &'static str,
    /// conv: a destroyed room's reactions.
    pub(super) delete_conv_reactions: &'static str,
    /// The text search condition around the query's one bind.
    pub(super) fts_match: (&'static str, &'static str),
    /// How the engine reads a query (see `social::fts_query`).
    pub(super) fts: Fts,
    /// `'r:' || <column>` around a room key column: its conversation key.
    pub(super) room_conv: (&'static str, &'static str),
}

/// The three full-text query syntaxes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fts {
    /// SQLite FTS5 `MATCH`.
    Fts5,
    /// PostgreSQL `to_tsquery`.
    Tsquery,
    /// MySQL/MariaDB `MATCH … AGAINST (… IN BOOLEAN MODE)`.
    Boolean,
}

pub(super) const SQLITE: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_prefix: "INSERT OR IGNORE INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_suffix: "",
    last_seq: "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?",
    page_down: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.seq < ? AND m.seq <= ? ORDER BY m.seq DESC LIMIT ?"
    ),
    page_up: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.seq > ? AND m.seq <= ? ORDER BY m.seq ASC LIMIT ?"
    ),
    transcript: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.sent_at >= ? AND m.sent_at < ? ORDER BY m.seq ASC LIMIT ?"
    ),
    message: concat!("SELECT ", message_columns!(), "WHERE m.msg_id = ?"),
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?), r.private, r.managed, r.moderated, r.topic_lock, r.secret, r.join_key, r.member_limit \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = ?",
    claim_account: "UPDATE users SET password_hash = ?, nick = ?, owner = ? WHERE nick_key = ? AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES (?, ?, ?, ?, ?, ?)",
    update_profile: "UPDATE users SET display_name = COALESCE(?, display_name), status = COALESCE(?, status), avatar = COALESCE(?, avatar), settings = COALESCE(?, settings) WHERE nick_key = ?",
    set_password: "UPDATE users SET password_hash = ? WHERE nick_key = ? AND password_hash IS NOT NULL",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    claim_owner: "UPDATE users SET owner = ? WHERE nick_key = ? AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = ? AND expires_at > ?",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at, secret) VALUES (?, ?, ?, ?, ?, ?, ?)",
    delete_room: "DELETE FROM rooms WHERE name_key = ?",
    delete_messages: "DELETE FROM messages WHERE conv = ?",
    delete_members: "DELETE FROM room_members WHERE room_key = ?",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES (?, ?, ?) ON CONFLICT (room_key, member) DO UPDATE SET role = excluded.role",
    remove_member: "DELETE FROM room_members WHERE room_key = ? AND member = ?",
    member_role: "SELECT role FROM room_members WHERE room_key = ? AND member = ?",
    member_rooms: "SELECT room_key FROM room_members WHERE member = ? ORDER BY room_key",
    list_rooms: "SELECT name, topic, private, managed, secret FROM rooms ORDER BY name_key",
    ensure_room: "INSERT OR IGNORE INTO rooms (name_key, name, created_at) VALUES (?, ?, ?)",
    reset_room_modes: "UPDATE rooms SET moderated = FALSE, topic_lock = NULL, private = FALSE, secret = FALSE, join_key = '', member_limit = 0 WHERE name_key = ?",
    change_room_modes: "UPDATE rooms SET moderated = COALESCE(?, moderated), topic_lock = COALESCE(?, topic_lock), private = COALESCE(?, private), secret = COALESCE(?, secret), join_key = COALESCE(?, join_key), member_limit = COALESCE(?, member_limit) WHERE name_key = ?",
    room_bans: "SELECT mask, set_by, set_at FROM room_bans WHERE room_key = ? ORDER BY set_at, mask",
    add_ban: "INSERT OR IGNORE INTO room_bans (room_key, mask, set_by, set_at) VALUES (?, ?, ?, ?)",
    remove_ban: "DELETE FROM room_bans WHERE room_key = ? AND mask = ?",
    delete_bans: "DELETE FROM room_bans WHERE room_key = ?",
    claim_grants: "UPDATE OR IGNORE room_members SET member = ? WHERE member = ?",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = ?",
    delete_member_rows: "DELETE FROM room_members WHERE member = ?",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = ? AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id = ?",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = ? AND expires_at > ? AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= ?",
    nick_of_owner: "SELECT nick FROM users WHERE owner = ? ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id LIKE 'g-%' AND expires_at > ?",
    insert_upload: "INSERT INTO uploads (id, owner, name, content_type, size, width, height, thumb, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    upload: "SELECT id, owner, name, content_type, size, width, height, thumb, created_at, msg_id FROM uploads WHERE id = ?",
    attach_upload: "UPDATE uploads SET msg_id = ?, attached_at = ? WHERE id = ? AND (owner = ? OR owner = ?) AND msg_id IS NULL",
    detach_uploads: "UPDATE uploads SET msg_id = NULL, attached_at = NULL WHERE msg_id = ?",
    message_uploads: "SELECT id, thumb FROM uploads WHERE msg_id = ?",
    delete_upload: "DELETE FROM uploads WHERE id = ?",
    stale_uploads: "SELECT id, thumb FROM uploads WHERE (msg_id IS NULL AND created_at < ?) OR (msg_id IS NOT NULL AND (EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id AND m.deleted = TRUE) OR (attached_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id)))) LIMIT ?",
    add_reaction: "INSERT OR IGNORE INTO reactions (msg_id, user_id, emoji, nick, created_at) VALUES (?, ?, ?, ?, ?)",
    remove_reaction: "DELETE FROM reactions WHERE msg_id = ? AND user_id = ? AND emoji = ?",
    reaction_emoji: "SELECT DISTINCT emoji FROM reactions WHERE msg_id = ?",
    delete_reactions: "DELETE FROM reactions WHERE msg_id = ?",
    delete_conv_reactions: "DELETE FROM reactions WHERE msg_id IN (SELECT msg_id FROM messages WHERE conv = ?)",
    fts_match: ("m.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ", ")"),
    fts: Fts::Fts5,
    room_conv: ("'r:' || ", ""),
};

pub(super) const POSTGRES: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_prefix: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_suffix: " ON CONFLICT DO NOTHING",
    last_seq: "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1",
    page_down: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = $1 AND m.seq < $2 AND m.seq <= $3 ORDER BY m.seq DESC LIMIT $4"
    ),
    page_up: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = $1 AND m.seq > $2 AND m.seq <= $3 ORDER BY m.seq ASC LIMIT $4"
    ),
    transcript: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = $1 AND m.sent_at >= $2 AND m.sent_at < $3 ORDER BY m.seq ASC LIMIT $4"
    ),
    message: concat!("SELECT ", message_columns!(), "WHERE m.msg_id = $1"),
    edit: "UPDATE messages SET text = $1, edited_at = $2 WHERE msg_id = $3 AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = $1",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1), r.private, r.managed, r.moderated, r.topic_lock, r.secret, r.join_key, r.member_limit \
           FROM rooms r WHERE r.name_key = $2",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES ($1, $2, $3, $4) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = $1",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = $1",
    claim_account: "UPDATE users SET password_hash = $1, nick = $2, owner = $3 WHERE nick_key = $4 AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES ($1, $2, $3, $4, $5, $6)",
    update_profile: "UPDATE users SET display_name = COALESCE($1, display_name), status = COALESCE($2, status), avatar = COALESCE($3, avatar), settings = COALESCE($4, settings) WHERE nick_key = $5",
    set_password: "UPDATE users SET password_hash = $1 WHERE nick_key = $2 AND password_hash IS NOT NULL",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    claim_owner: "UPDATE users SET owner = $1 WHERE nick_key = $2 AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = $1 AND expires_at > $2",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at, secret) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    delete_room: "DELETE FROM rooms WHERE name_key = $1",
    delete_messages: "DELETE FROM messages WHERE conv = $1",
    delete_members: "DELETE FROM room_members WHERE room_key = $1",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES ($1, $2, $3) ON CONFLICT (room_key, member) DO UPDATE SET role = excluded.role",
    remove_member: "DELETE FROM room_members WHERE room_key = $1 AND member = $2",
    member_role: "SELECT role FROM room_members WHERE room_key = $1 AND member = $2",
    member_rooms: "SELECT room_key FROM room_members WHERE member = $1 ORDER BY room_key",
    list_rooms: "SELECT name, topic, private, managed, secret FROM rooms ORDER BY name_key",
    ensure_room: "INSERT INTO rooms (name_key, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name_key) DO NOTHING",
    reset_room_modes: "UPDATE rooms SET moderated = FALSE, topic_lock = NULL, private = FALSE, secret = FALSE, join_key = '', member_limit = 0 WHERE name_key = $1",
    change_room_modes: "UPDATE rooms SET moderated = COALESCE($1, moderated), topic_lock = COALESCE($2, topic_lock), private = COALESCE($3, private), secret = COALESCE($4, secret), join_key = COALESCE($5, join_key), member_limit = COALESCE($6, member_limit) WHERE name_key = $7",
    room_bans: "SELECT mask, set_by, set_at FROM room_bans WHERE room_key = $1 ORDER BY set_at, mask",
    add_ban: "INSERT INTO room_bans (room_key, mask, set_by, set_at) VALUES ($1, $2, $3, $4) ON CONFLICT (room_key, mask) DO NOTHING",
    remove_ban: "DELETE FROM room_bans WHERE room_key = $1 AND mask = $2",
    delete_bans: "DELETE FROM room_bans WHERE room_key = $1",
    claim_grants: "UPDATE room_members SET member = $1 WHERE member = $2 AND NOT EXISTS (SELECT 1 FROM room_members r2 WHERE r2.room_key = room_members.room_key AND r2.member = $1)",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = $1",
    delete_member_rows: "DELETE FROM room_members WHERE member = $1",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = $1 AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = $1 WHERE user_id = $2",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = $1 AND expires_at > $2 AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= $1",
    nick_of_owner: "SELECT nick FROM users WHERE owner = $1 ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = $1 WHERE user_id LIKE 'g-%' AND expires_at > $2",
    insert_upload: "INSERT INTO uploads (id, owner, name, content_type, size, width, height, thumb, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    upload: "SELECT id, owner, name, content_type, size, width, height, thumb, created_at, msg_id FROM uploads WHERE id = $1",
    attach_upload: "UPDATE uploads SET msg_id = $1, attached_at = $2 WHERE id = $3 AND (owner = $4 OR owner = $5) AND msg_id IS NULL",
    detach_uploads: "UPDATE uploads SET msg_id = NULL, attached_at = NULL WHERE msg_id = $1",
    message_uploads: "SELECT id, thumb FROM uploads WHERE msg_id = $1",
    delete_upload: "DELETE FROM uploads WHERE id = $1",
    stale_uploads: "SELECT id, thumb FROM uploads WHERE (msg_id IS NULL AND created_at < $1) OR (msg_id IS NOT NULL AND (EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id AND m.deleted = TRUE) OR (attached_at < $2 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id)))) LIMIT $3",
    add_reaction: "INSERT INTO reactions (msg_id, user_id, emoji, nick, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    remove_reaction: "DELETE FROM reactions WHERE msg_id = $1 AND user_id = $2 AND emoji = $3",
    reaction_emoji: "SELECT DISTINCT emoji FROM reactions WHERE msg_id = $1",
    delete_reactions: "DELETE FROM reactions WHERE msg_id = $1",
    delete_conv_reactions: "DELETE FROM reactions WHERE msg_id IN (SELECT msg_id FROM messages WHERE conv = $1)",
    fts_match: ("m.msg_id IN (SELECT msg_id FROM message_search WHERE search @@ to_tsquery('simple', ", "))"),
    fts: Fts::Tsquery,
    room_conv: ("'r:' || ", ""),
};

pub(super) const MYSQL: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_prefix: "INSERT IGNORE INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id, reply_to, mentions) ",
    archive_suffix: "",
    last_seq: "SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?",
    page_down: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.seq < ? AND m.seq <= ? ORDER BY m.seq DESC LIMIT ?"
    ),
    page_up: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.seq > ? AND m.seq <= ? ORDER BY m.seq ASC LIMIT ?"
    ),
    transcript: concat!(
        "SELECT ",
        message_columns!(),
        "WHERE m.conv = ? AND m.sent_at >= ? AND m.sent_at < ? ORDER BY m.seq ASC LIMIT ?"
    ),
    message: concat!("SELECT ", message_columns!(), "WHERE m.msg_id = ?"),
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?), r.private, r.managed, r.moderated, r.topic_lock, r.secret, r.join_key, r.member_limit \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON DUPLICATE KEY UPDATE topic = VALUES(topic)",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = ?",
    claim_account: "UPDATE users SET password_hash = ?, nick = ?, owner = ? WHERE nick_key = ? AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES (?, ?, ?, ?, ?, ?)",
    update_profile: "UPDATE users SET display_name = COALESCE(?, display_name), status = COALESCE(?, status), avatar = COALESCE(?, avatar), settings = COALESCE(?, settings) WHERE nick_key = ?",
    set_password: "UPDATE users SET password_hash = ? WHERE nick_key = ? AND password_hash IS NOT NULL",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    claim_owner: "UPDATE users SET owner = ? WHERE nick_key = ? AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = ? AND expires_at > ?",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at, secret) VALUES (?, ?, ?, ?, ?, ?, ?)",
    delete_room: "DELETE FROM rooms WHERE name_key = ?",
    delete_messages: "DELETE FROM messages WHERE conv = ?",
    delete_members: "DELETE FROM room_members WHERE room_key = ?",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
    remove_member: "DELETE FROM room_members WHERE room_key = ? AND member = ?",
    member_role: "SELECT role FROM room_members WHERE room_key = ? AND member = ?",
    member_rooms: "SELECT room_key FROM room_members WHERE member = ? ORDER BY room_key",
    list_rooms: "SELECT name, topic, private, managed, secret FROM rooms ORDER BY name_key",
    ensure_room: "INSERT IGNORE INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, '', ?)",
    reset_room_modes: "UPDATE rooms SET moderated = FALSE, topic_lock = NULL, private = FALSE, secret = FALSE, join_key = '', member_limit = 0 WHERE name_key = ?",
    change_room_modes: "UPDATE rooms SET moderated = COALESCE(?, moderated), topic_lock = COALESCE(?, topic_lock), private = COALESCE(?, private), secret = COALESCE(?, secret), join_key = COALESCE(?, join_key), member_limit = COALESCE(?, member_limit) WHERE name_key = ?",
    room_bans: "SELECT mask, set_by, set_at FROM room_bans WHERE room_key = ? ORDER BY set_at, mask",
    add_ban: "INSERT IGNORE INTO room_bans (room_key, mask, set_by, set_at) VALUES (?, ?, ?, ?)",
    remove_ban: "DELETE FROM room_bans WHERE room_key = ? AND mask = ?",
    delete_bans: "DELETE FROM room_bans WHERE room_key = ?",
    claim_grants: "UPDATE IGNORE room_members SET member = ? WHERE member = ?",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = ?",
    delete_member_rows: "DELETE FROM room_members WHERE member = ?",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = ? AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id = ?",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = ? AND expires_at > ? AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= ?",
    nick_of_owner: "SELECT nick FROM users WHERE owner = ? ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id LIKE 'g-%' AND expires_at > ?",
    insert_upload: "INSERT INTO uploads (id, owner, name, content_type, size, width, height, thumb, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    upload: "SELECT id, owner, name, content_type, size, width, height, thumb, created_at, msg_id FROM uploads WHERE id = ?",
    attach_upload: "UPDATE uploads SET msg_id = ?, attached_at = ? WHERE id = ? AND (owner = ? OR owner = ?) AND msg_id IS NULL",
    detach_uploads: "UPDATE uploads SET msg_id = NULL, attached_at = NULL WHERE msg_id = ?",
    message_uploads: "SELECT id, thumb FROM uploads WHERE msg_id = ?",
    delete_upload: "DELETE FROM uploads WHERE id = ?",
    stale_uploads: "SELECT id, thumb FROM uploads WHERE (msg_id IS NULL AND created_at < ?) OR (msg_id IS NOT NULL AND (EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id AND m.deleted = TRUE) OR (attached_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.msg_id = uploads.msg_id)))) LIMIT ?",
    add_reaction: "INSERT IGNORE INTO reactions (msg_id, user_id, emoji, nick, created_at) VALUES (?, ?, ?, ?, ?)",
    remove_reaction: "DELETE FROM reactions WHERE msg_id = ? AND user_id = ? AND emoji = ?",
    reaction_emoji: "SELECT DISTINCT emoji FROM reactions WHERE msg_id = ?",
    delete_reactions: "DELETE FROM reactions WHERE msg_id = ?",
    delete_conv_reactions: "DELETE FROM reactions WHERE msg_id IN (SELECT msg_id FROM messages WHERE conv = ?)",
    fts_match: ("MATCH (m.text) AGAINST (", " IN BOOLEAN MODE)"),
    fts: Fts::Boolean,
    room_conv: ("CONCAT('r:', ", ")"),
};
