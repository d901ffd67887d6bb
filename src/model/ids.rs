//! User ids: what a user owns (its messages, its direct-message
//! conversations, memberships, roles, login sessions) belongs to an id,
//! never to a nick. A nick is a handle that one identity holds at a time;
//! a later holder of the same nick inherits nothing.
//!
//! Ids are short ASCII strings that never contain `:` (conversation keys
//! are `d:<id>:<id>`):
//! - `a-<ulid>`: an account (accounts registered before ids: `a-<nick>`);
//! - `s-<sub>`: a site user, the site's `sub` with `%` and `:` percent-encoded;
//! - `g-<ulid>`: a guest identity, from its first `hello` until its last
//!   session ends and the reconnect grace period is over;
//! - `l-<nick>`: the sender of a message stored before ids, whose nick
//!   nobody owned (nobody can act as it);
//! - `n-<nick>`: not a user but a membership granted to a nick that nobody
//!   owns yet; only the site user of that nick claims it.

use std::sync::Mutex;

use ulid::{Generator, Ulid};

/// A new message's id. Ids made by one process increase, also within a
/// millisecond, so messages stored in the same millisecond keep the order
/// they were made in wherever the order falls back to the id (search
/// results across conversations, `before` paging).
pub fn new_message() -> Ulid {
    static IDS: Mutex<Generator> = Mutex::new(Generator::new());
    let mut ids = IDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ids.generate().unwrap_or_else(|overflow| overflow.commit_overflow_random())
}

/// The id of the site user with this `sub`.
pub fn site(sub: &str) -> String {
    format!("s-{}", sub.replace('%', "%25").replace(':', "%3A"))
}

/// A new account's id.
pub fn new_account() -> String {
    format!("a-{}", Ulid::generate().to_string().to_ascii_lowercase())
}

/// A new guest identity's id.
pub fn new_guest() -> String {
    format!("g-{}", Ulid::generate().to_string().to_ascii_lowercase())
}

/// Whether `id` is a guest identity's.
pub fn is_guest(id: &str) -> bool {
    id.starts_with("g-")
}

/// The placeholder member of a grant to a nick nobody owns yet.
pub fn pending_grant(nick_key: &str) -> String {
    format!("n-{nick_key}")
}

/// The sender id of messages the server itself says (HTTP publish without `from`).
pub const SERVER: &str = "server";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_hold_a_colon() {
        assert_eq!(site("42"), "s-42");
        assert_eq!(site("a:b%c"), "s-a%3Ab%25c");
        assert!(!new_account().contains(':') && !new_guest().contains(':'));
        assert!(is_guest(&new_guest()) && !is_guest(&new_account()) && !is_guest(&site("g")));
        assert_ne!(new_guest(), new_guest());
    }
}
