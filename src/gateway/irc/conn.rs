//! One IRC connection's state, and the commands of a registered client
//! (registration is in [`super::register`]), each as one call to the service.
//! Replies are appended to `out`; the connection task writes them. Every
//! refusal is the RFC numeric; the connection stays usable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::Directory;
use super::line::{Line, push};
use crate::protocol::client::Target;
use crate::protocol::{ErrorCode, Name, ProtoError};
use crate::service::modes::{ModeChange, RoleMode};
use crate::service::{Outbound, Service, Session};

/// The capabilities offered (`CAP LS`).
pub(super) const CAPS: [&str; 7] =
    ["server-time", "message-tags", "echo-message", "sasl", "away-notify", "multi-prefix", "cap-notify"];

/// PINGs answered after this client's messages in flight: at most this many
/// wait (see the `PING` command).
const MAX_HELD_PONGS: usize = 16;

/// Capabilities a client enabled.
#[derive(Default)]
pub(super) struct Caps {
    pub(super) server_time: bool,
    pub(super) message_tags: bool,
    pub(super) echo_message: bool,
    pub(super) away_notify: bool,
    pub(super) multi_prefix: bool,
}

/// A channel this connection is in, as the client sees it.
pub(super) struct Chan {
    /// `#` and the room's name as shown.
    pub(super) name: String,
    /// Case-folded nicks of the members (for QUIT lines and NAMES).
    pub(super) members: Vec<Arc<str>>,
}

/// Why the connection is to end.
pub(super) enum Ending {
    Quit(String),
    Error(String),
}

pub(super) struct Irc {
    pub(super) svc: Arc<Service>,
    pub(super) directory: Arc<Directory>,
    pub(super) ip: IpAddr,
    /// The server's name as a source (no spaces).
    pub(super) host: String,
    pub(super) caps: Caps,
    /// `CAP LS`/`REQ` seen and no `CAP END` yet: registration waits.
    pub(super) negotiating: bool,
    pub(super) nick: Option<String>,
    /// USER's user name and real name.
    pub(super) user: Option<(String, String)>,
    pub(super) pass: Option<String>,
    /// SASL PLAIN in progress (`AUTHENTICATE PLAIN` seen).
    pub(super) sasl: bool,
    pub(super) session: Option<Session>,
    pub(super) rx: Option<Outbound>,
    pub(super) registered: bool,
    pub(super) out: String,
    /// By room key.
    pub(super) chans: HashMap<Arc<str>, Chan>,
    pub(super) ending: Option<Ending>,
    /// Messages said and not yet acknowledged (stored and delivered).
    pub(super) unacked: usize,
    /// Members to watch (for away-notify), and what their away state is.
    pub(super) to_watch: Vec<Arc<str>>,
    pub(super) away: HashMap<Arc<str>, bool>,
    /// PING tokens to answer once `unacked` is back to 0.
    pub(super) held_pongs: Vec<String>,
}

/// `#x` is room `x`, `##x` room `#x`.
pub(super) fn chan_of(room: &str) -> String {
    format!("#{room}")
}

fn room_of(chan: &str) -> Option<Name> {
    Name::room(chan.strip_prefix('#')?).ok()
}

impl Irc {
    pub(super) fn new(svc: Arc<Service>, directory: Arc<Directory>, ip: IpAddr) -> Irc {
        let host: String = svc.config.server.name.chars().map(|c| if c.is_ascii_graphic() { c } else { '-' }).collect();
        let host = if host.is_empty() { "chat".to_owned() } else { host };
        Irc {
            svc,
            directory,
            ip,
            host,
            caps: Caps::default(),
            negotiating: false,
            nick: None,
            user: None,
            pass: None,
            sasl: false,
            session: None,
            rx: None,
            registered: false,
            out: String::new(),
            chans: HashMap::new(),
            ending: None,
            unacked: 0,
            held_pongs: Vec::new(),
            to_watch: Vec::new(),
            away: HashMap::new(),
        }
    }

    /// The nick replies are addressed to (`*` before registration).
    pub(super) fn me(&self) -> String {
        match &self.session {
            Some(s) => s.handle().nick().as_str().to_owned(),
            None => self.nick.clone().unwrap_or_else(|| "*".to_owned()),
        }
    }

    /// `nick!user@host` for a user.
    pub(super) fn source(&self, nick: &str) -> String {
        format!("{nick}!{nick}@{}", self.host)
    }

    /// A numeric reply to this client.
    pub(super) fn num(&mut self, code: &str, params: &[&str]) {
        let me = self.me();
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(me.as_str());
        all.extend_from_slice(params);
        let host = self.host.clone();
        push(&mut self.out, None, &host, code, &all);
    }

    pub(super) fn server_line(&mut self, command: &str, params: &[&str]) {
        let host = self.host.clone();
        push(&mut self.out, None, &host, command, params);
    }

    /// Handles one line of input (already checked to be UTF-8 without NUL).
    pub(super) async fn line(&mut self, text: &str) {
        let Some(line) = Line::parse(text) else { return };
        match line.command.as_str() {
            "CAP" => return self.cap(&line).await,
            "PING" => {
                let token = line.param(0).unwrap_or("");
                if token.is_empty() {
                    return self.num("409", &["No origin specified"]);
                }
                if self.unacked > 0 {
                    // After this client's messages in flight are delivered
                    // (their acks): a PING then orders what others see.
                    // A few are enough to order anything; more are dropped
                    // (a client PINGing in a loop holds no memory).
                    if self.held_pongs.len() < MAX_HELD_PONGS {
                        self.held_pongs.push(token.to_owned());
                    }
                    return;
                }
                let host = self.host.clone();
                return self.server_line("PONG", &[&host, token]);
            }
            "PONG" => return,
            "QUIT" => {
                if let (Some(reason), Some(session)) = (line.param(0), &self.session) {
                    session.quit_reason(reason);
                }
                self.ending = Some(Ending::Quit(line.param(0).unwrap_or("Client quit").to_owned()));
                return;
            }
            _ => {}
        }
        if !self.registered {
            return self.registration(&line).await;
        }
        self.command(&line).await;
    }

    /// Watches the members `to_watch` names (away-notify), within
    /// `limits.max_watch` (past it, the rest are not watched).
    pub(super) async fn watch_members(&mut self) {
        let nicks: Vec<Name> = std::mem::take(&mut self.to_watch).iter().filter_map(|n| Name::nick(n).ok()).collect();
        if nicks.is_empty() {
            return;
        }
        if let Some(s) = self.session.as_mut()
            && let Err(e) = s.watch(&nicks).await
        {
            tracing::debug!(error = %e.message, "irc: could not watch members for away-notify");
        }
    }

    pub(super) fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("registered")
    }

    fn chan_param<'a>(&mut self, line: &'a Line, i: usize) -> Option<(&'a str, Name)> {
        let Some(chan) = line.param(i) else {
            self.num("461", &[&line.command, "Not enough parameters"]);
            return None;
        };
        match room_of(chan) {
            Some(room) => Some((chan, room)),
            None => {
                self.num("403", &[chan, "No such channel"]);
                None
            }
        }
    }

    /// A command of a registered client.
    async fn command(&mut self, line: &Line) {
        let cmd = line.command.as_str();
        match cmd {
            "PASS" | "USER" => self.num("462", &["You may not reregister"]),
            "NICK" => match line.param(0) {
                None => self.num("431", &["No nickname given"]),
                // The same nick (in any case): nothing changes.
                Some(n) if n.eq_ignore_ascii_case(&self.me()) => {}
                Some(n) if Name::nick(n).is_err() => self.num("432", &[n, "Erroneous nickname"]),
                Some(n) => {
                    let taken = match Name::nick(n) {
                        Ok(name) => matches!(self.svc.user_of(&name).await, Ok(Some(_))),
                        Err(_) => false,
                    };
                    if taken {
                        self.num("433", &[n, "Nickname is already in use"]);
                    } else {
                        self.num(
                            "447",
                            &[n, "Cannot change nickname here: your nick is who you are; reconnect as another"],
                        );
                    }
                }
            },
            "CAP" | "PING" | "PONG" | "QUIT" => {}
            "AUTHENTICATE" => self.num("462", &["You may not reregister"]),
            "JOIN" => self.join(line).await,
            "PART" => self.part(line).await,
            "PRIVMSG" | "NOTICE" => self.privmsg(line).await,
            "TOPIC" => self.topic(line).await,
            "NAMES" => self.names(line).await,
            "WHO" => self.who(line).await,
            "WHOIS" => self.whois(line).await,
            "LIST" => self.list(line).await,
            "AWAY" => self.away(line).await,
            "MODE" => self.mode(line).await,
            "KICK" => self.kick(line).await,
            "INVITE" => self.invite(line).await,
            "MOTD" => self.motd(),
            "LUSERS" => self.lusers().await,
            "VERSION" => {
                let host = self.host.clone();
                self.num("351", &[concat!("chat-", env!("CARGO_PKG_VERSION")), &host, "IRC door of the chat server"]);
            }
            "TIME" => {
                let host = self.host.clone();
                self.num("391", &[&host, &jiff::Timestamp::now().to_string()]);
            }
            "USERHOST" | "ISON" => self.ison(line).await,
            "WHOWAS" => self.whowas(line),
            _ => self.num("421", &[cmd, "Unknown command"]),
        }
    }

    async fn join(&mut self, line: &Line) {
        let Some(list) = line.param(0) else {
            return self.num("461", &["JOIN", "Not enough parameters"]);
        };
        if list == "0" {
            let keys: Vec<Arc<str>> = self.session().handle().rooms().iter().map(|r| r.key.clone()).collect();
            for key in keys {
                if let Ok(room) = Name::room(&key) {
                    let _ = self.session().leave(&room, None).await;
                }
            }
            return;
        }
        let history = self.svc.config.irc.history_on_join as u64;
        let mut keys = line.param(1).unwrap_or("").split(',');
        for chan in list.split(',').filter(|c| !c.is_empty()) {
            let key = keys.next().filter(|k| !k.is_empty());
            let Some(room) = room_of(chan) else {
                self.num("403", &[chan, "No such channel"]);
                continue;
            };
            if self.chans.contains_key(room.key()) {
                continue;
            }
            // `joined` comes through the queue: it becomes JOIN, 353, 366.
            if let Err(e) = Box::pin(self.session().join_keyed(None, &room, None, Some(history), key)).await {
                let code = match (e.code, e.reason) {
                    (ErrorCode::NoSuchRoom | ErrorCode::Invalid, _) => "403",
                    (ErrorCode::Forbidden, Some("banned")) => "474",
                    (ErrorCode::Forbidden, Some("key")) => "475",
                    (ErrorCode::Forbidden, Some("full")) => "471",
                    (ErrorCode::Forbidden, _) if e.message.contains("at most") => "405",
                    (ErrorCode::Forbidden | ErrorCode::Unauthorized, _) => "473",
                    _ => "",
                };
                self.refuse(code, "JOIN", chan, &e);
            }
        }
    }

    /// Reports a refused call: `code` (a numeric with `what` as its
    /// subject), or `400` naming the command.
    fn refuse(&mut self, code: &str, command: &str, what: &str, e: &ProtoError) {
        self.svc.metrics.error(e.code);
        if code.is_empty() {
            self.num("400", &[command, &e.message]);
        } else {
            self.num(code, &[what, &e.message]);
        }
    }

    async fn part(&mut self, line: &Line) {
        let Some(list) = line.param(0) else {
            return self.num("461", &["PART", "Not enough parameters"]);
        };
        for chan in list.split(',').filter(|c| !c.is_empty()) {
            let Some(room) = room_of(chan) else {
                self.num("403", &[chan, "No such channel"]);
                continue;
            };
            match self.session().leave(&room, line.param(1)).await {
                Ok(name) => {
                    self.chans.remove(room.key());
                    let me = self.me();
                    let source = self.source(&me);
                    let chan = chan_of(&name);
                    match line.param(1) {
                        Some(reason) => push(&mut self.out, None, &source, "PART", &[&chan, reason]),
                        None => push(&mut self.out, None, &source, "PART", &[&chan]),
                    }
                }
                Err(e) => {
                    let code = if e.code == ErrorCode::NotInRoom { "442" } else { "403" };
                    self.refuse(code, "PART", chan, &e);
                }
            }
        }
    }

    async fn privmsg(&mut self, line: &Line) {
        let notice = line.command == "NOTICE";
        let (Some(targets), Some(text)) = (line.param(0), line.param(1)) else {
            if !notice {
                match line.param(0) {
                    None => self.num("411", &[&format!("No recipient given ({})", line.command)]),
                    Some(_) => self.num("412", &["No text to send"]),
                }
            }
            return;
        };
        if text.is_empty() {
            if !notice {
                self.num("412", &["No text to send"]);
            }
            return;
        }
        for to in targets.split(',').filter(|t| !t.is_empty()).take(4) {
            let target = if to == "$*" {
                Target::Everyone
            } else if to.starts_with('#') {
                match room_of(to) {
                    Some(r) => Target::Room(r),
                    None => {
                        if !notice {
                            self.num("403", &[to, "No such channel"]);
                        }
                        continue;
                    }
                }
            } else {
                match Name::nick(to) {
                    Ok(n) if n.key().as_ref() == self.me().to_ascii_lowercase() => {
                        // To oneself: IRC shows it back; nothing is stored.
                        let source = self.source(&self.me());
                        push(&mut self.out, None, &source, &line.command, &[to, text]);
                        continue;
                    }
                    Ok(n) => {
                        if !notice && let Some(away) = self.directory.get(n.key()).and_then(|e| e.away) {
                            self.num("301", &[n.as_str(), &away]);
                        }
                        Target::User(n)
                    }
                    Err(_) => {
                        if !notice {
                            self.num("401", &[to, "No such nick/channel"]);
                        }
                        continue;
                    }
                }
            };
            // The ack (with echo-message) comes through the queue.
            let said = Box::pin(self.session().say(None, target.clone(), text, Vec::new(), None)).await;
            if said.is_ok() {
                self.unacked += 1;
            }
            if let Err(e) = said {
                if notice {
                    continue; // no automatic replies to a NOTICE
                }
                let code = match (&target, e.code) {
                    (_, ErrorCode::NoSuchUser) => "401",
                    (Target::Room(_), ErrorCode::NoSuchRoom) => "403",
                    (Target::Room(_), ErrorCode::NotInRoom | ErrorCode::Forbidden) => "404",
                    (_, ErrorCode::Invalid) if e.message.contains("empty") => "412",
                    _ => "",
                };
                self.refuse(code, &line.command.clone(), to, &e);
            }
        }
    }

    async fn topic(&mut self, line: &Line) {
        let Some((chan, room)) = self.chan_param(line, 0) else { return };
        match line.param(1) {
            None => match self.session().who(&room).await {
                Ok(view) if view.topic.is_empty() => self.num("331", &[chan, "No topic is set"]),
                Ok(view) => self.num("332", &[&chan_of(&view.name), &view.topic]),
                Err(e) => {
                    let code = if e.code == ErrorCode::NoSuchRoom { "403" } else { "442" };
                    self.refuse(code, "TOPIC", chan, &e)
                }
            },
            Some(topic) => {
                if self.session().handle().joined(room.key()).is_none() {
                    return self.num("442", &[chan, "You're not on that channel"]);
                }
                // The TOPIC line comes back through the queue.
                if let Err(e) = self.session().topic(&room, topic.to_owned()).await {
                    let code = match e.code {
                        ErrorCode::Forbidden => "482",
                        ErrorCode::NotInRoom => "442",
                        _ => "",
                    };
                    self.refuse(code, "TOPIC", chan, &e);
                }
            }
        }
    }

    /// The prefix shown before a member's nick: `@` for a moderator, `+`
    /// for a voiced member (both with `multi-prefix`). This user's own role
    /// is its session's; others' come with the member list (one node).
    pub(super) fn prefix_of(&self, room_key: &str, nick: &str, moderator: bool, voiced: bool) -> &'static str {
        let (moderator, voiced) = match self.session.as_ref().and_then(|s| s.handle().joined(room_key)) {
            Some(r) if nick.eq_ignore_ascii_case(&self.me()) => (r.moderator, r.voiced),
            _ => (moderator, voiced),
        };
        match (moderator, voiced) {
            (true, true) if self.caps.multi_prefix => "@+",
            (true, _) => "@",
            (false, true) => "+",
            (false, false) => "",
        }
    }

    async fn names(&mut self, line: &Line) {
        let chans: Vec<String> = match line.param(0) {
            Some(list) => list.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
            None => self.chans.values().map(|c| c.name.clone()).collect(),
        };
        for chan in chans {
            if let Some(room) = room_of(&chan)
                && let Ok(view) = self.session().who(&room).await
            {
                let shown = chan_of(&view.name);
                let mut names = Vec::with_capacity(view.members.len());
                for m in &view.members {
                    names.push(format!("{}{}", self.prefix_of(room.key(), &m.nick, m.moderator, m.voiced), m.nick));
                }
                let secret = self.session().modes(&room).await.is_ok_and(|v| v.modes.secret);
                let symbol = if secret { "@" } else { "=" };
                for chunk in names.chunks(40) {
                    self.num("353", &[symbol, &shown, &chunk.join(" ")]);
                }
                self.num("366", &[&shown, "End of /NAMES list"]);
                continue;
            }
            self.num("366", &[&chan, "End of /NAMES list"]);
        }
    }

    async fn who(&mut self, line: &Line) {
        let mask = line.param(0).unwrap_or("*").to_owned();
        let host = self.host.clone();
        if let Some(room) = room_of(&mask) {
            if let Ok(view) = self.session().who(&room).await {
                let shown = chan_of(&view.name);
                for m in &view.members {
                    let prefix = self.prefix_of(room.key(), &m.nick, m.moderator, m.voiced);
                    let flags = format!("{}{}", if m.away { "G" } else { "H" }, prefix);
                    let real = format!("0 {}", m.display_name);
                    self.num("352", &[&shown, &m.nick, &host, &host, &m.nick, &flags, &real]);
                }
            }
        } else if let Ok(nick) = Name::nick(&mask)
            && let Ok(Some(user)) = self.svc.user_of(&nick).await
        {
            self.num("352", &["*", &user.nick, &host, &host, &user.nick, "H", &format!("0 {}", user.nick)]);
        }
        self.num("315", &[&mask, "End of WHO list"]);
    }

    async fn whois(&mut self, line: &Line) {
        // `WHOIS server nick` names the nick last.
        let Some(target) = line.params.last().cloned() else {
            return self.num("431", &["No nickname given"]);
        };
        let user = match Name::nick(&target) {
            Ok(nick) => self.svc.user_of(&nick).await.ok().flatten(),
            Err(_) => None,
        };
        let host = self.host.clone();
        match user {
            Some(user) => {
                let entry = self.directory.get(&user.nick.to_ascii_lowercase()).unwrap_or_default();
                let name = if entry.user.is_empty() { user.nick.to_string() } else { entry.user.clone() };
                let real = if entry.real.is_empty() { user.nick.to_string() } else { entry.real.clone() };
                self.num("311", &[&user.nick, &name, &host, "*", &real]);
                if let Some(away) = &entry.away {
                    self.num("301", &[&user.nick, away]);
                }
                let chans: Vec<String> = if user.nick.eq_ignore_ascii_case(&self.me()) {
                    self.chans.values().map(|c| c.name.clone()).collect()
                } else {
                    let key: Arc<str> = user.nick.to_ascii_lowercase().into();
                    self.chans.values().filter(|c| c.members.contains(&key)).map(|c| c.name.clone()).collect()
                };
                if !chans.is_empty() {
                    self.num("319", &[&user.nick, &chans.join(" ")]);
                }
                self.num("312", &[&user.nick, &host, "chat server"]);
                self.num("318", &[&user.nick, "End of /WHOIS list"]);
            }
            None => {
                self.num("401", &[&target, "No such nick/channel"]);
                self.num("318", &[&target, "End of /WHOIS list"]);
            }
        }
    }

    async fn list(&mut self, line: &Line) {
        let only: Option<Vec<String>> = line
            .param(0)
            .filter(|p| p.starts_with('#'))
            .map(|l| l.split(',').map(|c| c.to_ascii_lowercase()).collect());
        self.num("321", &["Channel", "Users  Name"]);
        match self.session().rooms().await {
            Ok(rooms) => {
                for r in rooms {
                    let chan = chan_of(&r.name);
                    if only.as_ref().is_some_and(|o| !o.contains(&chan.to_ascii_lowercase())) {
                        continue;
                    }
                    self.num("322", &[&chan, &r.members.to_string(), &r.topic]);
                }
            }
            Err(e) => self.svc.metrics.error(e.code),
        }
        self.num("323", &["End of /LIST"]);
    }

    async fn away(&mut self, line: &Line) {
        let message = line.param(0).filter(|m| !m.is_empty()).map(|m| m.chars().take(200).collect::<String>());
        let away = message.is_some();
        let key = self.session().handle().nick().key().clone();
        self.directory.set_away(&key, message);
        match self.session().away(away).await {
            Ok(()) if away => self.num("306", &["You have been marked as being away"]),
            Ok(()) => self.num("305", &["You are no longer marked as being away"]),
            Err(e) => self.refuse("", "AWAY", "", &e),
        }
    }

    async fn mode(&mut self, line: &Line) {
        let Some(target) = line.param(0) else {
            return self.num("461", &["MODE", "Not enough parameters"]);
        };
        if !target.starts_with('#') {
            if !target.eq_ignore_ascii_case(&self.me()) {
                let code = if Name::nick(target).is_ok() { "502" } else { "401" };
                let text = if code == "502" { "Cannot change mode for other users" } else { "No such nick/channel" };
                return self.num(code, &[target, text][usize::from(code == "502")..]);
            }
            return self.num("221", &["+i"]);
        }
        let Some((chan, room)) = self.chan_param(line, 0) else { return };
        let Some(modestring) = line.param(1) else {
            return match self.session().modes(&room).await {
                Ok(view) => {
                    let shown = chan_of(&view.name);
                    let mut flags = String::from("+");
                    let mut args: Vec<String> = Vec::new();
                    for (on, c) in [(view.invite_only, 'i'), (!view.modes.key.is_empty(), 'k')] {
                        if on {
                            flags.push(c);
                        }
                    }
                    if !view.modes.key.is_empty() {
                        args.push(view.modes.key.to_string());
                    }
                    if view.modes.limit > 0 {
                        flags.push('l');
                        args.push(view.modes.limit.to_string());
                    }
                    for (on, c) in
                        [(view.modes.moderated, 'm'), (true, 'n'), (view.modes.secret, 's'), (view.topic_locked, 't')]
                    {
                        if on {
                            flags.push(c);
                        }
                    }
                    let mut params: Vec<&str> = vec![&shown, &flags];
                    params.extend(args.iter().map(String::as_str));
                    self.num("324", &params);
                }
                Err(e) => self.refuse("403", "MODE", chan, &e),
            };
        };
        // Parse every change first; `b` alone lists the bans.
        let mut change = ModeChange::default();
        let mut args = line.params.iter().skip(2).map(String::as_str);
        let mut on = true;
        let mut list_bans = false;
        let mut unknown: Vec<char> = Vec::new();
        for c in modestring.chars() {
            match c {
                '+' => on = true,
                '-' => on = false,
                'b' => match args.next() {
                    Some(mask) => change.bans.push((on, mask.to_owned())),
                    None => list_bans = true,
                },
                'k' => match (on, args.next()) {
                    (true, Some(k)) => change.key = Some(Some(k.to_owned())),
                    (true, None) => {
                        return self.num("696", &[chan, "k", "*", "You must specify a parameter for the key mode"]);
                    }
                    (false, _) => change.key = Some(None),
                },
                'l' if !on => change.limit = Some(None),
                'l' => match args.next().map(|a| (a, a.parse::<u32>())) {
                    Some((_, Ok(n))) if n > 0 => change.limit = Some(Some(n)),
                    Some((a, _)) => return self.num("696", &[chan, "l", a, "The limit is a whole number from 1"]),
                    None => {
                        return self.num("696", &[chan, "l", "*", "You must specify a parameter for the limit mode"]);
                    }
                },
                'o' | 'v' => {
                    let Some(nick) = args.next() else { continue };
                    let Ok(nick) = Name::nick(nick) else {
                        self.num("401", &[nick, "No such nick/channel"]);
                        continue;
                    };
                    let mode = if c == 'o' { RoleMode::Op } else { RoleMode::Voice };
                    change.roles.push((mode, on, nick));
                }
                'i' => change.invite_only = Some(on),
                'm' => change.moderated = Some(on),
                's' => change.secret = Some(on),
                't' => change.topic_lock = Some(on),
                // Only those in a room speak in it: always `+n`.
                'n' if on => {}
                _ => unknown.push(c),
            }
        }
        for c in unknown {
            let c = c.to_string();
            let text = if c == "n" {
                "Only members speak in a channel here: -n is not supported"
            } else {
                "is unknown mode char to me"
            };
            self.num("472", &[&c, text]);
        }
        if list_bans {
            match self.session().modes(&room).await {
                Ok(view) => {
                    let shown = chan_of(&view.name);
                    for b in &view.bans {
                        self.num("367", &[&shown, &b.mask, &b.set_by, &(b.set_at / 1000).to_string()]);
                    }
                    self.num("368", &[&shown, "End of channel ban list"]);
                }
                Err(e) => return self.refuse("403", "MODE", chan, &e),
            }
        }
        let empty = change.moderated.is_none()
            && change.topic_lock.is_none()
            && change.invite_only.is_none()
            && change.secret.is_none()
            && change.key.is_none()
            && change.limit.is_none()
            && change.bans.is_empty()
            && change.roles.is_empty();
        if empty {
            return;
        }
        match self.session().handle().joined(room.key()) {
            None if !self.svc.room_open(&room).await.unwrap_or(true) => {
                return self.num("403", &[chan, "No such channel"]);
            }
            None => return self.num("442", &[chan, "You're not on that channel"]),
            Some(r) if !r.moderator => return self.num("482", &[chan, "You're not channel operator"]),
            Some(_) => {}
        }
        // The MODE line comes back through the queue (the `mode` frame).
        if let Err(e) = self.session().set_modes(&room, change).await {
            match (e.code, e.reason) {
                (ErrorCode::NotInRoom, _) => {
                    let nick = e.message.split('`').nth(1).unwrap_or("*").to_owned();
                    self.svc.metrics.error(e.code);
                    self.num("441", &[&nick, chan, "They aren't on that channel"]);
                }
                (ErrorCode::NoSuchUser, _) => {
                    let nick = e.message.split('`').nth(1).unwrap_or("*").to_owned();
                    self.refuse("401", "MODE", &nick, &e);
                }
                (ErrorCode::Forbidden, _) => self.refuse("482", "MODE", chan, &e),
                (ErrorCode::TooLarge, Some("ban_list_full")) => {
                    self.svc.metrics.error(e.code);
                    self.num("478", &[chan, "b", &e.message]);
                }
                (ErrorCode::Invalid, _) => {
                    self.svc.metrics.error(e.code);
                    let which = if e.message.contains("key") { "k" } else { "b" };
                    self.num("696", &[chan, which, "*", &e.message]);
                }
                _ => self.refuse("", "MODE", chan, &e),
            }
        }
    }

    async fn kick(&mut self, line: &Line) {
        let Some((chan, room)) = self.chan_param(line, 0) else { return };
        let Some(nick) = line.param(1) else {
            return self.num("461", &["KICK", "Not enough parameters"]);
        };
        match self.session().handle().joined(room.key()) {
            None if !self.svc.room_open(&room).await.unwrap_or(true) => {
                return self.num("403", &[chan, "No such channel"]);
            }
            None => return self.num("442", &[chan, "You're not on that channel"]),
            Some(r) if !r.moderator => return self.num("482", &[chan, "You're not channel operator"]),
            Some(_) => {}
        }
        let Ok(target) = Name::nick(nick) else {
            return self.num("401", &[nick, "No such nick/channel"]);
        };
        if let Err(e) = self.session().kick(&room, &target, line.param(2)).await {
            let code = match e.code {
                ErrorCode::NotInRoom => "441",
                ErrorCode::Forbidden => "482",
                _ => "",
            };
            self.refuse(code, "KICK", &format!("{nick} {chan}"), &e);
        }
    }

    async fn invite(&mut self, line: &Line) {
        let (Some(nick), Some(_)) = (line.param(0), line.param(1)) else {
            return self.num("461", &["INVITE", "Not enough parameters"]);
        };
        let Some((chan, room)) = self.chan_param(line, 1) else { return };
        match self.session().handle().joined(room.key()) {
            None => return self.num("442", &[chan, "You're not on that channel"]),
            Some(r) if !r.moderator => return self.num("482", &[chan, "You're not channel operator"]),
            Some(_) => {}
        }
        let Ok(target) = Name::nick(nick) else {
            return self.num("401", &[nick, "No such nick/channel"]);
        };
        match self.session().invite(&room, &target).await {
            Ok(()) => self.num("341", &[nick, chan]),
            Err(e) => {
                let code = match e.code {
                    ErrorCode::NoSuchUser => "401",
                    ErrorCode::Forbidden => "482",
                    _ => "",
                };
                self.refuse(code, "INVITE", nick, &e);
            }
        }
    }

    /// ISON and USERHOST: which of the nicks are here.
    /// WHOWAS nick [count]: the users who left holding `nick`, newest first
    /// (a count of 0 or less, or none: all that are remembered).
    fn whowas(&mut self, line: &Line) {
        let Some(nick) = line.param(0).filter(|n| !n.is_empty()).map(str::to_owned) else {
            return self.num("431", &["No nickname given"]);
        };
        let count = line.param(1).and_then(|c| c.parse::<i64>().ok()).map_or(0, |c| c.max(0) as usize);
        let found = self.directory.whowas(&nick, count);
        if found.is_empty() {
            self.num("406", &[&nick, "There was no such nickname"]);
        }
        let host = self.host.clone();
        for g in found {
            self.num("314", &[&g.nick, &g.user, &host, "*", &g.real]);
        }
        self.num("369", &[&nick, "End of WHOWAS"]);
    }

    async fn ison(&mut self, line: &Line) {
        let mut here = Vec::new();
        for n in line.params.iter().flat_map(|p| p.split(' ')).filter(|n| !n.is_empty()).take(16) {
            if let Ok(nick) = Name::nick(n)
                && let Ok(Some(user)) = self.svc.user_of(&nick).await
            {
                here.push(user.nick.to_string());
            }
        }
        if line.command == "ISON" {
            self.num("303", &[&here.join(" ")]);
        } else {
            let host = self.host.clone();
            let replies: Vec<String> = here.iter().map(|n| format!("{n}=+{n}@{host}")).collect();
            self.num("302", &[&replies.join(" ")]);
        }
    }
}
