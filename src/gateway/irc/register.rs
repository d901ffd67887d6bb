//! Registration: CAP negotiation, PASS, SASL PLAIN, NICK and USER, then
//! the session is opened and the welcome (001–005, LUSERS, MOTD) sent.

use base64::Engine;

use super::Entry;
use super::conn::{CAPS, Ending, Irc};
use super::line::Line;
use crate::protocol::{ErrorCode, Name};
use crate::service::Hello;

impl Irc {
    pub(super) async fn registration(&mut self, line: &Line) {
        match line.command.as_str() {
            "PASS" => match line.param(0) {
                Some(p) if !p.is_empty() => self.pass = Some(p.to_owned()),
                _ => self.num("461", &["PASS", "Not enough parameters"]),
            },
            "NICK" => {
                let Some(nick) = line.param(0).filter(|n| !n.is_empty()) else {
                    return self.num("431", &["No nickname given"]);
                };
                if Name::nick(nick).is_err() {
                    return self.num("432", &[nick, "Erroneous nickname"]);
                }
                self.nick = Some(nick.to_owned());
            }
            "USER" => {
                if line.params.len() < 4 {
                    return self.num("461", &["USER", "Not enough parameters"]);
                }
                let name: String =
                    line.params[0].chars().filter(|c| c.is_ascii_graphic() && *c != '@').take(16).collect();
                self.user = Some((name, line.params[3].clone()));
            }
            "AUTHENTICATE" => return self.authenticate(line).await,
            _ => return self.num("451", &["You have not registered"]),
        }
        self.try_register().await;
    }

    /// Registers once NICK and USER are in and capability negotiation is
    /// over: opens the session (unless SASL did) and sends the welcome.
    pub(super) async fn try_register(&mut self) {
        if self.registered || self.negotiating || self.user.is_none() {
            return;
        }
        if self.session.is_none() {
            let Some(nick) = self.nick.clone() else { return };
            let Ok(name) = Name::nick(&nick) else { return };
            let (password, token) = match self.pass.take() {
                Some(p) if looks_like_token(&p) => (None, Some(p)),
                Some(p) => (Some(p), None),
                None => (None, None),
            };
            match Box::pin(self.svc.open(Hello { nick: Some(name), password, token }, self.ip)).await {
                Ok((mut session, rx)) => {
                    session.show_member_roles();
                    self.session = Some(session);
                    self.rx = Some(rx);
                }
                Err(e) => {
                    self.svc.metrics.error(e.code);
                    return match e.code {
                        ErrorCode::NickTaken => self.num("433", &[&nick, "Nickname is already in use"]),
                        ErrorCode::Invalid => self.num("432", &[&nick, &e.message]),
                        ErrorCode::Unauthorized | ErrorCode::Forbidden => {
                            self.num("464", &[&e.message]);
                            self.ending = Some(Ending::Error("Bad password".to_owned()));
                        }
                        _ => {
                            self.server_line("FAIL", &["NICK", e.code.as_str(), &e.message]);
                            self.ending = Some(Ending::Error(e.message.clone()));
                        }
                    };
                }
            }
        }
        self.welcome().await;
    }

    pub(super) async fn welcome(&mut self) {
        let Some(session) = &self.session else { return };
        self.registered = true;
        let (user, real) = self.user.clone().unwrap_or_default();
        self.directory.set(session.handle().nick().key().clone(), Entry { user, real, away: None });
        let _ = session.welcome().await; // rooms.auto_join is for the web client: IRC users choose
        let me = self.me();
        let host = self.host.clone();
        let net = self.svc.config.server.name.clone();
        let version = concat!("chat-", env!("CARGO_PKG_VERSION"));
        self.num("001", &[&format!("Welcome to the {net} IRC network, {}", self.source(&me))]);
        self.num("002", &[&format!("Your host is {host}, running version {version}")]);
        self.num("003", &["This server was started with the chat service"]);
        self.num("004", &[&host, version, "i", "inot", "o"]);
        let topiclen = format!("TOPICLEN={}", self.svc.config.limits.max_topic);
        let network = format!("NETWORK={}", host);
        let isupport = [
            "AWAYLEN=200",
            "CASEMAPPING=ascii",
            "CHANLIMIT=#:100",
            "CHANMODES=b,k,l,imnst",
            "CHANNELLEN=65",
            "CHANTYPES=#",
            "MODES=6",
            "NICKLEN=32",
            "PREFIX=(ov)@+",
            "TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:,PART:,NAMES:1,WHOIS:1,KICK:1",
            &network,
            &topiclen,
            "are supported by this server",
        ];
        self.num("005", &isupport);
        self.lusers().await;
        self.motd();
    }

    pub(super) async fn lusers(&mut self) {
        let snap = self.svc.snapshot().await;
        self.num("251", &[&format!("There are {} users and 0 invisible on 1 servers", snap.sessions)]);
        self.num("254", &[&snap.rooms.to_string(), "channels formed"]);
        self.num("255", &[&format!("I have {} clients and 1 servers", snap.sessions)]);
    }

    pub(super) fn motd(&mut self) {
        let host = self.host.clone();
        self.num("375", &[&format!("- {host} Message of the day - ")]);
        self.num("372", &["- Channel #x is room x of the web chat (##x is room #x)."]);
        self.num("372", &["- Everyone here, web or IRC, is one user list; PRIVMSG $* reaches everyone."]);
        self.num("376", &["End of /MOTD command."]);
    }

    pub(super) async fn cap(&mut self, line: &Line) {
        let sub = line.param(0).unwrap_or("").to_ascii_uppercase();
        match sub.as_str() {
            "LS" => {
                if !self.registered {
                    self.negotiating = true;
                }
                let v302 = line.param(1).and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= 302);
                let caps: Vec<&str> =
                    CAPS.iter().map(|c| if *c == "sasl" && v302 { "sasl=PLAIN" } else { c }).collect();
                self.server_line("CAP", &[&self.me(), "LS", &caps.join(" ")]);
            }
            "LIST" => {
                let c = &self.caps;
                let on: Vec<&str> = [
                    (c.server_time, "server-time"),
                    (c.message_tags, "message-tags"),
                    (c.echo_message, "echo-message"),
                    (c.away_notify, "away-notify"),
                    (c.multi_prefix, "multi-prefix"),
                ]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect();
                self.server_line("CAP", &[&self.me(), "LIST", &on.join(" ")]);
            }
            "REQ" => {
                if !self.registered {
                    self.negotiating = true;
                }
                let asked = line.param(1).unwrap_or("");
                let known = asked.split(' ').filter(|c| !c.is_empty()).all(|c| {
                    let name = c.strip_prefix('-').unwrap_or(c);
                    CAPS.contains(&name)
                });
                if !known {
                    return self.server_line("CAP", &[&self.me(), "NAK", asked]);
                }
                for c in asked.split(' ').filter(|c| !c.is_empty()) {
                    let (name, on) = c.strip_prefix('-').map_or((c, true), |n| (n, false));
                    match name {
                        "server-time" => self.caps.server_time = on,
                        "message-tags" => self.caps.message_tags = on,
                        "echo-message" => self.caps.echo_message = on,
                        "away-notify" => self.caps.away_notify = on,
                        "multi-prefix" => self.caps.multi_prefix = on,
                        _ => {}
                    }
                }
                self.server_line("CAP", &[&self.me(), "ACK", asked]);
            }
            "END" => {
                self.negotiating = false;
                self.try_register().await;
            }
            _ => self.num("410", &[line.param(0).unwrap_or("*"), "Invalid CAP command"]),
        }
    }

    /// SASL PLAIN: the account is checked (and the session opened) here,
    /// so that 903 means what it says.
    pub(super) async fn authenticate(&mut self, line: &Line) {
        let arg = line.param(0).unwrap_or("");
        if self.session.is_some() {
            return self.num("907", &["You have already authenticated using SASL"]);
        }
        if !self.sasl {
            if arg.eq_ignore_ascii_case("PLAIN") {
                self.sasl = true;
                return self.server_line("AUTHENTICATE", &["+"]);
            }
            self.num("908", &["PLAIN", "are available SASL mechanisms"]);
            return self.num("904", &["SASL authentication failed"]);
        }
        self.sasl = false;
        if arg == "*" {
            return self.num("906", &["SASL authentication aborted"]);
        }
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(arg).ok().and_then(|b| String::from_utf8(b).ok());
        let Some((authcid, password)) = decoded.as_deref().and_then(|d| {
            let mut parts = d.split('\0');
            let (_authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
            Some((authcid.to_owned(), password.to_owned()))
        }) else {
            return self.num("904", &["SASL authentication failed: not a PLAIN payload"]);
        };
        let Ok(nick) = Name::nick(&authcid) else {
            return self.num("904", &["SASL authentication failed"]);
        };
        let hello = Hello { nick: Some(nick), password: Some(password), token: None };
        match Box::pin(self.svc.open(hello, self.ip)).await {
            Ok((mut session, rx)) => {
                let me = session.handle().nick().as_str().to_owned();
                session.show_member_roles();
                self.session = Some(session);
                self.rx = Some(rx);
                let source = self.source(&me);
                self.num("900", &[&source, &me, &format!("You are now logged in as {me}")]);
                self.num("903", &["SASL authentication successful"]);
            }
            Err(e) => {
                self.svc.metrics.error(e.code);
                let why = if e.code == ErrorCode::NickTaken {
                    "SASL authentication failed: already online"
                } else {
                    "SASL authentication failed"
                };
                self.num("904", &[why]);
            }
        }
    }
}

/// A session token (64 hex digits) or a site token (a JWT: three parts):
/// `PASS` with anything else is an account password.
fn looks_like_token(pass: &str) -> bool {
    crate::auth::is_session_token(pass) || (pass.split('.').count() == 3 && !pass.contains(' '))
}
