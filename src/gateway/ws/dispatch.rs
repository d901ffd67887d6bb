//! One frame in, one service call, the reply out. The door's own work is
//! here: parsing, the rate buckets, and encoding replies; every rule is the
//! service's. A call's `Err` becomes an `error` frame echoing the request's
//! `id`; the connection stays usable.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::protocol::client::ParseError;
use crate::protocol::server::{BanView, ServerInfo, UserView};
use crate::protocol::{ClientFrame, ErrorCode, FrameId, Name, ProtoError, Request, ServerFrame, encode};
use crate::service::messages::PageRequest;
use crate::service::social::SearchRequest;
use crate::service::{Session, SessionHandle};

/// One identified connection's state, owned by its task (the WebSocket
/// door's, and the Socket.IO door's for namespace `/`).
pub(crate) struct Conn {
    pub(crate) session: Session,
    /// `say`, `event`, `typing`, `react` (`limits.rate_per_sec`, `limits.burst`).
    say_bucket: Bucket,
    /// Every other frame (`limits.requests_per_sec`, `limits.requests_burst`).
    request_bucket: Bucket,
}

/// A rate bucket: GCRA, as `governor` does it, in 8 bytes (each connection
/// keeps two for its whole life; the rate and burst are the server's).
/// Holds when the next frame would be on time at the steady rate, in
/// nanoseconds since [`epoch`]; 0 before the first frame.
#[derive(Default)]
struct Bucket(u64);

impl Bucket {
    /// Takes one frame at `now` (ns since [`epoch`]), or says how long
    /// until one would be allowed.
    fn check(&mut self, rate: u32, burst: u32, now: u64) -> Result<(), Duration> {
        // One frame's worth of time, and how far ahead of the steady rate
        // a burst may run.
        let t = (1_000_000_000 / u64::from(rate.max(1))).max(1);
        let tau = t * u64::from(burst.max(1) - 1);
        let earliest = self.0.saturating_sub(tau);
        if now < earliest {
            return Err(Duration::from_nanos(earliest - now));
        }
        self.0 = self.0.max(now) + t;
        Ok(())
    }
}

/// Nanoseconds since the first call (the buckets' clock).
fn epoch() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl Conn {
    pub(crate) fn new(session: Session) -> Conn {
        Conn { session, say_bucket: Bucket::default(), request_bucket: Bucket::default() }
    }

    pub(crate) fn handle(&self) -> &Arc<SessionHandle> {
        self.session.handle()
    }

    /// Sends `welcome`, then joins the configured rooms the user may enter.
    pub(crate) async fn welcome(&mut self, id: Option<&FrameId>) {
        let welcome = self.session.welcome().await;
        let rooms: Vec<Arc<str>> = welcome.rooms.iter().map(|r| r.shown().clone()).collect();
        let svc = self.session.service().clone();
        let token = self.session.take_token();
        let handle = self.handle();
        let (nick, user) = (handle.nick(), &handle.user);
        let shown = user.shown();
        self.reply(&ServerFrame::Welcome {
            id,
            session: &format!("s-{}", handle.id),
            nick: nick.as_str(),
            user: UserView {
                nick: nick.as_str(),
                display_name: &shown.display_name,
                avatar: shown.avatar.as_deref(),
                guest: user.guest,
                admin: user.admin,
            },
            rooms: &rooms,
            token: token.as_deref(),
            server: ServerInfo { name: &svc.config.server.name, version: env!("CARGO_PKG_VERSION"), node: &svc.node },
            limits: &svc.limits_view,
        });
        for e in self.session.join_all(&welcome.rooms, false).await {
            self.reply_error(None, &e);
        }
    }

    /// Joins the rooms the server admitted this session to (the API made
    /// its user a member), as if it had asked.
    pub(crate) async fn join_admitted(&mut self, rooms: Vec<Arc<str>>) {
        let rooms: Vec<Name> = rooms.iter().filter_map(|r| Name::room(r).ok()).collect();
        for e in self.session.join_all(&rooms, true).await {
            self.reply_error(None, &e);
        }
    }

    /// Parses and handles one text frame.
    pub(super) async fn frame(&mut self, text: &str) {
        self.request(ClientFrame::parse(text)).await
    }

    /// Handles one parsed frame (or its parse error): the reply, if any,
    /// goes to the session's queue.
    pub(crate) async fn request(&mut self, parsed: Result<ClientFrame, ParseError>) {
        match parsed {
            Ok(ClientFrame { id, request }) => {
                let bare_ack = request.replies_with_bare_ack();
                // Boxed: the work of one frame (store queries, the hook) is
                // large and short-lived; the connection's own future stays small.
                match Box::pin(self.dispatch(id.as_ref(), request)).await {
                    Ok(()) if bare_ack && id.is_some() => self.reply(&ServerFrame::ack(id.as_ref())),
                    Ok(()) => {}
                    Err(e) => self.reply_error(id.as_ref(), &e),
                }
            }
            Err(e) => self.reply_error(e.id.as_ref(), &e.error),
        }
    }

    pub(crate) fn reply(&self, frame: &ServerFrame<'_>) {
        self.handle().send(&encode(frame));
    }

    pub(crate) fn reply_error(&self, id: Option<&FrameId>, e: &ProtoError) {
        tracing::debug!(session = self.handle().id, code = ?e.code, message = %e.message, "request refused");
        self.session.service().metrics.error(e.code);
        self.reply(&ServerFrame::error(id, e));
    }

    async fn dispatch(&mut self, id: Option<&FrameId>, request: Request) -> Result<(), ProtoError> {
        let l = &self.session.service().config.limits;
        let checked = match request {
            Request::Say { .. } | Request::Event { .. } | Request::Typing { .. } | Request::React { .. } => {
                self.say_bucket.check(l.rate_per_sec, l.burst, epoch())
            }
            _ => self.request_bucket.check(l.requests_per_sec, l.requests_burst, epoch()),
        };
        if let Err(wait) = checked {
            let mut e = ProtoError::new(ErrorCode::RateLimited, "too many frames: slow down");
            e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
            return Err(e);
        }
        let s = &mut self.session;
        match request {
            Request::Hello { .. } => Err(ProtoError::invalid("already identified: `hello` may be sent only once")),
            Request::Join { room, since, history, key } => {
                s.join_keyed(id, &room, since, history, key.as_deref()).await
            }
            Request::Mode { room, set: None } => {
                let v = s.modes(&room).await?;
                let bans: Vec<BanView> =
                    v.bans.into_iter().map(|b| BanView { mask: b.mask, by: b.set_by, at: b.set_at }).collect();
                self.reply(&ServerFrame::Modes {
                    id,
                    room: &v.name,
                    moderated: v.modes.moderated,
                    topic_lock: v.topic_locked,
                    invite_only: v.invite_only,
                    secret: v.modes.secret,
                    key: Some(&*v.modes.key).filter(|k| !k.is_empty()),
                    limit: Some(v.modes.limit).filter(|l| *l > 0),
                    bans: &bans,
                });
                Ok(())
            }
            Request::Mode { room, set: Some(set) } => {
                s.set_modes(&room, set).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            Request::Leave { room, reason } => {
                let name = s.leave(&room, reason.as_deref()).await?;
                self.reply(&ServerFrame::Left { id, room: &name, reason: None, by: None, comment: None });
                Ok(())
            }
            Request::Rooms => {
                let rooms = s.rooms().await?;
                self.reply(&ServerFrame::Rooms { id, rooms: &rooms });
                Ok(())
            }
            Request::Who { room } => {
                let r = s.who(&room).await?;
                let count = r.members.len();
                let frame = ServerFrame::RoomStatus { id, room: &r.name, topic: &r.topic, count, members: &r.members };
                self.reply(&frame);
                Ok(())
            }
            Request::Topic { room, topic } => {
                s.topic(&room, topic).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            Request::Kick { room, nick, comment } => {
                s.kick(&room, &nick, comment.as_deref()).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            // The `ack` (or `unavailable`) comes once the message is stored.
            Request::Say { target, text, attachments, reply_to } => {
                s.say(id, target, &text, attachments, reply_to).await
            }
            Request::History { conv, before, after, limit } => {
                let (place, page) = s.history(&conv, &PageRequest { before, after, limit }).await?;
                let place = place.place();
                self.reply(&ServerFrame::History { id, place, messages: &page.messages, more: page.more });
                Ok(())
            }
            Request::Edit { msg_id, text } => {
                s.edit(msg_id, &text).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            Request::Delete { msg_id } => {
                s.delete(msg_id).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            Request::Read { conv, seq } => s.read(conv, seq).await,
            Request::Typing { target, active } => s.typing(target, active).await,
            Request::Event { target, name, data } => s.event(target, &name, &data).await,
            Request::Watch { nicks } => s.watch(&nicks).await,
            Request::Unwatch { nicks } => {
                s.unwatch(&nicks);
                Ok(())
            }
            Request::Away { away } => s.away(away).await,
            Request::Ping => {
                self.reply(&ServerFrame::Pong { id });
                Ok(())
            }
            Request::React { msg_id, emoji, on } => {
                s.react(msg_id, &emoji, on).await?;
                self.reply(&ServerFrame::ack(id));
                Ok(())
            }
            Request::Search { q, conv, limit, before } => {
                let page = s.search(&SearchRequest { q, conv, limit, before }).await?;
                self.reply(&ServerFrame::SearchResults { id, messages: &page.messages, more: page.more });
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bucket;

    /// A burst goes through at once; then one frame per `1/rate`; a refusal
    /// says when the next frame would be on time.
    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        const MS: u64 = 1_000_000;
        let mut b = Bucket::default();
        let now = 5_000 * MS;
        for i in 0..3 {
            assert!(b.check(10, 3, now).is_ok(), "frame {i} of the burst");
        }
        assert_eq!(b.check(10, 3, now), Err(std::time::Duration::from_millis(100)));
        assert_eq!(b.check(10, 3, now + 60 * MS), Err(std::time::Duration::from_millis(40)));
        assert!(b.check(10, 3, now + 100 * MS).is_ok());
        assert!(b.check(10, 3, now + 100 * MS).is_err());
        // Idle for long: the whole burst again, no more.
        let later = now + 10_000 * MS;
        for i in 0..3 {
            assert!(b.check(10, 3, later).is_ok(), "frame {i} of the second burst");
        }
        assert!(b.check(10, 3, later).is_err());
        // A zero rate or burst counts as 1.
        let mut z = Bucket::default();
        assert!(z.check(0, 0, now).is_ok());
        assert_eq!(z.check(0, 0, now), Err(std::time::Duration::from_secs(1)));
    }
}
