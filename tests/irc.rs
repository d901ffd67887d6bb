//! The IRC door (docs/irc.md) against a real server: raw TCP sessions that
//! chat with WebSocket users, every kind of bad input, and irssi, a real
//! IRC client, driven in tmux (SKIPPED when irssi or tmux is missing;
//! `.ci/run` installs both).
//!
//! No sleeps: `sync()` sends `PING` and requires the very next line to be
//! its `PONG`, so nothing else was queued for that connection before it.

mod common;

use std::time::Duration;

use chat::{Config, RunningServer};
use common::{Client, WAIT, dm_msg, everyone_msg, member, presence, room_msg};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

fn irc_config() -> Config {
    let mut c = common::test_config();
    c.irc.listen = "127.0.0.1:0".into();
    c
}

struct Irc {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    nick: String,
    sync_n: u32,
}

impl Irc {
    async fn connect(server: &RunningServer) -> Irc {
        let tcp = TcpStream::connect(server.irc_addr().expect("irc.listen")).await.unwrap();
        let (r, w) = tcp.into_split();
        Irc { read: BufReader::new(r), write: w, nick: "*".into(), sync_n: 0 }
    }

    /// Connects and registers as a guest with the capabilities `caps`.
    async fn register(server: &RunningServer, nick: &str, caps: &str) -> Irc {
        let mut c = Irc::connect(server).await;
        c.nick = nick.into();
        c.send("CAP LS 302").await;
        let ls = c.expect(" CAP * LS ").await;
        assert!(ls.contains("server-time") && ls.contains("sasl=PLAIN") && ls.contains("echo-message"), "{ls}");
        if !caps.is_empty() {
            c.send(&format!("CAP REQ :{caps}")).await;
            c.expect(&format!("CAP * ACK :{caps}")).await;
        }
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick} here")).await;
        c.send("CAP END").await;
        c.expect(&format!(" 001 {nick} :Welcome")).await;
        let (isupport, _) = c.until(&format!(" 005 {nick} ")).await;
        for token in [
            "CASEMAPPING=ascii",
            "CHANTYPES=#",
            "NICKLEN=32",
            "CHANNELLEN=",
            "PREFIX=(ov)@+",
            "CHANMODES=b,k,l,imnst",
            "TARGMAX=",
        ] {
            assert!(isupport.contains(token), "ISUPPORT without {token}: {isupport}");
        }
        c.until(&format!(" 251 {nick} ")).await;
        c.until(&format!(" 376 {nick} ")).await;
        c
    }

    async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next line (without CR LF); `None` once the server closed.
    async fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.read.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{}: no line within {WAIT:?}", self.nick))
            .unwrap();
        (n > 0).then(|| {
            assert!(line.ends_with("\r\n"), "{}: a line without CR LF: {line:?}", self.nick);
            line.trim_end().to_owned()
        })
    }

    /// The next line, which must contain `part`.
    async fn expect(&mut self, part: &str) -> String {
        let line = self.next().await.unwrap_or_else(|| panic!("{}: closed, expected {part:?}", self.nick));
        assert!(line.contains(part), "{}: expected {part:?}, got {line:?}", self.nick);
        line
    }

    /// Lines until one containing `part` (returned with the skipped ones).
    async fn until(&mut self, part: &str) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            let line = self.next().await.unwrap_or_else(|| panic!("{}: closed, expected {part:?}", self.nick));
            if line.contains(part) {
                return (line, skipped);
            }
            skipped.push(line);
        }
    }

    /// Nothing else was sent to this connection: PING's PONG comes next.
    async fn sync(&mut self) {
        self.sync_n += 1;
        let token = format!("sync-{}", self.sync_n);
        self.send(&format!("PING {token}")).await;
        self.expect(&format!("PONG chat {token}")).await;
    }
}

/// Registration, join with history, chat both ways with a WebSocket user,
/// DMs, everyone, the topic, and a quit the web user sees.
#[tokio::test]
async fn irc_user_chats_with_a_web_user() {
    let server = common::start(irc_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    alice.say("lobby", "before you came").await;

    let mut bob = Irc::register(&server, "bob", "server-time message-tags echo-message away-notify").await;
    bob.send("JOIN #lobby,##dev").await;
    bob.expect(":bob!bob@chat JOIN #lobby").await;
    let names = bob.expect(" 353 bob = #lobby :").await;
    // alice made #lobby by joining it: its operator, which others see too.
    assert!(names.ends_with(":@alice bob") || names.ends_with(":bob @alice"), "{names}");
    bob.expect(" 366 bob #lobby :End of /NAMES list").await;
    // The recent history, with the time it was said.
    let replay = bob.expect(" :alice!alice@chat PRIVMSG #lobby :before you came").await;
    assert!(replay.starts_with("@time=20") && replay.contains("Z;msgid="), "{replay}");
    bob.expect(":bob!bob@chat JOIN ##dev").await;
    // bob made ##dev by joining it: its operator.
    bob.expect(" 353 bob = ##dev :@bob").await;
    bob.expect(" 366 bob ##dev ").await;
    alice.expect_json(presence("lobby", "bob", "join")).await;

    // Web to IRC, IRC to web (echoed to the IRC client: echo-message).
    alice.say("lobby", "hi bob").await;
    bob.expect(" :alice!alice@chat PRIVMSG #lobby :hi bob").await;
    bob.send("PRIVMSG #lobby :hello alice").await;
    alice.expect_json(room_msg("lobby", 3, "bob", "hello alice")).await;
    bob.expect(" :bob!bob@chat PRIVMSG #lobby :hello alice").await;

    // Direct messages, both ways.
    bob.send("PRIVMSG alice :psst").await;
    alice.expect_json(dm_msg("alice", 1, "bob", "psst")).await;
    bob.expect(" :bob!bob@chat PRIVMSG alice :psst").await;
    alice.say_to("bob", "yes?").await;
    bob.expect(" :alice!alice@chat PRIVMSG bob :yes?").await;

    // Everyone.
    bob.send("PRIVMSG $* :hello world").await;
    alice.expect_json(everyone_msg(1, "bob", "hello world")).await;
    bob.expect(" :bob!bob@chat PRIVMSG $* :hello world").await;

    // The web user's topic; the IRC user's view of the channel.
    alice.send(json!({"type": "topic", "room": "lobby", "topic": "Welcome all"})).await;
    alice.expect("topic").await;
    alice.expect("ack").await;
    bob.expect(":alice!alice@chat TOPIC #lobby :Welcome all").await;
    bob.send("TOPIC #lobby").await;
    bob.expect(" 332 bob #lobby :Welcome all").await;
    bob.send("WHO #lobby").await;
    let (_, who) = bob.until(" 315 bob #lobby :End of WHO list").await;
    assert_eq!(who.len(), 2, "{who:?}");
    assert!(who.iter().any(|l| l.contains(" 352 bob #lobby alice chat chat alice H@ :0 alice")), "{who:?}");
    bob.send("LIST").await;
    bob.expect(" 321 bob Channel :Users  Name").await;
    let (_, list) = bob.until(" 323 bob :End of /LIST").await;
    assert!(list.iter().any(|l| l.ends_with(" 322 bob #lobby 2 :Welcome all")), "{list:?}");
    bob.send("WHOIS alice").await;
    bob.expect(" 311 bob alice alice chat * :alice").await;
    bob.until(" 318 bob alice :End of /WHOIS list").await;
    // What a command queues comes before the replies to the next line.
    bob.send("TOPIC #lobby :Set on IRC").await;
    bob.send("PING order").await;
    bob.expect(":bob!bob@chat TOPIC #lobby :Set on IRC").await;
    bob.expect("PONG chat order").await;
    alice.expect_json(json!({"type": "topic", "room": "lobby", "topic": "Set on IRC", "by": "bob"})).await;

    // The web user goes away and comes back (away-notify).
    alice.send(json!({"type": "away", "away": true})).await;
    bob.expect(":alice!alice@chat AWAY :Away").await;
    alice.send(json!({"type": "away", "away": false})).await;
    assert_eq!(bob.next().await.as_deref(), Some(":alice!alice@chat AWAY"));
    bob.sync().await;

    // The web user leaves and comes back; the IRC user sees it.
    alice.send(json!({"type": "leave", "room": "lobby"})).await;
    alice.expect("left").await;
    bob.expect(":alice!alice@chat PART #lobby").await;
    alice.join("lobby").await;
    bob.expect(":alice!alice@chat JOIN #lobby").await;
    bob.sync().await;

    // IRC users are ordinary members to web users.
    let status = alice.request(json!({"type": "who", "room": "lobby"})).await;
    assert_eq!(common::norm(status["members"].clone()), json!([member("bob"), member("alice")]));

    bob.send("QUIT :bye now").await;
    bob.expect("ERROR :Closing Link: chat (Quit: bye now)").await;
    assert_eq!(bob.next().await, None, "closed after ERROR");
    let quit = json!({"type": "presence", "room": "lobby", "nick": "bob", "event": "quit", "reason": "bye now"});
    alice.expect_json(quit).await;
    alice.sync().await;
    server.stop().await;
}

/// Whoever makes a room by joining it moderates it (on IRC and on the web);
/// PART, QUIT and KICK texts reach both sides; WHOWAS remembers who left.
#[tokio::test]
async fn operators_reasons_and_whowas() {
    let server = common::start(irc_config()).await;
    // An IRC user makes #fresh by joining it: its operator.
    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #fresh").await;
    bob.expect(":bob!bob@chat JOIN #fresh").await;
    bob.expect(" 353 bob = #fresh :@bob").await;
    bob.until(" 366 bob #fresh ").await;
    bob.send("MODE #fresh").await;
    assert!(bob.expect(" 324 bob #fresh ").await.ends_with(" #fresh +n"));
    // A web user who joins after is not a moderator.
    let mut carol = Client::in_rooms(&server, "carol", &["fresh"]).await;
    bob.expect(":carol!carol@chat JOIN #fresh").await;
    carol.send(json!({"type": "kick", "room": "fresh", "nick": "bob", "id": "k"})).await;
    carol.expect_error("forbidden").await;
    let mut dave = Irc::register(&server, "dave", "").await;
    dave.send("JOIN #fresh").await;
    let names = dave.until(" 353 dave = #fresh :").await.0;
    assert!(!names.contains("@dave"), "{names}");
    dave.until(" 366 dave #fresh ").await;
    dave.send("KICK #fresh carol").await;
    dave.expect(" 482 dave #fresh :You're not channel operator").await;
    dave.send("INVITE carol #fresh").await;
    dave.expect(" 482 dave #fresh :You're not channel operator").await;
    bob.expect(":dave!dave@chat JOIN #fresh").await;
    carol.expect_json(presence("fresh", "dave", "join")).await;

    // PART with a reason: the others see it, on IRC and on the web.
    dave.send("PART #fresh :gone fishing").await;
    dave.expect(":dave!dave@chat PART #fresh :gone fishing").await;
    bob.expect(":dave!dave@chat PART #fresh :gone fishing").await;
    let part = json!({"type": "presence", "room": "fresh", "nick": "dave", "event": "leave", "reason": "gone fishing"});
    carol.expect_json(part).await;
    // The operator kicks, with a comment, then without (the kicker's nick).
    dave.send("JOIN #fresh").await;
    dave.until(" 366 dave #fresh ").await;
    bob.expect(":dave!dave@chat JOIN #fresh").await;
    carol.expect_json(presence("fresh", "dave", "join")).await;
    bob.send("KICK #fresh dave :behave").await;
    bob.expect(":bob!bob@chat KICK #fresh dave :behave").await;
    dave.expect(":bob!bob@chat KICK #fresh dave :behave").await;
    let kick =
        json!({"type": "presence", "room": "fresh", "nick": "dave", "event": "leave", "by": "bob", "reason": "behave"});
    carol.expect_json(kick).await;
    bob.send("KICK #fresh carol").await;
    bob.expect(":bob!bob@chat KICK #fresh carol :bob").await;
    carol.expect_json(json!({"type": "left", "room": "fresh", "reason": "kicked", "by": "bob"})).await;
    // The operator invites (a public room: an invitation, no more).
    bob.send("INVITE carol #fresh").await;
    bob.expect(" 341 bob carol #fresh").await;
    carol.expect_json(json!({"type": "invited", "room": "fresh", "by": "bob"})).await;
    bob.send("INVITE dave #fresh").await;
    bob.expect(" 341 bob dave #fresh").await;
    dave.expect(":bob!bob@chat INVITE dave #fresh").await;
    bob.send("INVITE nobody #fresh").await;
    bob.expect(" 401 bob nobody :").await;

    // A web user who makes a room by joining it moderates it too.
    carol.join("webmade").await;
    bob.send("JOIN #webmade").await;
    let names = bob.until(" 353 bob = #webmade :").await.0;
    assert!(!names.contains("@bob"), "{names}");
    bob.until(" 366 bob #webmade ").await;
    carol.expect_json(presence("webmade", "bob", "join")).await;
    carol.send(json!({"type": "kick", "room": "webmade", "nick": "bob", "id": "k2"})).await;
    carol
        .expect_json(json!({"type": "presence", "room": "webmade", "nick": "bob", "event": "leave", "by": "carol"}))
        .await;
    carol.expect_json(json!({"type": "ack", "id": "k2"})).await;
    bob.expect(":carol!carol@chat KICK #webmade bob :carol").await;

    // QUIT with a reason; WHOWAS remembers dave's user and real names.
    dave.send("JOIN #fresh").await;
    dave.until(" 366 dave #fresh ").await;
    bob.expect(":dave!dave@chat JOIN #fresh").await;
    dave.send("QUIT :so long").await;
    dave.expect("ERROR :Closing Link: chat (Quit: so long)").await;
    bob.expect(":dave!dave@chat QUIT :so long").await;
    bob.send("WHOWAS dave").await;
    bob.expect(" 314 bob dave dave chat * :dave here").await;
    bob.expect(" 369 bob dave :End of WHOWAS").await;
    bob.send("WHOWAS nobody 1").await;
    bob.expect(" 406 bob nobody :There was no such nickname").await;
    bob.expect(" 369 bob nobody :End of WHOWAS").await;
    bob.send("WHOWAS").await;
    bob.expect(" 431 bob :No nickname given").await;
    bob.sync().await;
    carol.sync().await;
    server.stop().await;
}

/// MODE shows each room's rules: who may set the topic, who may enter.
#[tokio::test]
async fn modes_show_the_room_rules() {
    let mut config = common::auth_config();
    config.irc.listen = "127.0.0.1:0".into();
    let server = common::start(config).await;
    let key = common::bearer(common::API_KEY);
    for body in [json!({"name": "hall"}), json!({"name": "den", "private": true})] {
        let r = common::http::post(server.addr(), "/api/rooms", &[("Authorization", &key)], &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut eve = Irc::register(&server, "eve", "").await;
    for (chan, modes) in [("#hall", "+nt"), ("#den", "+inst"), ("#nothing-yet", "")] {
        eve.send(&format!("MODE {chan}")).await;
        let line = eve.next().await.unwrap();
        match modes {
            "" => assert!(line.contains(&format!(" 403 eve {chan} ")), "{line}"),
            _ => assert!(line.ends_with(&format!(" 324 eve {chan} {modes}")), "{line}"),
        }
    }
    // Only moderators set the topic of #hall.
    eve.send("JOIN #hall").await;
    eve.until(" 366 eve #hall ").await;
    eve.send("TOPIC #hall :mine").await;
    eve.expect(" 482 eve #hall :").await;
    eve.sync().await;
    server.stop().await;
}

/// An account logs in with PASS, or SASL PLAIN; refusals are numerics.
#[tokio::test]
async fn accounts_register_and_refusals_are_numerics() {
    let server = common::start(irc_config()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/register", server.addr());
    let r = http.post(&url).json(&json!({"nick": "carol", "password": "correct horse"})).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // SASL PLAIN.
    let mut c = Irc::connect(&server).await;
    c.send("CAP LS 302").await;
    c.expect("CAP * LS").await;
    c.send("CAP REQ :sasl").await;
    c.expect("CAP * ACK :sasl").await;
    c.send("NICK carol").await;
    c.send("USER carol 0 * :Carol").await;
    c.send("AUTHENTICATE PLAIN").await;
    c.expect("AUTHENTICATE +").await;
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode("carol\0carol\0correct horse");
    c.send(&format!("AUTHENTICATE {payload}")).await;
    c.expect(" 900 carol carol!carol@chat carol :You are now logged in as carol").await;
    c.expect(" 903 carol :SASL authentication successful").await;
    c.send("CAP END").await;
    c.expect(" 001 carol ").await;
    c.until(" 376 carol ").await;

    // A wrong password with PASS: 464 and the end.
    let mut d = Irc::connect(&server).await;
    d.send("PASS wrong").await;
    d.send("NICK carol").await;
    d.send("USER carol 0 * :Carol").await;
    d.expect(" 464 carol ").await;
    d.expect("ERROR :").await;
    assert_eq!(d.next().await, None);

    // The nick is taken (carol is online): 433, and another nick works.
    let mut e = Irc::connect(&server).await;
    e.send("NICK carol").await;
    e.send("USER x 0 * :x").await;
    e.expect(" 433 carol carol :Nickname is already in use").await;
    e.send("NICK 9lives").await;
    e.expect(" 432 carol 9lives :Erroneous nickname").await;
    e.send("NICK dave").await;
    e.expect(" 001 dave ").await;
    e.until(" 376 dave ").await;

    // Refusals of a registered client.
    for (line, reply) in [
        ("JOIN lobby", " 403 dave lobby :No such channel"),
        ("JOIN", " 461 dave JOIN :Not enough parameters"),
        ("PART #lobby", " 442 dave #lobby "),
        ("PRIVMSG nobody :hi", " 401 dave nobody "),
        ("PRIVMSG #nowhere :hi", " 404 dave #nowhere "),
        ("PRIVMSG dave", " 412 dave :No text to send"),
        ("TOPIC #lobby :x", " 442 dave #lobby :You're not on that channel"),
        ("KICK #lobby carol", " 403 dave #lobby :No such channel"),
        ("USER a b c d", " 462 dave :You may not reregister"),
        ("FROB", " 421 dave FROB :Unknown command"),
        ("NICK carol", " 433 dave carol :Nickname is already in use"),
        ("NICK newname", " 447 dave newname "),
        ("MODE carol", " 502 dave "),
        ("WHOIS nobody", " 401 dave nobody :No such nick/channel"),
    ] {
        e.send(line).await;
        e.expect(reply).await;
    }
    e.expect(" 318 dave nobody :End of /WHOIS list").await;
    // Not a moderator in a room someone else made.
    c.send("JOIN #lobby").await;
    c.until(" 366 carol #lobby ").await;
    e.send("JOIN #lobby").await;
    e.until(" 366 dave #lobby ").await;
    c.expect(":dave!dave@chat JOIN #lobby").await;
    e.send("KICK #lobby carol").await;
    e.expect(" 482 dave #lobby :You're not channel operator").await;
    e.send("MODE #lobby").await;
    assert!(e.expect(" 324 dave #lobby ").await.ends_with(" #lobby +n"), "anyone sets the topic here");
    e.sync().await;
    c.sync().await;
    server.stop().await;
}

/// Bad input of every kind: a reply where IRC has one, the connection
/// still usable, and nothing reaches the other users.
#[tokio::test]
async fn bad_input_harms_nobody() {
    let mut config = irc_config();
    config.irc.flood_burst = 10;
    config.irc.flood_per_sec = 100;
    let server = common::start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;

    // Before registration: 451; the connection goes on to register.
    let mut early = Irc::connect(&server).await;
    early.send("JOIN #lobby").await;
    early.expect(" 451 * :You have not registered").await;
    early.send("PRIVMSG #lobby :sneaky").await;
    early.expect(" 451 * ").await;

    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #lobby").await;
    bob.until(" 366 bob #lobby ").await;
    alice.expect_json(presence("lobby", "bob", "join")).await;

    // LF alone, CR alone: lines all the same.
    bob.send_raw(b"PING lf\n").await;
    bob.expect("PONG chat lf").await;
    bob.send_raw(b"PING cr\r").await;
    bob.expect("PONG chat cr").await;
    // A 10 KB line: 417, and the next line is read.
    let long = format!("PRIVMSG #lobby :{}\r\n", "x".repeat(10_000));
    bob.send_raw(long.as_bytes()).await;
    bob.expect(" 417 bob :Input line was too long").await;
    bob.sync().await;
    // 513 bytes without tags is too long; 8,000 bytes of tags are allowed.
    bob.send(&format!("PRIVMSG #lobby :{}", "y".repeat(500))).await;
    bob.expect(" 417 bob ").await;
    bob.send(&format!("@+tag={} PING tagged", "t".repeat(8000))).await;
    bob.expect("PONG chat tagged").await;
    // NUL bytes, invalid UTF-8.
    bob.send_raw(b"PRIVMSG #lobby :nul\0here\r\n").await;
    bob.expect("FAIL * INVALID_UTF8 :NUL bytes are not allowed").await;
    bob.send_raw(b"PRIVMSG #lobby :\xff\xfe bad\r\n").await;
    bob.expect("FAIL * INVALID_UTF8 :Lines must be UTF-8").await;
    // Unknown commands, blank lines, a lone source.
    bob.send("FLY #lobby").await;
    bob.expect(" 421 bob FLY :Unknown command").await;
    bob.send_raw(b"\r\n\r\n   \r\n:prefix.only\r\n").await;
    bob.sync().await;
    // A line in parts: handled once its end comes.
    bob.send_raw(b"PRIVMSG #lobby :first ").await;
    alice.sync().await;
    bob.send_raw(b"part\r\n").await;
    alice.expect_json(room_msg("lobby", 1, "bob", "first part")).await;
    bob.sync().await;

    // A flood: delayed, never dropped, in order.
    let mut flood = String::new();
    for i in 0..60 {
        flood.push_str(&format!("PRIVMSG #lobby :flood {i}\r\n"));
    }
    bob.send_raw(flood.as_bytes()).await;
    for i in 0..60 {
        alice.expect_json(room_msg("lobby", 2 + i, "bob", &format!("flood {i}"))).await;
    }
    bob.sync().await;
    alice.sync().await;
    // The early connection is still usable and registers.
    early.send("NICK early").await;
    early.send("USER e 0 * :e").await;
    early.expect(" 001 early ").await;
    server.stop().await;
}

/// A client that never answers PING is dropped after limits.idle_timeout;
/// one that never registers, after limits.hello_timeout.
#[tokio::test]
async fn silent_clients_are_dropped() {
    let mut config = irc_config();
    config.limits.ping_interval = Duration::from_millis(200);
    config.limits.idle_timeout = Duration::from_millis(600);
    config.limits.hello_timeout = Duration::from_millis(500);
    let server = common::start(config).await;
    let mut silent = Irc::register(&server, "sleepy", "").await;
    silent.expect("PING chat").await;
    silent.until("ERROR :Closing Link: Ping timeout").await;
    assert_eq!(silent.next().await, None);
    let mut unregistered = Irc::connect(&server).await;
    unregistered.send("NICK lazy").await;
    unregistered.until("ERROR :Closing Link: Registration timeout").await;
    server.stop().await;
}

/// A tmux server of this test's own, running one irssi.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "irc"])
    }

    /// Waits until irssi's screen shows `text` (a terminal gives no event
    /// to await: its screen is read again every 50 ms, up to `WAIT`).
    async fn shows(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "irssi never showed {text:?}; screen:\n{screen}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn keys(&self, line: &str) {
        self.run(&["send-keys", "-t", "irc", "-l", line]);
        self.run(&["send-keys", "-t", "irc", "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Whether `tool` runs (`version_flag` prints its version: irssi's
/// `--version`, tmux's `-V`; tmux's `-v` would write log files).
fn installed(tool: &str, version_flag: &str) -> bool {
    std::process::Command::new(tool).arg(version_flag).output().is_ok_and(|o| o.status.success())
}

/// irssi, a real IRC client, joins #lobby and chats with a web user.
/// (About 8 s: irssi sends its own commands 2.2 s apart after connecting.)
#[tokio::test]
async fn irssi_chats_with_a_web_user() {
    if !installed("irssi", "--version") || !installed("tmux", "-V") {
        eprintln!("SKIPPED irssi test: irssi or tmux is not installed (apt-get install irssi tmux)");
        return;
    }
    let server = common::start(irc_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    let home = tempfile::tempdir().unwrap();
    let addr = server.irc_addr().unwrap();
    let tmux = Tmux { socket: format!("chat-irc-test-{}", std::process::id()) };
    let irssi =
        format!("irssi --home={} --connect={} --port={} --nick=ian", home.path().display(), addr.ip(), addr.port());
    tmux.run(&["new-session", "-d", "-s", "irc", "-x", "160", "-y", "40", &irssi]);
    tmux.shows("Welcome to the chat IRC network").await;
    tmux.keys("/join #lobby");
    alice.expect_json(presence("lobby", "ian", "join")).await;
    tmux.shows("has joined #lobby").await;
    tmux.keys("hello from irssi");
    alice.expect_json(room_msg("lobby", 1, "ian", "hello from irssi")).await;
    alice.say("lobby", "hi ian, from the web").await;
    tmux.shows("alice> hi ian, from the web").await;
    tmux.keys("/quit leaving");
    let quit = json!({"type": "presence", "room": "lobby", "nick": "ian", "event": "quit", "reason": "leaving"});
    alice.expect_json(quit).await;
    server.stop().await;
}

/// IRC over TLS (`irc.tls_listen`) with a certificate made by openssl
/// (SKIPPED without it); a missing certificate stops the start.
#[tokio::test]
async fn irc_over_tls() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED irc TLS test: openssl cannot make a certificate");
        return;
    }
    let mut config = irc_config();
    config.irc.tls_listen = "127.0.0.1:0".into();
    config.irc.tls_key = key.display().to_string();
    config.irc.tls_cert = dir.path().join("missing.pem").display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = chat::Server::start_on(config.clone(), listener).await.err().expect("a missing certificate");
    assert!(format!("{refused:#}").contains("irc.tls_cert"), "{refused:#}");

    config.irc.tls_cert = cert.display().to_string();
    let server = common::start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.irc_tls_addr().unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (r, mut w) = tokio::io::split(tls);
    let mut r = BufReader::new(r);
    w.write_all(b"NICK sec\r\nUSER sec 0 * :Sec\r\nJOIN #lobby\r\nPRIVMSG #lobby :over TLS\r\n").await.unwrap();
    alice.expect_json(presence("lobby", "sec", "join")).await;
    alice.expect_json(room_msg("lobby", 1, "sec", "over TLS")).await;
    let mut first = String::new();
    r.read_line(&mut first).await.unwrap();
    assert_eq!(first, ":chat 001 sec :Welcome to the chat IRC network, sec!sec@chat\r\n");
    server.stop().await;
}

/// An INVITE only ever adds: a moderator of a private room invited to it
/// by another stays a moderator (it may still kick).
#[tokio::test]
async fn an_invite_never_demotes_a_moderator() {
    let mut config = common::auth_config();
    config.irc.listen = "127.0.0.1:0".into();
    let server = common::start(config).await;
    let key = common::bearer(common::API_KEY);
    for nick in ["mod1", "mod2"] {
        let r = common::http::post(
            server.addr(),
            "/api/register",
            &[],
            &json!({"nick": nick, "password": "horse-battery"}),
        )
        .await;
        assert!(r.status < 300, "{}", r.body);
    }
    let r = common::http::post(
        server.addr(),
        "/api/rooms",
        &[("Authorization", &key)],
        &json!({"name": "den", "private": true}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for nick in ["mod1", "mod2"] {
        let body = json!({"nick": nick, "role": "moderator"});
        let r = common::http::post(server.addr(), "/api/rooms/den/members", &[("Authorization", &key)], &body).await;
        assert!(r.status < 300, "{}", r.body);
    }

    let mut one = Irc::connect(&server).await;
    one.nick = "mod1".into();
    one.send("PASS horse-battery").await;
    one.send("NICK mod1").await;
    one.send("USER mod1 0 * :one").await;
    one.until(" 376 mod1 ").await;
    one.send("JOIN #den").await;
    one.until(" 366 mod1 #den ").await;
    let (mut two, _) = Client::hello_with(&server, json!({"nick": "mod2", "password": "horse-battery"})).await;
    two.join("den").await;
    one.expect(":mod2!mod2@chat JOIN #den").await;

    one.send("INVITE mod2 #den").await;
    one.expect(" 341 mod1 mod2 #den").await;
    two.expect_json(json!({"type": "invited", "room": "den", "by": "mod1"})).await;
    // Still a moderator: mod2 kicks mod1.
    two.send(json!({"type": "kick", "room": "den", "nick": "mod1", "id": "k"})).await;
    two.expect_json(json!({"type": "presence", "room": "den", "nick": "mod1", "event": "leave", "by": "mod2"})).await;
    two.expect_json(json!({"type": "ack", "id": "k"})).await;
    one.expect(":mod2!mod2@chat KICK #den mod1 :mod2").await;
    two.sync().await;
    server.stop().await;
}

/// Channel modes set over IRC are rules of the room for every door: a web
/// user is stopped by `+m` (until voiced), `+k`, `+l`, `+b` and `+i` as an
/// IRC user is; every change is one MODE line to the channel and one `mode`
/// frame to web members; NAMES shows `@` and `+` for others.
#[tokio::test]
async fn channel_modes_are_room_rules_for_every_door() {
    let mut config = irc_config();
    config.rooms.max_bans = 2;
    let server = common::start(config).await;
    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #m").await;
    bob.until(" 366 bob #m ").await;
    let mut carol = Irc::register(&server, "carol", "").await;
    carol.send("JOIN #m").await;
    carol.until(" 366 carol #m ").await;
    bob.expect(":carol!carol@chat JOIN #m").await;
    // A web client that shows roles asks for them in `hello`.
    let (mut wes, _) = Client::hello_with(&server, json!({"nick": "wes", "member_roles": true})).await;
    wes.join("m").await;
    bob.expect(":wes!wes@chat JOIN #m").await;
    carol.expect(":wes!wes@chat JOIN #m").await;

    // +m: only moderators and voiced members speak, on IRC and on the web.
    bob.send("MODE #m +m").await;
    bob.expect(":bob!bob@chat MODE #m +m").await;
    carol.expect(":bob!bob@chat MODE #m +m").await;
    wes.expect_json(json!({"type": "mode", "room": "m", "by": "bob", "changes": [{"mode": "moderated", "on": true}]}))
        .await;
    carol.send("PRIVMSG #m :hello?").await;
    carol.expect(" 404 carol #m :").await;
    wes.send(json!({"type": "say", "room": "m", "text": "me too?", "id": "s1"})).await;
    let e = wes.expect_error("forbidden").await;
    assert_eq!(e["reason"], "moderated", "{e}");
    bob.send("MODE #m +v carol").await;
    bob.expect(":bob!bob@chat MODE #m +v carol").await;
    carol.expect(":bob!bob@chat MODE #m +v carol").await;
    wes.expect("mode").await;
    carol.send("PRIVMSG #m :now I may").await;
    bob.expect(":carol!carol@chat PRIVMSG #m :now I may").await;
    wes.expect_json(room_msg("m", 1, "carol", "now I may")).await;
    wes.send(json!({"type": "who", "room": "m", "id": "w"})).await;
    let who = wes.expect("room_status").await;
    let roles: Vec<(String, bool, bool)> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["nick"].as_str().unwrap().to_owned(), m["moderator"] == true, m["voiced"] == true))
        .collect();
    assert_eq!(
        roles,
        [("bob".into(), true, false), ("carol".into(), false, true), ("wes".into(), false, false)],
        "{who}"
    );
    carol.send("NAMES #m").await;
    let names = carol.expect(" 353 carol = #m :").await;
    assert!(names.ends_with(":@bob +carol wes"), "{names}");
    carol.expect(" 366 carol #m ").await;
    bob.send("MODE #m -m").await;
    bob.expect(":bob!bob@chat MODE #m -m").await;
    carol.expect(":bob!bob@chat MODE #m -m").await;
    wes.expect("mode").await;

    // Refusals: not an operator, unknown letters, bad parameters, no such channel.
    carol.send("MODE #m +s").await;
    carol.expect(" 482 carol #m :").await;
    bob.send("MODE #m +x").await;
    bob.expect(" 472 bob x :").await;
    bob.send("MODE #m +l many").await;
    bob.expect(" 696 bob #m l many :").await;
    bob.send("MODE #m +k :two words").await;
    bob.expect(" 696 bob #m k * :").await;
    bob.send("MODE #nowhere +m").await;
    bob.expect(" 403 bob #nowhere :").await;
    bob.send("MODE #m +o nobody").await;
    bob.expect(" 401 bob nobody :").await;
    bob.send("MODE #m +v dave").await;
    bob.expect(" 401 bob dave :").await;

    // +k and +l, shown by MODE #m; a key is needed on the web too.
    bob.send("MODE #m +kl sesame 3").await;
    bob.expect(":bob!bob@chat MODE #m +kl sesame 3").await;
    carol.expect(":bob!bob@chat MODE #m +kl sesame 3").await;
    wes.expect_json(json!({"type": "mode", "room": "m", "by": "bob", "changes": [
        {"mode": "key", "on": true, "arg": "sesame"}, {"mode": "limit", "on": true, "arg": "3"}]}))
        .await;
    bob.send("MODE #m").await;
    assert!(bob.expect(" 324 bob #m ").await.ends_with(" #m +kln sesame 3"));
    let mut dave = Irc::register(&server, "dave", "").await;
    dave.send("JOIN #m").await;
    dave.expect(" 475 dave #m :").await;
    dave.send("JOIN #m wrong").await;
    dave.expect(" 475 dave #m :").await;
    dave.send("JOIN #m sesame").await;
    dave.expect(" 471 dave #m :").await;
    let (mut wen, _) = Client::hello(&server, "wen").await;
    wen.send(json!({"type": "join", "room": "m", "key": "sesame", "id": "j"})).await;
    assert_eq!(wen.expect_error("forbidden").await["reason"], "full");
    bob.send("MODE #m -l").await;
    bob.expect(":bob!bob@chat MODE #m -l").await;
    carol.expect(":bob!bob@chat MODE #m -l").await;
    wes.expect("mode").await;
    wen.send(json!({"type": "join", "room": "m", "id": "j2"})).await;
    assert_eq!(wen.expect_error("forbidden").await["reason"], "key");
    wen.send(json!({"type": "join", "room": "m", "key": "sesame", "id": "j3"})).await;
    wen.expect("joined").await;
    for c in [&mut bob, &mut carol] {
        c.expect(":wen!wen@chat JOIN #m").await;
    }
    wes.expect_json(presence("m", "wen", "join")).await;
    bob.send("MODE #m -k *").await;
    bob.expect(":bob!bob@chat MODE #m -k *").await;
    carol.expect(":bob!bob@chat MODE #m -k *").await;
    wes.expect("mode").await;
    wen.expect("mode").await;

    // +b: a ban list with a cap; a banned web user may not join, a banned
    // member may not speak.
    bob.send("MODE #m +b dave").await;
    bob.expect(":bob!bob@chat MODE #m +b dave!*@*").await;
    bob.send("MODE #m +b WES!*@*").await;
    bob.expect(":bob!bob@chat MODE #m +b wes!*@*").await;
    bob.send("MODE #m +b x!*@*").await;
    bob.expect(" 478 bob #m b :").await;
    bob.send("MODE #m b").await;
    bob.expect(" 367 bob #m dave!*@* bob ").await;
    bob.expect(" 367 bob #m wes!*@* bob ").await;
    bob.expect(" 368 bob #m :").await;
    dave.send("JOIN #m").await;
    dave.expect(" 474 dave #m :").await;
    wes.until("mode").await;
    wes.until("mode").await;
    wes.send(json!({"type": "say", "room": "m", "text": "banned?", "id": "s2"})).await;
    assert_eq!(wes.expect_error("forbidden").await["reason"], "banned");
    bob.send("MODE #m -b dave!*@*").await;
    bob.until(":bob!bob@chat MODE #m -b dave!*@*").await;
    dave.send("JOIN #m").await;
    dave.expect(":dave!dave@chat JOIN #m").await;
    dave.until(" 366 dave #m ").await;

    // +i: only the invited come in; +o by a nick goes to the user holding it.
    bob.send("MODE #m +i").await;
    bob.until(":bob!bob@chat MODE #m +i").await;
    let mut eve = Irc::register(&server, "eve", "").await;
    eve.send("JOIN #m").await;
    eve.expect(" 473 eve #m :").await;
    bob.send("INVITE eve #m").await;
    bob.until(" 341 bob eve #m").await;
    eve.expect(":bob!bob@chat INVITE eve #m").await;
    eve.send("JOIN #m").await;
    eve.expect(":eve!eve@chat JOIN #m").await;
    eve.until(" 366 eve #m ").await;
    bob.send("MODE #m +o carol").await;
    bob.until(":bob!bob@chat MODE #m +o carol").await;
    carol.until(":bob!bob@chat MODE #m +o carol").await;
    carol.send("KICK #m eve").await;
    carol.until(":carol!carol@chat KICK #m eve :carol").await;
    bob.until(":carol!carol@chat KICK #m eve :carol").await;
    eve.until(":carol!carol@chat KICK #m eve :carol").await;
    bob.sync().await;
    server.stop().await;
}

/// A room made through the API keeps its settings across a restart; a
/// moderator changes them with a WebSocket `mode` frame and reads them back.
#[tokio::test]
async fn room_settings_are_stored() {
    let mut config = common::auth_config();
    config.irc.listen = "127.0.0.1:0".into();
    let server = common::start(config.clone()).await;
    let key = common::bearer(common::API_KEY);
    let r =
        common::http::post(server.addr(), "/api/register", &[], &json!({"nick": "mo", "password": "horse-battery"}))
            .await;
    assert!(r.status < 300, "{}", r.body);
    let r = common::http::post(server.addr(), "/api/rooms", &[("Authorization", &key)], &json!({"name": "hall"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = json!({"nick": "mo", "role": "moderator"});
    let r = common::http::post(server.addr(), "/api/rooms/hall/members", &[("Authorization", &key)], &body).await;
    assert!(r.status < 300, "{}", r.body);
    let (mut mo, _) = Client::hello_with(&server, json!({"nick": "mo", "password": "horse-battery"})).await;
    mo.join("hall").await;
    // Bad settings change nothing.
    for (set, why) in [
        (json!({"limit": 0}), "positive"),
        (json!({"key": "a b"}), "key"),
        (json!({"colour": "red"}), "colour"),
        (json!({"ban": [""]}), "mask"),
    ] {
        mo.send(json!({"type": "mode", "room": "hall", "set": set, "id": "bad"})).await;
        let e = mo.expect_error("invalid").await;
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }
    let set = json!({"moderated": true, "topic_lock": false, "limit": 9, "key": "k3y", "ban": ["troll"]});
    mo.send(json!({"type": "mode", "room": "hall", "set": set, "id": "m"})).await;
    let (changed, _) = mo.until("mode").await;
    assert_eq!(changed["changes"].as_array().unwrap().len(), 5, "{changed}");
    mo.expect_json(json!({"type": "ack", "id": "m"})).await;
    let (mut guest, _) = Client::hello(&server, "guest").await;
    guest.send(json!({"type": "mode", "room": "hall", "set": {"secret": true}, "id": "g"})).await;
    guest.expect_error("not_in_room").await;
    server.stop().await;

    let server = common::start(config).await;
    let (mut mo, _) = Client::hello_with(&server, json!({"nick": "mo", "password": "horse-battery"})).await;
    mo.send(json!({"type": "mode", "room": "hall", "id": "r"})).await;
    let mut modes = mo.expect("modes").await;
    modes["bans"][0]["at"] = json!(0);
    assert_eq!(
        modes,
        json!({"type": "modes", "id": "r", "room": "hall", "moderated": true, "topic_lock": false,
            "invite_only": false, "secret": false, "key": "*", "limit": 9,
            "bans": [{"mask": "troll!*@*", "by": "mo", "at": 0}]})
    );
    let mut troll = Irc::register(&server, "troll", "").await;
    troll.send("JOIN #hall k3y").await;
    troll.expect(" 474 troll #hall :").await;
    let mut ivy = Irc::register(&server, "ivy", "").await;
    ivy.send("JOIN #hall k3y").await;
    ivy.until(" 366 ivy #hall ").await;
    ivy.send("PRIVMSG #hall :hi").await;
    ivy.expect(" 404 ivy #hall :").await;
    ivy.send("TOPIC #hall :open topic").await;
    ivy.expect(":ivy!ivy@chat TOPIC #hall :open topic").await;
    ivy.send("MODE #hall").await;
    assert!(ivy.expect(" 324 ivy #hall ").await.ends_with(" #hall +klmn k3y 9"));
    // Over HTTP: the API key (or a moderator) changes them; a guest may not.
    let key = common::bearer(common::API_KEY);
    let path = "/api/rooms/hall";
    let r = common::http::patch(server.addr(), path, &[("Authorization", &key)], &json!({"moderated": "no"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = common::http::patch(server.addr(), path, &[("Authorization", &key)], &json!({"moderated": false})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"room": "hall", "changes": [{"mode": "moderated", "on": false}]}));
    ivy.expect(":server!server@chat MODE #hall -m").await;
    ivy.send("PRIVMSG #hall :hi now").await;
    ivy.sync().await;
    let (_, welcome) = Client::hello(&server, "nobody").await;
    let guest = common::bearer(welcome["token"].as_str().unwrap());
    let r = common::http::patch(server.addr(), path, &[("Authorization", &guest)], &json!({"secret": true})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    server.stop().await;
}

/// `+o` in a room made by joining never gives its earlier history: the
/// maker (who moderates what is said after it made the room) opping itself
/// again, or a friend it ops, may not delete what was said before; both
/// may delete what is said since.
#[tokio::test]
async fn an_op_in_a_room_made_by_joining_moderates_only_what_comes_after() {
    let server = common::start(irc_config()).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    alice.join("h").await;
    let old = alice.say("h", "old news").await["message"]["msg_id"].clone();
    alice.send(json!({"type": "leave", "room": "h"})).await;
    alice.expect("left").await;
    let (mut mallory, _) = Client::hello(&server, "mallory").await;
    mallory.join("h").await;
    let (mut eve, _) = Client::hello(&server, "eve").await;
    eve.join("h").await;
    mallory.expect_json(presence("h", "eve", "join")).await;
    mallory.send(json!({"type": "mode", "room": "h", "set": {"op": ["mallory", "eve"]}, "id": "o"})).await;
    for c in [&mut mallory, &mut eve] {
        let (mode, _) = c.until("mode").await;
        assert_eq!(
            mode["changes"],
            json!([{"mode": "op", "on": true, "arg": "mallory"},
            {"mode": "op", "on": true, "arg": "eve"}])
        );
    }
    mallory.expect_json(json!({"type": "ack", "id": "o"})).await;
    for c in [&mut mallory, &mut eve] {
        c.send(json!({"type": "delete", "msg_id": old, "id": "d"})).await;
        c.expect_error("forbidden").await;
    }
    let new = mallory.say("h", "new").await["message"]["msg_id"].clone();
    eve.expect("message").await;
    eve.send(json!({"type": "delete", "msg_id": new, "id": "d2"})).await;
    eve.expect_json(json!({"type": "ack", "id": "d2"})).await;
    assert_eq!(mallory.expect("deleted").await["msg_id"], new);
    alice.send(json!({"type": "history", "room": "h", "id": "hist"})).await;
    let h = alice.expect("history").await;
    assert_eq!(h["messages"][0]["text"], "old news", "{h}");
    assert_eq!(h["messages"][0]["deleted"], json!(null), "{h}");
    server.stop().await;
}

/// `-v` leaves a stored moderator a moderator, `-o` leaves a voiced member
/// voiced: a role is changed from the one held.
#[tokio::test]
async fn devoicing_a_moderator_keeps_the_moderator() {
    let server = common::start(common::auth_config()).await;
    let key = common::bearer(common::API_KEY);
    let r =
        common::http::post(server.addr(), "/api/register", &[], &json!({"nick": "mo", "password": "horse-battery"}))
            .await;
    assert!(r.status < 300, "{}", r.body);
    let r = common::http::post(server.addr(), "/api/rooms", &[("Authorization", &key)], &json!({"name": "hall"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = json!({"nick": "mo", "role": "moderator"});
    let r = common::http::post(server.addr(), "/api/rooms/hall/members", &[("Authorization", &key)], &body).await;
    assert!(r.status < 300, "{}", r.body);
    let (mut mo, welcome) = Client::hello_with(&server, json!({"nick": "mo", "password": "horse-battery"})).await;
    let mine = common::bearer(welcome["token"].as_str().unwrap());
    mo.join("hall").await;
    let path = "/api/rooms/hall";
    let r = common::http::patch(server.addr(), path, &[("Authorization", &key)], &json!({"devoice": ["mo"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    mo.expect("mode").await;
    // Still a stored moderator: may change the settings over HTTP.
    let r = common::http::patch(server.addr(), path, &[("Authorization", &mine)], &json!({"moderated": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"room": "hall", "changes": [{"mode": "moderated", "on": true}]}));
    mo.expect_json(json!({"type": "mode", "room": "hall", "by": "mo",
        "changes": [{"mode": "moderated", "on": true}]}))
        .await;
    server.stop().await;
}

/// A change that cannot be made in full changes nothing: no setting
/// stored, no `mode` line, speech as before.
#[tokio::test]
async fn a_refused_mode_change_changes_nothing() {
    let mut config = irc_config();
    config.rooms.max_bans = 2;
    let server = common::start(config).await;
    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #m").await;
    bob.until(" 366 bob #m ").await;
    let mut carol = Irc::register(&server, "carol", "").await;
    carol.send("JOIN #m").await;
    carol.until(" 366 carol #m ").await;
    bob.expect(":carol!carol@chat JOIN #m").await;
    // +v of someone not here.
    bob.send("MODE #m +mv dave").await;
    bob.expect(" 401 bob dave :").await;
    bob.send("MODE #m").await;
    let modes = bob.expect(" 324 bob #m ").await;
    assert!(modes.ends_with(" #m +n"), "{modes}");
    carol.send("PRIVMSG #m :still open").await;
    bob.expect(":carol!carol@chat PRIVMSG #m :still open").await;
    // More bans than the cap, with another setting.
    bob.send("MODE #m +b x").await;
    bob.expect(":bob!bob@chat MODE #m +b x!*@*").await;
    carol.expect(":bob!bob@chat MODE #m +b x!*@*").await;
    bob.send("MODE #m +mbb a b").await;
    bob.expect(" 478 bob #m b :").await;
    bob.send("MODE #m").await;
    let modes = bob.expect(" 324 bob #m ").await;
    assert!(modes.ends_with(" #m +n"), "{modes}");
    bob.send("MODE #m b").await;
    bob.expect(" 367 bob #m x!*@* bob ").await;
    bob.expect(" 368 bob #m :").await;
    carol.send("PRIVMSG #m :and still").await;
    bob.expect(":carol!carol@chat PRIVMSG #m :and still").await;
    // A swap within the cap is fine.
    bob.send("MODE #m -b+bb x a b").await;
    bob.expect(":bob!bob@chat MODE #m -b+bb x!*@* a!*@* b!*@*").await;
    carol.expect(":bob!bob@chat MODE #m -b+bb x!*@* a!*@* b!*@*").await;
    carol.sync().await;
    server.stop().await;
}

/// A banned member, or one without voice in a moderated room, is silent
/// at every door: `typing`, `event`, `react` and `edit` are refused and
/// the others see nothing; kicked and banned, it edits nothing either.
#[tokio::test]
async fn silenced_members_are_silent_at_every_door() {
    let server = common::start(irc_config()).await;
    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #g").await;
    bob.until(" 366 bob #g ").await;
    let (mut wes, _) = Client::hello(&server, "wes").await;
    wes.join("g").await;
    bob.expect(":wes!wes@chat JOIN #g").await;
    let (mut wade, _) = Client::hello(&server, "wade").await;
    wade.join("g").await;
    wes.expect_json(presence("g", "wade", "join")).await;
    bob.expect(":wade!wade@chat JOIN #g").await;
    let mine = wes.say("g", "mine").await["message"]["msg_id"].clone();
    wade.expect("message").await;
    bob.expect(":wes!wes@chat PRIVMSG #g :mine").await;
    bob.send("PRIVMSG #g :hello").await;
    let theirs = wes.expect("message").await["msg_id"].clone();
    wade.expect("message").await;

    let tries = || {
        [
            json!({"type": "typing", "room": "g", "active": true, "id": "t"}),
            json!({"type": "event", "room": "g", "name": "move", "data": {"x": 1}, "id": "e"}),
            json!({"type": "react", "msg_id": theirs, "emoji": "👍", "on": true, "id": "r"}),
            json!({"type": "edit", "msg_id": mine, "text": "rewritten", "id": "ed"}),
        ]
    };
    bob.send("MODE #g +m").await;
    bob.expect(":bob!bob@chat MODE #g +m").await;
    wes.expect("mode").await;
    wade.expect("mode").await;
    for frame in tries() {
        wes.send(frame.clone()).await;
        let e = wes.expect_error("forbidden").await;
        assert_eq!(e["reason"], "moderated", "{frame} {e}");
    }
    wade.sync().await;
    bob.send("MODE #g -m+b wes").await;
    bob.expect(":bob!bob@chat MODE #g -m+b wes!*@*").await;
    wes.expect("mode").await;
    wade.expect("mode").await;
    for frame in tries() {
        wes.send(frame.clone()).await;
        let e = wes.expect_error("forbidden").await;
        assert_eq!(e["reason"], "banned", "{frame} {e}");
    }
    wade.sync().await;
    bob.send("KICK #g wes").await;
    bob.expect(":bob!bob@chat KICK #g wes :bob").await;
    wes.until("left").await;
    wade.until("presence").await;
    wes.send(json!({"type": "edit", "msg_id": mine, "text": "rewritten", "id": "ed2"})).await;
    assert_eq!(wes.expect_error("forbidden").await["reason"], "banned");
    wade.sync().await;
    bob.sync().await;
    server.stop().await;
}

/// A closed room (keyed, secret) is read only by its members: history over
/// WebSocket and HTTP, its status over HTTP, a search in it; a banned user
/// reads nothing there, even of an open room.
#[tokio::test]
async fn closed_rooms_are_read_only_by_those_in_them() {
    let server = common::start(irc_config()).await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.join("den").await;
    bob.say("den", "den talk").await;
    let (mut carol, welcome) = Client::hello(&server, "carol").await;
    let token = common::bearer(welcome["token"].as_str().unwrap());
    let auth = [("Authorization", token.as_str())];
    // Open: carol reads it.
    carol.send(json!({"type": "history", "room": "den", "id": "h"})).await;
    assert_eq!(carol.expect("history").await["messages"][0]["text"], "den talk");
    assert_eq!(common::http::get(server.addr(), "/api/rooms/den", &auth).await.status, 200);
    for (set, unset, reason) in [
        (json!({"key": "sesame"}), json!({"key": null}), json!(null)),
        (json!({"secret": true}), json!({"secret": false}), json!(null)),
        (json!({"ban": ["carol"]}), json!({"unban": ["carol!*@*"]}), json!("banned")),
    ] {
        bob.send(json!({"type": "mode", "room": "den", "set": set, "id": "m"})).await;
        bob.expect("mode").await;
        bob.expect_json(json!({"type": "ack", "id": "m"})).await;
        carol.send(json!({"type": "history", "room": "den", "id": "h"})).await;
        let e = carol.expect_error("forbidden").await;
        assert_eq!(e["reason"], reason, "{set}: {e}");
        carol.send(json!({"type": "search", "q": "talk", "room": "den", "id": "s"})).await;
        carol.expect_error("forbidden").await;
        for path in ["/api/rooms/den", "/api/rooms/den/messages"] {
            let r = common::http::get(server.addr(), path, &auth).await;
            assert_eq!(r.status, 403, "{set} {path}: {}", r.body);
        }
        // Its members read it.
        bob.send(json!({"type": "history", "room": "den", "id": "h"})).await;
        assert_eq!(bob.expect("history").await["messages"][0]["text"], "den talk");
        bob.send(json!({"type": "mode", "room": "den", "set": unset, "id": "u"})).await;
        bob.expect("mode").await;
        bob.expect_json(json!({"type": "ack", "id": "u"})).await;
        carol.send(json!({"type": "history", "room": "den", "id": "h"})).await;
        assert_eq!(carol.expect("history").await["messages"][0]["text"], "den talk");
    }
    server.stop().await;
}

/// Sending `join` again while in the room (a resync) answers `joined`
/// whatever the room's settings became since (a key, invite-only, a ban).
#[tokio::test]
async fn joining_again_is_a_resync_whatever_the_settings() {
    let server = common::start(irc_config()).await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.join("r").await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    carol.join("r").await;
    bob.expect_json(presence("r", "carol", "join")).await;
    bob.send(json!({"type": "mode", "room": "r", "set": {"key": "sesame", "invite_only": true, "ban": ["carol"]},
        "id": "m"}))
        .await;
    bob.expect("mode").await;
    bob.expect_json(json!({"type": "ack", "id": "m"})).await;
    carol.expect("mode").await;
    carol.send(json!({"type": "join", "room": "r", "since": 0, "id": "again"})).await;
    let joined = carol.expect("joined").await;
    assert_eq!(joined["id"], "again", "{joined}");
    bob.sync().await;

    server.stop().await;
}

/// Two moderators changing different settings at the same moment both
/// get their change: neither overwrites the other's with what it read.
#[tokio::test]
async fn simultaneous_mode_changes_both_stay() {
    let server = common::start(irc_config()).await;
    let mut bob = Irc::register(&server, "bob", "").await;
    bob.send("JOIN #c").await;
    bob.until(" 366 bob #c ").await;
    let mut carol = Irc::register(&server, "carol", "").await;
    carol.send("JOIN #c").await;
    carol.until(" 366 carol #c ").await;
    bob.expect(":carol!carol@chat JOIN #c").await;
    bob.send("MODE #c +o carol").await;
    bob.expect(":bob!bob@chat MODE #c +o carol").await;
    carol.expect(":bob!bob@chat MODE #c +o carol").await;
    let letters = |line: &str| {
        let modes = line.split(" #c ").nth(1).unwrap_or_default();
        let mut l: Vec<char> = modes.split(' ').next().unwrap_or_default().chars().filter(|c| *c != '+').collect();
        l.sort();
        l.into_iter().collect::<String>()
    };
    for round in 0..20 {
        let (on, want) = if round % 2 == 0 { ('+', "kmn") } else { ('-', "n") };
        let key = if on == '+' { " sesame" } else { " *" };
        bob.send(&format!("MODE #c {on}m")).await;
        carol.send(&format!("MODE #c {on}k{key}")).await;
        // Each sees both lines, in either order.
        for c in [&mut bob, &mut carol] {
            let (mut m, mut k) = (false, false);
            while !(m && k) {
                let line = c.next().await.unwrap();
                m |= line.contains(&format!(":bob!bob@chat MODE #c {on}m"));
                k |= line.contains(&format!(":carol!carol@chat MODE #c {on}k"));
            }
        }
        bob.send("MODE #c").await;
        let line = bob.expect(" 324 bob #c ").await;
        assert_eq!(letters(&line), want, "round {round}: {line}");
    }
    bob.sync().await;
    carol.sync().await;
    server.stop().await;
}

/// A key or a ban mask that IRC could not carry (starting with `:`, a
/// comma in a key) is refused over the WebSocket, and nothing changes:
/// IRC members still read every MODE line whole.
#[tokio::test]
async fn keys_and_masks_stay_valid_irc() {
    let server = common::start(irc_config()).await;
    let (mut wes, _) = Client::hello(&server, "wes").await;
    wes.join("q").await;
    let mut ian = Irc::register(&server, "ian", "").await;
    ian.send("JOIN #q").await;
    ian.until(" 366 ian #q ").await;
    wes.expect_json(presence("q", "ian", "join")).await;
    for set in [json!({"key": ":x", "limit": 3}), json!({"key": "a,b"}), json!({"ban": [":x"]})] {
        wes.send(json!({"type": "mode", "room": "q", "set": set, "id": "bad"})).await;
        let e = wes.expect_error("invalid").await;
        assert_eq!(e["id"], "bad", "{set}: {e}");
    }
    wes.send(json!({"type": "mode", "room": "q", "set": {"key": "x:y", "limit": 3}, "id": "ok"})).await;
    ian.expect(":wes!wes@chat MODE #q +kl x:y 3").await;
    ian.send("MODE #q").await;
    assert!(ian.expect(" 324 ian #q ").await.ends_with(" #q +kln x:y 3"));
    wes.expect("mode").await;
    wes.expect_json(json!({"type": "ack", "id": "ok"})).await;
    server.stop().await;
}
