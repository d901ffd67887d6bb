//! Identities that cannot be borrowed and rooms that cannot be taken: each
//! test is one finding of the trust review (issue 11), as a user or an
//! attacker would meet it. Storage-backed ones run on every backend.
mod common;

use common::backends::{self, Backend};
use common::http;
use common::*;
use serde_json::{Value, json};

fn config_for(b: &Backend) -> chat::Config {
    let mut c = auth_config();
    c.database.url = b.url.clone();
    c
}

async fn api(server: &chat::RunningServer, method: &str, path: &str, body: Option<Value>) -> http::Response {
    let key = bearer(API_KEY);
    let body = body.map(|b| b.to_string());
    http::request(server.addr(), method, path, &[("Authorization", &key)], body.as_deref()).await
}

async fn register(server: &chat::RunningServer, nick: &str) -> http::Response {
    http::post(server.addr(), "/api/register", &[], &json!({"nick": nick, "password": "correct horse"})).await
}

/// Sends `frame` with an id and expects the error `code` echoing it.
async fn refused(c: &mut Client, mut frame: Value, code: &str) -> Value {
    frame["id"] = json!("x");
    c.send(frame.clone()).await;
    let e = c.expect_error(code).await;
    assert_eq!(e["id"], "x", "{frame} → {e}");
    e
}

/// Finding 1: after guest alice leaves, a new guest (or a new account) named
/// alice neither reads her DMs nor edits or deletes her messages.
#[tokio::test]
async fn a_later_holder_of_a_guest_nick_inherits_nothing() {
    for b in backends::all("a_later_holder_of_a_guest_nick_inherits_nothing").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let (mut alice, _) = Client::hello(&server, "alice").await;
        alice.join("r").await;
        let (mut bob, _) = Client::hello(&server, "bob").await;
        bob.join("r").await;
        alice.expect("presence").await;
        let in_room = alice.say("r", "mine").await["message"]["msg_id"].as_str().unwrap().to_string();
        bob.expect("message").await;
        let dm = alice.say_to("bob", "secret for bob").await["message"]["msg_id"].as_str().unwrap().to_string();
        bob.expect("message").await;
        let bobs = bob.say_to("alice", "secret for alice").await["message"]["msg_id"].as_str().unwrap().to_string();
        alice.expect("message").await;
        alice.close().await;
        bob.expect_json(presence("r", "alice", "quit")).await;

        for new_alice in ["guest", "account"] {
            let (mut mallory, _) = if new_alice == "guest" {
                Client::hello(&server, "alice").await
            } else {
                let r = register(&server, "alice").await;
                assert_eq!(r.status, 201, "{kind:?}: {}", r.body);
                Client::with_token(&server, r.json()["token"].as_str().unwrap()).await
            };
            mallory.send(json!({"type": "history", "with": "bob", "id": "h"})).await;
            mallory
                .expect_json(json!({"type": "history", "id": "h", "with": "bob", "messages": [], "more": false}))
                .await;
            // The room message is someone else's; the DM is not even visible.
            refused(&mut mallory, json!({"type": "edit", "msg_id": in_room, "text": "pwned"}), "forbidden").await;
            refused(&mut mallory, json!({"type": "delete", "msg_id": in_room}), "forbidden").await;
            refused(&mut mallory, json!({"type": "edit", "msg_id": dm, "text": "pwned"}), "no_such_message").await;
            refused(&mut mallory, json!({"type": "delete", "msg_id": dm}), "no_such_message").await;
            // bob edits what he wrote to the alice who was here: the new
            // holder of the nick hears nothing of it.
            bob.send(json!({"type": "edit", "msg_id": bobs, "text": "still secret", "id": "e"})).await;
            bob.expect_json(json!({"type": "ack", "id": "e"})).await;
            mallory.sync().await;
            mallory.close().await;
        }
        // bob still sees the conversation with the alice who was here, intact.
        bob.send(json!({"type": "history", "room": "r", "id": "r"})).await;
        let h = bob.expect("history").await;
        assert_eq!(h["messages"][0]["text"], "mine", "{kind:?}");
        bob.sync().await;
        server.stop().await;
    }
}

/// Finding 1, the other side: the same guest comes back as itself with its
/// `welcome.token` (a reload, a second tab) and keeps what is its own.
#[tokio::test]
async fn a_guest_comes_back_as_itself_with_its_token() {
    let server = start(auth_config()).await;
    let (mut alice, welcome) = Client::hello(&server, "alice").await;
    let token = welcome["token"].as_str().expect("welcome.token").to_string();
    assert_eq!(token.len(), 64, "{welcome}");
    alice.join("lobby").await;
    let msg_id = alice.say("lobby", "typo").await["message"]["msg_id"].as_str().unwrap().to_string();

    // A second tab: the same user, no `nick_taken`.
    let (mut tab2, w2) = Client::with_token(&server, &token).await;
    assert_eq!((w2["nick"].as_str(), w2["user"]["guest"].as_bool()), (Some("alice"), Some(true)));
    tab2.join("lobby").await;
    tab2.send(json!({"type": "edit", "msg_id": msg_id, "text": "fixed", "id": "e"})).await;
    tab2.expect_json(json!({"type": "ack", "id": "e"})).await;
    alice.until("edited").await;
    // Someone else cannot take the nick meanwhile.
    let mut other = Client::connect(&server).await;
    other.send(json!({"type": "hello", "nick": "ALICE", "id": "h"})).await;
    other.expect_error("nick_taken").await;

    // A reload: both tabs gone, back within the grace period, as itself.
    alice.close().await;
    tab2.close().await;
    let (mut again, _) = Client::with_token(&server, &token).await;
    again.send(json!({"type": "delete", "msg_id": msg_id, "id": "d"})).await;
    again.expect_json(json!({"type": "ack", "id": "d"})).await;
    again.sync().await;

    // The token is a bearer for HTTP calls too; a guest makes no rooms there
    // (its identity, and so the room's moderator, ends with its sessions).
    let auth = bearer(&token);
    let r = http::get(server.addr(), "/api/rooms", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http::post(server.addr(), "/api/rooms", &[("Authorization", &auth)], &json!({"name": "mine"})).await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{}", r.body);
}

/// A guest's token stops working once its last session has been gone for
/// the grace period.
#[tokio::test]
async fn a_guest_token_ends_after_the_grace_period() {
    let mut config = auth_config();
    config.auth.guest_grace = std::time::Duration::from_millis(300);
    let server = start(config).await;
    let (mut alice, welcome) = Client::hello(&server, "alice").await;
    let token = welcome["token"].as_str().unwrap().to_string();
    alice.close().await;
    // Wait for the server to notice the session ended (a watcher hears it).
    let (mut w, _) = Client::hello(&server, "watcher").await;
    w.send(json!({"type": "watch", "nicks": ["alice"]})).await;
    assert_eq!(w.expect("status").await["online"], false);
    // Expiry is a deadline, not an event: wait past it (any use of the token
    // before then would be a reconnect, which keeps it alive).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut c = Client::connect(&server).await;
    c.send(json!({"type": "hello", "token": token, "id": "h"})).await;
    c.expect_error("unauthorized").await;
    // The nick itself is free for anyone.
    c.send(json!({"type": "hello", "nick": "alice", "id": "h2"})).await;
    c.expect("welcome").await;
}

/// Finding 2: the site adds `dave` (never here) to a private room; a stranger
/// can neither register `dave` nor, as a guest named dave, enter; the real
/// dave arrives with a site token and is in.
#[tokio::test]
async fn a_grant_to_an_unowned_nick_waits_for_the_site_user() {
    for b in backends::all("a_grant_to_an_unowned_nick_waits_for_the_site_user").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let r = api(&server, "POST", "/api/rooms", Some(json!({"name": "board", "private": true}))).await;
        assert_eq!(r.status, 201, "{kind:?}: {}", r.body);
        let r = api(&server, "POST", "/api/rooms/board/members", Some(json!({"nick": "dave"}))).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);

        let r = register(&server, "dave").await;
        assert_eq!((r.status, r.json()["error"]["code"].clone()), (409, json!("nick_taken")), "{kind:?}: {}", r.body);
        let (mut guest, _) = Client::hello(&server, "dave").await;
        refused(&mut guest, json!({"type": "join", "room": "board"}), "forbidden").await;
        guest.close().await;

        let (mut dave, welcome) = Client::with_token(&server, &site_token(&claims("site-dave", "dave"))).await;
        assert_eq!(welcome["nick"], "dave", "{kind:?}");
        dave.join("board").await;
        // The nick and the grant are his now: no guest takes either.
        dave.close().await;
        let mut guest = Client::connect(&server).await;
        guest.send(json!({"type": "hello", "nick": "dave", "id": "h"})).await;
        guest.expect_error("nick_taken").await;
        server.stop().await;
    }
}

/// Finding 2 by `sub`: the surest way to name a site user.
#[tokio::test]
async fn the_api_grants_by_sub() {
    let server = start(auth_config()).await;
    api(&server, "POST", "/api/rooms", Some(json!({"name": "vip", "private": true}))).await;
    let r = api(&server, "POST", "/api/rooms/vip/members", Some(json!({"sub": 77}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sub"], "77");
    let (mut erin, _) = Client::with_token(&server, &site_token(&claims("77", "erin"))).await;
    erin.join("vip").await;
    let (mut other, _) = Client::with_token(&server, &site_token(&claims("78", "frank"))).await;
    refused(&mut other, json!({"type": "join", "room": "vip"}), "forbidden").await;
    let r = api(&server, "POST", "/api/rooms/vip/members", Some(json!({"sub": 77, "nick": "erin"}))).await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (400, json!("invalid")), "{}", r.body);
    other.sync().await;
}

/// Finding 3: an account cannot create a private room over a public room
/// that has a history (even the auto-join lobby), nor destroy it.
#[tokio::test]
async fn a_room_with_a_history_cannot_be_taken_over() {
    for b in backends::all("a_room_with_a_history_cannot_be_taken_over").await {
        let kind = b.kind;
        let mut config = config_for(&b);
        config.rooms.auto_join = vec!["lobby".into()];
        let server = start(config).await;
        let (mut regular, _) = Client::hello(&server, "regular").await;
        assert_eq!(regular.expect("joined").await["room"], "lobby");
        regular.join("cafe").await;
        regular.say("cafe", "the regulars' room").await;
        regular.close().await;

        let r = register(&server, "mallory").await;
        let token = r.json()["token"].as_str().unwrap().to_string();
        let auth = bearer(&token);
        for room in ["cafe", "lobby"] {
            let body = json!({"name": room, "private": true});
            let r = http::post(server.addr(), "/api/rooms", &[("Authorization", &auth)], &body).await;
            assert_eq!((r.status, r.json()["error"]["code"].clone()), (409, json!("room_exists")), "{kind:?} {room}");
            let r = http::delete(server.addr(), &format!("/api/rooms/{room}"), &[("Authorization", &auth)]).await;
            assert_eq!(r.status, 403, "{kind:?} {room}: {}", r.body);
        }
        // The regulars and the next guest still get in, and see the history.
        let (mut back, _) = Client::hello(&server, "newcomer").await;
        assert_eq!(back.expect("joined").await["room"], "lobby", "{kind:?}: the auto-join room is still open");
        let joined = back.join("cafe").await;
        assert_eq!(joined["history"][0]["text"], "the regulars' room", "{kind:?}");
        back.sync().await;
        server.stop().await;
    }
}

/// Finding 4: `who` of a private room is for its members.
#[tokio::test]
async fn who_of_a_private_room_is_forbidden_to_others() {
    let server = start(auth_config()).await;
    api(&server, "POST", "/api/rooms", Some(json!({"name": "hq", "topic": "plans", "private": true}))).await;
    api(&server, "POST", "/api/rooms/hq/members", Some(json!({"nick": "ann"}))).await;
    let (mut ann, _) = Client::with_token(&server, &site_token(&claims("1", "ann"))).await;
    ann.send(json!({"type": "who", "room": "hq", "id": "w"})).await;
    let status = ann.expect("room_status").await;
    assert_eq!((status["topic"].as_str(), status["count"].as_u64()), (Some("plans"), Some(0)));
    let (mut eve, _) = Client::hello(&server, "eve").await;
    let e = refused(&mut eve, json!({"type": "who", "room": "hq"}), "forbidden").await;
    assert!(!e.to_string().contains("plans"), "{e}");
    eve.sync().await;
}

/// Finding 5: a site token whose `nbf` (or `iat`) is in the future is
/// refused; within the leeway it is accepted; only HS256 is.
#[tokio::test]
async fn site_tokens_not_valid_yet_are_refused() {
    let server = start(auth_config()).await;
    let mut c = Client::connect(&server).await;
    let mut early = claims("5", "early");
    early.nbf = Some(unix_now() + 3600);
    c.send(json!({"type": "hello", "token": site_token(&early), "id": "h"})).await;
    assert!(c.expect_error("unauthorized").await["message"].as_str().unwrap().contains("nbf"));
    let mut future = claims("5", "early");
    future.iat = Some(unix_now() + 3600);
    c.send(json!({"type": "hello", "token": site_token(&future), "id": "h"})).await;
    assert!(c.expect_error("unauthorized").await["message"].as_str().unwrap().contains("iat"));
    // HS384 with the right secret: refused all the same.
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims("5", "early"),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap();
    c.send(json!({"type": "hello", "token": hs384, "id": "h"})).await;
    c.expect_error("unauthorized").await;
    let mut skewed = claims("5", "early");
    skewed.nbf = Some(unix_now() + 5); // within the 60 s leeway
    c.send(json!({"type": "hello", "token": site_token(&skewed), "id": "h"})).await;
    assert_eq!(c.expect("welcome").await["nick"], "early");
}

/// Finding 6: nobody takes `server` (or the other reserved nicks), so an
/// announcement cannot be faked.
#[tokio::test]
async fn reserved_nicks_are_refused_everywhere() {
    let mut config = auth_config();
    config.auth.reserved_nicks = vec!["Support".into()];
    let server = start(config).await;
    let mut c = Client::connect(&server).await;
    for nick in ["server", "SERVER", "system", "admin", "everyone", "here", "channel", "support"] {
        c.send(json!({"type": "hello", "nick": nick, "id": "h"})).await;
        let e = c.expect_error("nick_taken").await;
        assert!(e["message"].as_str().unwrap().contains("reserved"), "{nick}: {e}");
        let r = register(&server, nick).await;
        assert_eq!((r.status, r.json()["error"]["code"].clone()), (409, json!("nick_taken")), "{nick}");
    }
    c.send(json!({"type": "hello", "token": site_token(&claims("9", "Server")), "id": "h"})).await;
    c.expect_error("nick_taken").await;
    c.send(json!({"type": "hello", "nick": "servers", "id": "h"})).await;
    c.expect("welcome").await;
}

/// Finding 7: `auth.registration = "closed"` closes `/api/register`.
#[tokio::test]
async fn registration_can_be_closed() {
    let mut config = auth_config();
    config.auth.guests = false;
    config.auth.registration = chat::config::Registration::Closed;
    let server = start(config).await;
    let r = register(&server, "stranger").await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{}", r.body);
    let mut c = Client::connect(&server).await;
    c.send(json!({"type": "hello", "nick": "stranger", "password": "correct horse", "id": "h"})).await;
    c.expect_error("unauthorized").await;
}

/// Finding 8 is `a_guest_comes_back_as_itself_with_its_token` above.
///
/// Finding 10 (API rooms): a room created through the API exists with no
/// members for `who` and `rooms`, keeps its topic on join, and adding a
/// member joins that user's connected sessions at once.
#[tokio::test]
async fn api_rooms_exist_empty_and_adding_a_member_joins_its_sessions() {
    let server = start(auth_config()).await;
    let r = api(&server, "POST", "/api/rooms", Some(json!({"name": "News", "topic": "today"}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (mut gus, _) = Client::with_token(&server, &site_token(&claims("g", "gus"))).await;
    let (mut gus2, _) = Client::with_token(&server, &site_token(&claims("g", "gus"))).await;
    gus.send(json!({"type": "who", "room": "news", "id": "w"})).await;
    gus.expect_json(json!({"type": "room_status", "id": "w", "room": "News", "topic": "today", "count": 0,
        "members": []}))
        .await;
    gus.send(json!({"type": "rooms", "id": "l"})).await;
    let rooms = gus.expect("rooms").await;
    assert!(rooms["rooms"].as_array().unwrap().iter().any(|r| r["name"] == "News"), "{rooms}");

    let (mut hal, _) = Client::hello(&server, "hal").await;
    let joined = hal.join("news").await;
    assert_eq!(joined["topic"], "today");

    let r = api(&server, "POST", "/api/rooms/news/members", Some(json!({"nick": "gus"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for tab in [&mut gus, &mut gus2] {
        let joined = tab.expect("joined").await;
        assert_eq!((joined["room"].as_str(), joined["topic"].as_str()), (Some("News"), Some("today")));
    }
    hal.expect_json(presence("News", "gus", "join")).await;
    hal.sync().await;
}
