//! Reactions, replies and search: who may react to what, what a reply may
//! quote, and what a search may read. Each door (WebSocket, HTTP) calls
//! these with its caller.

use std::sync::Arc;

use ulid::Ulid;

use super::access::{forbidden, no_such_message};
use super::{Caller, Service, Session};
use crate::model::{Identity, Page, SearchQuery, SearchScope};
use crate::protocol::server::{Conv, ReplyRef, StoredMessage};
use crate::protocol::social::{check_emoji, search_words};
use crate::protocol::{ErrorCode, ProtoError, ServerFrame, Target, encode, now_ms};
use crate::store::sql::ReactionChange;

/// Longest reaction, in characters (PROTOCOL.md: 1 to 32).
pub(crate) const EMOJI_MAX_CHARS: usize = 32;

/// A search as a client asks for it.
pub(crate) struct SearchRequest {
    pub(crate) q: String,
    /// A room, the DM `with` a user, or everyone's messages; `None`:
    /// everything the caller may read.
    pub(crate) conv: Option<Target>,
    pub(crate) limit: Option<u64>,
    /// Only messages older than this one (the last of the previous page).
    pub(crate) before: Option<Ulid>,
}

impl Service {
    /// A stored message by id; in a cluster one sent moments ago may still
    /// be buffered in Redis, so the buffer is archived first.
    pub(crate) async fn find_message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, ProtoError> {
        if let Some(m) = self.store.message(msg_id).await? {
            return Ok(Some(m));
        }
        if !self.bus.clustered() {
            return Ok(None);
        }
        if !self.bus.settle().await {
            return Err(ProtoError::unavailable());
        }
        Ok(self.store.message(msg_id).await?)
    }

    /// What `reply_to` quotes: a message of the same conversation, not
    /// deleted; anything else is `invalid`.
    pub(crate) async fn reply_quote(&self, msg_id: Ulid, conv: &Conv) -> Result<Box<ReplyRef>, ProtoError> {
        match self.find_message(msg_id).await? {
            Some(m) if m.conv == *conv && !m.deleted => Ok(Box::new(ReplyRef::quote(m.msg_id, m.from, &m.text, false))),
            _ => Err(ProtoError::invalid(format!("`reply_to`: no message `{msg_id}` in this conversation"))),
        }
    }

    /// Searches what `who` may read (an API key: every room and the
    /// messages to everyone, no DMs), newest first.
    pub(crate) async fn search(
        &self,
        caller: &Caller,
        in_rooms: &[Arc<str>],
        r: &SearchRequest,
    ) -> Result<Page, ProtoError> {
        let in_room = |key: &str| in_rooms.iter().any(|k| **k == *key);
        let cfg = &self.config.search;
        let n = r.q.chars().count();
        if n > cfg.max_query_chars {
            let max = cfg.max_query_chars;
            return Err(ProtoError::invalid(format!("`q` is {n} characters; the limit is {max}")));
        }
        let words = search_words(&r.q, cfg.max_words);
        if words.is_empty() {
            return Err(ProtoError::invalid("`q` must hold at least one word (letters or digits)"));
        }
        let limit = match r.limit {
            Some(0) => return Err(ProtoError::invalid("`limit` must be at least 1")),
            Some(l) => (l as usize).min(cfg.max_limit),
            None => cfg.default_limit,
        };
        let me: Option<&Identity> = match caller {
            Caller::User(u) => Some(u),
            Caller::ApiKey => None,
        };
        let scope = match &r.conv {
            None => SearchScope::Readable {
                user_id: me.map(|u| u.id.clone()),
                member: me.map(|u| u.id.clone()),
                in_rooms: in_rooms.to_vec(),
                all_rooms: me.is_none_or(|u| u.admin),
            },
            Some(Target::Room(room)) => {
                let record = self.store.room(room.key()).await?;
                self.may_read_room(caller, in_room(room.key()), room, record.as_ref()).await?;
                SearchScope::Conv(Conv::Room(room.key().clone()))
            }
            Some(Target::User(u)) => {
                let Some(me) = me else {
                    return Err(ProtoError::invalid("`with`: an API key has no direct messages to search"));
                };
                if u.key() == me.nick.key() {
                    return Err(ProtoError::invalid("`with`: name the other party of the conversation"));
                }
                match self.user_of(u).await? {
                    Some(peer) => SearchScope::Conv(Conv::dm(&me.id, &peer.id)),
                    None => return Ok(Page::default()),
                }
            }
            Some(Target::Everyone) => SearchScope::Conv(Conv::Everyone),
        };
        // In a cluster the newest messages may still be buffered in Redis.
        if self.bus.clustered() && !self.bus.settle().await {
            return Err(ProtoError::unavailable());
        }
        let query = SearchQuery { words, scope, before: r.before, limit, min_word_chars: cfg.mysql_min_word_chars };
        match self.store.search(&query).await? {
            Some(page) => Ok(page),
            None => Err(ProtoError::invalid(format!(
                "`q`: every word is too short or too common to be in this server's index \
                 (words need at least {} letters)",
                cfg.mysql_min_word_chars
            ))),
        }
    }
}

impl Session {
    /// Adds (`on`) or takes back a reaction to a message this session can
    /// see: in a room it is in, a DM of its user, or to everyone. Everyone
    /// who can see the message gets `reaction` (this session only its
    /// `ack`); a reaction that changes nothing is told to nobody.
    pub(crate) async fn react(&mut self, msg_id: Ulid, emoji: &str, on: bool) -> Result<(), ProtoError> {
        let svc = self.svc.clone();
        check_emoji(emoji, EMOJI_MAX_CHARS)?;
        let msg = svc.find_message(msg_id).await?.filter(|m| !m.deleted).ok_or_else(|| no_such_message(msg_id))?;
        let me = &self.identity.id;
        match &msg.conv {
            Conv::Room(key) if self.handle.joined(key).is_none() => {
                let room = msg.room.as_deref().unwrap_or(key);
                return Err(ProtoError::new(ErrorCode::NotInRoom, format!("join `{room}` to react there")));
            }
            Conv::Room(key) => {
                svc.may_speak_here(&self.handle, key)?;
            }
            Conv::Dm(a, b) if a != me && b != me => return Err(no_such_message(msg_id)),
            Conv::Everyone if !svc.config.chat.allow_everyone => {
                return Err(forbidden("messages to everyone are disabled here"));
            }
            _ => {}
        }
        let nick: Arc<str> = self.handle.nick().shown().clone();
        let max = svc.config.reactions.max_emoji_per_message;
        match svc.store.react(msg_id, me, &nick, emoji, on, max, now_ms()).await? {
            ReactionChange::Unchanged => Ok(()),
            ReactionChange::TooMany => Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("this message has {max} different reactions already: use one of them"),
            )),
            ReactionChange::Changed => {
                let id = msg_id.to_string();
                svc.bus
                    .about_message(&msg, Some(self.handle.id), |place| {
                        encode(&ServerFrame::Reaction { msg_id: id.clone(), place, emoji, nick: &nick, on })
                    })
                    .await
            }
        }
    }

    /// Searches what this session's user may read (a private room only
    /// as a member, DMs only its own).
    pub(crate) async fn search(&self, r: &SearchRequest) -> Result<Page, ProtoError> {
        let caller = Caller::User(self.identity.clone());
        let in_rooms: Vec<Arc<str>> = self.handle.rooms().iter().map(|r| r.key.clone()).collect();
        self.svc.search(&caller, &in_rooms, r).await
    }
}
