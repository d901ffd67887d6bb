//! Messages: building one and handing it to the durable step (`say`, and
//! the HTTP API's publish), history, edits and deletions, transcripts.

use std::sync::Arc;

use tokio::sync::oneshot;
use ulid::Ulid;

use super::access::{forbidden, no_such_message, no_such_room};
use super::page::cap_page;
use super::{Caller, Service, Session};
use crate::hub::Route;
use crate::model::{HistoryQuery, NewMessage, Page, ids};
use crate::protocol::server::{Conv, Place, StoredMessage};
use crate::protocol::{ErrorCode, FrameId, Name, ProtoError, ServerFrame, Target, encode, now_ms};

/// Where a history page belongs, as its frame names it.
pub(crate) enum Where {
    Room(Arc<str>),
    With(Arc<str>),
    Everyone,
}

impl Where {
    pub(crate) fn place(&self) -> Place<'_> {
        match self {
            Where::Room(r) => Place::room(r),
            Where::With(n) => Place::with(n),
            Where::Everyone => Place::everyone(),
        }
    }
}

/// Which page of a conversation to read, as a client asks for it.
pub(crate) struct PageRequest {
    pub(crate) before: Option<u64>,
    pub(crate) after: Option<u64>,
    pub(crate) limit: Option<u64>,
}

impl Service {
    fn check_text(&self, text: &str, has_attachments: bool) -> Result<String, ProtoError> {
        crate::protocol::check_text(text, self.config.limits.max_text, has_attachments)
    }

    /// A history query for a client's request (`limit` capped).
    fn history_query(&self, r: &PageRequest) -> Result<HistoryQuery, ProtoError> {
        let limits = &self.config.limits;
        let limit = match r.limit {
            Some(0) => return Err(ProtoError::invalid("`limit` must be at least 1")),
            Some(n) => (n as usize).min(limits.history_max),
            None => limits.history_default,
        };
        Ok(HistoryQuery { before: r.before, after: r.after, upto: None, limit })
    }

    /// A page of a conversation, capped to fit one frame.
    async fn page(&self, conv: &Conv, query: HistoryQuery) -> Result<Page, ProtoError> {
        let mut page = self.bus.history(conv, query).await?;
        cap_page(&mut page, query.after.is_some(), self.config.limits.history_max_bytes);
        Ok(page)
    }

    /// Stores a message, then delivers it; the route hears the outcome.
    async fn publish(&self, msg: NewMessage, route: Route) -> Result<(), ProtoError> {
        self.bus.publish(msg, route).await.map_err(|_| ProtoError::unavailable())
    }

    /// `POST /api/rooms/{room}/messages`: the server (or the named user)
    /// says something in a room; stored, then delivered, like any message.
    /// `attachments` are uploads made with an API key, or by the named user.
    pub(crate) async fn publish_to_room(
        &self,
        room: &Name,
        text: &str,
        from: Option<&Name>,
        attachments: &[String],
        reply_to: Option<Ulid>,
    ) -> Result<StoredMessage, ProtoError> {
        let text = self.check_text(text, !attachments.is_empty())?;
        let conv = Conv::Room(room.key().clone());
        let reply_to = match reply_to {
            Some(id) => Some(self.reply_quote(id, &conv).await?),
            None => None,
        };
        // The server speaks as `server` (a nick nobody may take); a named
        // user's message is theirs (they may edit it) if they own the nick.
        let (from, sender_id): (Arc<str>, Arc<str>) = match from {
            None => ("server".into(), ids::SERVER.into()),
            Some(n) => match self.user_of(n).await? {
                Some(u) => (u.nick, u.id),
                None => (n.shown().clone(), format!("l-{}", n.key()).into()),
            },
        };
        let (name, _) = self.room_name(room).await?;
        let msg_id = ids::new_message();
        let mentions = self.mentions(&text).await?;
        let attachments = self.attach(attachments, [ids::SERVER, &sender_id], &msg_id.to_string()).await?;
        let msg = NewMessage {
            msg_id,
            conv,
            room: Some(name),
            to: None,
            sender_id,
            from,
            text,
            attachments,
            mentions,
            sent_at: now_ms(),
            reply_to,
        };
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.publish(msg, Route { waiter: Some(tx), ..Route::default() }).await {
            self.detach(&msg_id.to_string()).await;
            return Err(e);
        }
        rx.await.map_err(|_| ProtoError::unavailable())?
    }

    /// `GET /api/rooms/{room}/messages`: a page of a room's history, for
    /// those who may look into it.
    pub(crate) async fn room_messages(
        &self,
        caller: &Caller,
        room: &Name,
        request: &PageRequest,
    ) -> Result<Page, ProtoError> {
        let record = self.store.room(room.key()).await?;
        self.may_read_room(caller, false, room, record.as_ref()).await?;
        if request.before.is_some() && request.after.is_some() {
            return Err(ProtoError::invalid("give `before` or `after`, not both"));
        }
        self.page(&Conv::Room(room.key().clone()), self.history_query(request)?).await
    }

    /// A room's messages sent between `from` and `to` (epoch ms), oldest
    /// first, at most `limit` (`more` if there are more).
    pub(crate) async fn transcript(&self, room: &Name, from: i64, to: i64, limit: usize) -> Result<Page, ProtoError> {
        // In a cluster the newest messages may still be buffered in Redis.
        if !self.bus.settle().await {
            return Err(ProtoError::unavailable());
        }
        Ok(self.store.transcript(&Conv::Room(room.key().clone()), from, to, limit).await?)
    }
}

impl Session {
    /// The other party of a DM: the user who holds the nick now (online),
    /// or the account or site user who owns it.
    async fn peer(&self, user: &Name) -> Result<super::UserRef, ProtoError> {
        if user.key() == self.handle.nick().key() {
            return Err(ProtoError::invalid("`to`: you cannot send a direct message to yourself"));
        }
        self.svc.user_of(user).await?.ok_or_else(|| {
            ProtoError::new(ErrorCode::NoSuchUser, format!("no user `{user}` is here or has an account"))
        })
    }

    /// Says something to a room, a user or everyone. The message is stored
    /// first; the session gets its `ack` (echoing `id`) once it is
    /// delivered, or `unavailable` if it could not be stored.
    pub(crate) async fn say(
        &mut self,
        id: Option<&FrameId>,
        target: Target,
        text: &str,
        attachments: Vec<String>,
        reply_to: Option<Ulid>,
    ) -> Result<(), ProtoError> {
        let svc = self.svc.clone();
        let text = svc.check_text(text, !attachments.is_empty())?;
        // Typing state is kept by where it was shown (room, or nick).
        let typing_key = match &target {
            Target::Room(r) => Conv::Room(r.key().clone()),
            Target::User(u) => Conv::dm(self.handle.nick().key(), u.key()),
            Target::Everyone => Conv::Everyone,
        };
        if attachments.len() > svc.config.uploads.max_attachments {
            let max = svc.config.uploads.max_attachments;
            return Err(ProtoError::invalid(format!("`attachments`: at most {max} files in one message")));
        }
        let (conv, room, to) = match target {
            Target::Room(r) => {
                let name = svc.may_say(&self.identity, &self.handle, &r).await?;
                (Conv::Room(r.key().clone()), Some(name), None)
            }
            Target::User(u) => {
                let peer = self.peer(&u).await?;
                (Conv::dm(&self.identity.id, &peer.id), None, Some(peer.nick))
            }
            Target::Everyone => {
                if !svc.config.chat.allow_everyone {
                    return Err(forbidden("messages to everyone are disabled here"));
                }
                (Conv::Everyone, None, None)
            }
        };
        let reply_to = match reply_to {
            Some(id) => Some(svc.reply_quote(id, &conv).await?),
            None => None,
        };
        let mentions = svc.mentions(&text).await?;
        // Last of the checks: the uploads are taken for this message.
        let msg_id = ids::new_message();
        let me: &str = &self.identity.id;
        let attachments = svc.attach(&attachments, [me, me], &msg_id.to_string()).await?;
        let clear_typing = self.stop_typing(&typing_key);
        let msg = NewMessage {
            msg_id,
            conv,
            room,
            to,
            from: self.handle.nick().shown().clone(),
            sender_id: self.identity.id.clone(),
            text,
            attachments,
            mentions,
            sent_at: now_ms(),
            reply_to,
        };
        let route = Route { origin: Some(self.handle.clone()), reply_id: id.cloned(), clear_typing, waiter: None };
        let result = svc.publish(msg, route).await;
        if result.is_err() {
            svc.detach(&msg_id.to_string()).await;
        }
        result
    }

    /// A page of a conversation's history: a room's (see
    /// [`super::access::may_read`]), a DM's with a nick, or everyone's.
    pub(crate) async fn history(&self, conv: &Target, request: &PageRequest) -> Result<(Where, Page), ProtoError> {
        let svc = &self.svc;
        let query = svc.history_query(request)?;
        let (conv, place) = match conv {
            Target::Room(r) => {
                let record = svc.store.room(r.key()).await?;
                let caller = Caller::User(self.identity.clone());
                svc.may_read_room(&caller, self.handle.joined(r.key()).is_some(), r, record.as_ref()).await?;
                let name = match (svc.bus.room_name(r.key()).await?, record) {
                    (Some(n), _) => n,
                    (None, Some(rec)) => rec.name,
                    (None, None) => return Err(no_such_room(r)),
                };
                (Conv::Room(r.key().clone()), Where::Room(name))
            }
            Target::User(u) => {
                if u.key() == self.handle.nick().key() {
                    return Err(ProtoError::invalid("`with`: name the other party of the conversation"));
                }
                match svc.user_of(u).await? {
                    Some(peer) => (Conv::dm(&self.identity.id, &peer.id), Where::With(u.shown().clone())),
                    // Nobody holds or owns the nick: there is no conversation to show.
                    None => return Ok((Where::With(u.shown().clone()), Page::default())),
                }
            }
            Target::Everyone => (Conv::Everyone, Where::Everyone),
        };
        Ok((place, svc.page(&conv, query).await?))
    }

    /// Edits one of this user's messages; everyone who could see it gets
    /// `edited`.
    pub(crate) async fn edit(&mut self, msg_id: Ulid, text: &str) -> Result<(), ProtoError> {
        let svc = &self.svc;
        let text = svc.check_text(text, false)?;
        let msg = svc.changeable_message(&self.identity, Some(&self.handle), msg_id, false).await?;
        // Only where this user may still speak (not banned; voiced in a
        // moderated room).
        if let Conv::Room(key) = &msg.conv {
            svc.may_still_speak(&self.identity, &self.handle, key).await?;
        }
        let at = now_ms();
        let msg = svc.store.edit(msg_id, &text, at).await?.ok_or_else(|| no_such_message(msg_id))?;
        let id = msg.msg_id.to_string();
        svc.bus
            .about_message(&msg, Some(self.handle.id), |place| {
                encode(&ServerFrame::Edited { msg_id: id.clone(), place, text: &msg.text, edited_at: at })
            })
            .await
    }

    /// Deletes one of this user's messages (or any in a room it
    /// moderates); everyone who could see it gets `deleted`.
    pub(crate) async fn delete(&mut self, msg_id: Ulid) -> Result<(), ProtoError> {
        let svc = &self.svc;
        svc.changeable_message(&self.identity, Some(&self.handle), msg_id, true).await?;
        let msg = svc.store.delete(msg_id).await?.ok_or_else(|| no_such_message(msg_id))?;
        let id = msg.msg_id.to_string();
        if !msg.attachments.is_empty() {
            svc.remove_message_files(&id).await;
        }
        svc.bus
            .about_message(&msg, Some(self.handle.id), |place| {
                encode(&ServerFrame::Deleted { msg_id: id.clone(), place })
            })
            .await
    }
}
