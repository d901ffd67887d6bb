//! Access: private rooms (joining, history, listing, the HTTP history),
//! moderators (kick, deleting and editing others' messages, topics) and
//! the authorization hook (allow, deny, cache, slow, malformed, absent,
//! fail open). Every refusal is checked to have reached nobody else.
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat::RunningServer;
use common::*;
use serde_json::{Value, json};

/// `POST path` with the API key; the (2xx) response body.
async fn api_post(server: &RunningServer, path: &str, body: Value) -> Value {
    let key = bearer(API_KEY);
    let r = http::post(server.addr(), path, &[("Authorization", &key)], &body).await;
    assert!(r.status == 200 || r.status == 201, "POST {path} {body}: {} {}", r.status, r.body);
    r.json()
}

/// A site user: its token and a connected client.
async fn site_user(server: &RunningServer, sub: &str, nick: &str, admin: bool) -> (String, Client) {
    let mut c = claims(sub, nick);
    c.admin = admin;
    let token = site_token(&c);
    let (client, _) = Client::with_token(server, &token).await;
    (token, client)
}

/// A request that must fail with `code`, the id echoed.
async fn refused(c: &mut Client, mut frame: Value, code: &str) -> Value {
    frame["id"] = json!("x");
    c.send(frame.clone()).await;
    let e = c.expect_error(code).await;
    assert_eq!(e["id"], "x", "{frame} → {e}");
    e
}

fn left(room: &str, reason: &str, by: Option<&str>) -> Value {
    let mut v = json!({"type": "left", "room": room, "reason": reason});
    if let Some(by) = by {
        v["by"] = json!(by);
    }
    v
}

#[tokio::test]
async fn a_private_room_admits_its_members_only() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let key = bearer(API_KEY);
    let created = http::post(
        addr,
        "/api/rooms",
        &[("Authorization", &key)],
        &json!({"name": "secret", "topic": "hush", "private": true, "members": ["bob"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json(), json!({"name": "secret", "topic": "hush", "private": true}));

    let (bob_token, mut bob) = site_user(&server, "b", "bob", false).await;
    let joined = bob.join("secret").await;
    assert_eq!(joined["topic"], "hush");
    bob.say("secret", "classified").await;

    // Neither a site user nor a guest who is not a member gets in, or reads it.
    let (eve_token, mut eve) = site_user(&server, "e", "eve", false).await;
    let (mut guest, _) = Client::hello(&server, "gus").await;
    for c in [&mut eve, &mut guest] {
        refused(c, json!({"type": "join", "room": "secret"}), "forbidden").await;
        refused(c, json!({"type": "history", "room": "secret"}), "forbidden").await;
        refused(c, json!({"type": "say", "room": "secret", "text": "let me in"}), "not_in_room").await;
        c.send(json!({"type": "rooms", "id": "list"})).await;
        let rooms = c.expect("rooms").await;
        assert_eq!(rooms["rooms"], json!([]), "a private room is not listed to outsiders: {rooms}");
    }
    bob.sync().await;

    // A member reads its history (after joining).
    bob.send(json!({"type": "history", "room": "secret", "id": "h"})).await;
    assert_eq!(bob.expect("history").await["messages"][0]["text"], "classified");

    // Over HTTP: 403 for an outsider, 200 for a member and for an API key.
    let eve_auth = bearer(&eve_token);
    let bob_auth = bearer(&bob_token);
    let path = "/api/rooms/secret/messages";
    let r = http::get(addr, path, &[("Authorization", &eve_auth)]).await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{}", r.body);
    for auth in [&bob_auth, &key] {
        let r = http::get(addr, path, &[("Authorization", auth)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["messages"][0]["text"], "classified");
    }
    assert_eq!(http::get(addr, "/api/rooms/secret", &[("Authorization", &eve_auth)]).await.status, 403);
    assert_eq!(http::get(addr, "/api/rooms/secret", &[("Authorization", &bob_auth)]).await.status, 200);
    // The room list hides it from users, not from API keys.
    let listed = |r: http::Response| r.json()["rooms"].as_array().unwrap().iter().any(|r| r["name"] == "secret");
    assert!(!listed(http::get(addr, "/api/rooms", &[("Authorization", &eve_auth)]).await));
    assert!(listed(http::get(addr, "/api/rooms", &[("Authorization", &key)]).await));

    // A site admin may enter any room.
    let (_, mut root) = site_user(&server, "r", "root", true).await;
    root.join("secret").await;
    bob.expect_json(presence("secret", "root", "join")).await;
    bob.sync().await;
    eve.sync().await;
    guest.sync().await;
}

#[tokio::test]
async fn a_guest_cannot_borrow_a_members_nick() {
    let server = start(auth_config()).await;
    api_post(&server, "/api/rooms", json!({"name": "secret", "private": true, "members": ["bob"]})).await;
    api_post(&server, "/api/rooms", json!({"name": "hall"})).await;
    api_post(&server, "/api/rooms/hall/members", json!({"nick": "mod", "role": "moderator"})).await;
    // bob and mod are the site's users, offline now. A guest may use their
    // nicks, but gets neither bob's membership nor mod's role.
    let (mut bob, welcome) = Client::hello(&server, "bob").await;
    assert_eq!(welcome["user"]["guest"], true);
    refused(&mut bob, json!({"type": "join", "room": "secret"}), "forbidden").await;
    let (mut moderator, _) = Client::hello(&server, "mod").await;
    moderator.join("hall").await;
    bob.join("hall").await;
    moderator.expect_json(presence("hall", "bob", "join")).await;
    refused(&mut moderator, json!({"type": "topic", "room": "hall", "topic": "mine"}), "forbidden").await;
    refused(&mut moderator, json!({"type": "kick", "room": "hall", "nick": "bob"}), "forbidden").await;
    // Promoting the nick while the guest holds it changes nothing either.
    api_post(&server, "/api/rooms/hall/members", json!({"nick": "mod", "role": "moderator"})).await;
    refused(&mut moderator, json!({"type": "kick", "room": "hall", "nick": "bob"}), "forbidden").await;
    bob.sync().await;
}

#[tokio::test]
async fn a_user_who_creates_a_room_moderates_it() {
    let server = start(auth_config()).await;
    let (owner_token, mut owner) = site_user(&server, "o", "owner", false).await;
    let auth = bearer(&owner_token);
    let r = http::post(
        server.addr(),
        "/api/rooms",
        &[("Authorization", &auth)],
        &json!({"name": "club", "private": true, "members": ["bob"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, mut bob) = site_user(&server, "b", "bob", false).await;
    let (_, mut eve) = site_user(&server, "e", "eve", false).await;
    owner.join("club").await;
    bob.join("club").await;
    owner.expect_json(presence("club", "bob", "join")).await;
    refused(&mut eve, json!({"type": "join", "room": "club"}), "forbidden").await;

    // A member may not set the topic of a private room; its moderator may.
    refused(&mut bob, json!({"type": "topic", "room": "club", "topic": "mine now"}), "forbidden").await;
    owner.sync().await;
    owner.send(json!({"type": "topic", "room": "club", "topic": "members only", "id": "t"})).await;
    let topic = json!({"type": "topic", "room": "club", "topic": "members only", "by": "owner"});
    owner.expect_json(topic.clone()).await;
    owner.expect_json(json!({"type": "ack", "id": "t"})).await;
    bob.expect_json(topic).await;
    bob.sync().await;
    eve.sync().await;
}

#[tokio::test]
async fn a_kick_removes_every_session_and_the_membership() {
    let server = start(auth_config()).await;
    let token = http::post(server.addr(), "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"}))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    api_post(&server, "/api/rooms", json!({"name": "den", "private": true, "members": ["alice", "bob"]})).await;
    let role = api_post(&server, "/api/rooms/den/members", json!({"nick": "mod", "role": "moderator"})).await;
    assert_eq!(role, json!({"room": "den", "nick": "mod", "role": "moderator"}));

    let (_, mut moderator) = site_user(&server, "m", "mod", false).await;
    let (mut alice1, _) = Client::with_token(&server, &token).await;
    let (mut alice2, _) = Client::with_token(&server, &token).await;
    let (_, mut bob) = site_user(&server, "b", "bob", false).await;
    moderator.join("den").await;
    alice1.join("den").await;
    moderator.expect_json(presence("den", "alice", "join")).await;
    alice2.join("den").await;
    bob.join("den").await;
    for c in [&mut moderator, &mut alice1, &mut alice2] {
        c.expect_json(presence("den", "bob", "join")).await;
    }

    // Only moderators kick.
    refused(&mut bob, json!({"type": "kick", "room": "den", "nick": "alice"}), "forbidden").await;
    for c in [&mut moderator, &mut alice1, &mut alice2] {
        c.sync().await;
    }

    // With a comment: everyone sees who kicked, and why.
    moderator.send(json!({"type": "kick", "room": "den", "nick": "ALICE", "comment": " spam ", "id": "k"})).await;
    let kicked =
        json!({"type": "presence", "room": "den", "nick": "alice", "event": "leave", "by": "mod", "reason": "spam"});
    moderator.expect_json(kicked.clone()).await;
    moderator.expect_json(json!({"type": "ack", "id": "k"})).await;
    bob.expect_json(kicked).await;
    for alice in [&mut alice1, &mut alice2] {
        alice
            .expect_json(json!({"type": "left", "room": "den", "reason": "kicked", "by": "mod", "comment": "spam"}))
            .await;
    }
    // Out of the room, and off the member list: no way back.
    refused(&mut alice1, json!({"type": "say", "room": "den", "text": "hey"}), "not_in_room").await;
    refused(&mut alice2, json!({"type": "join", "room": "den"}), "forbidden").await;
    refused(&mut alice1, json!({"type": "history", "room": "den"}), "forbidden").await;
    // Kicking again: nobody to kick.
    refused(&mut moderator, json!({"type": "kick", "room": "den", "nick": "alice"}), "not_in_room").await;
    // A moderator must be in the room to kick from it.
    refused(&mut bob, json!({"type": "kick", "room": "elsewhere", "nick": "alice"}), "not_in_room").await;
    moderator.sync().await;
    bob.sync().await;
    alice1.sync().await;
}

#[tokio::test]
async fn a_site_admin_kicks_from_a_public_room_and_the_user_may_return() {
    let server = start(auth_config()).await;
    let (_, mut root) = site_user(&server, "r", "root", true).await;
    root.join("pub").await;
    let mut clients = Vec::new();
    for nick in ["troll", "witness"] {
        let c = Client::in_rooms(&server, nick, &["pub"]).await;
        root.expect_json(presence("pub", nick, "join")).await;
        for earlier in clients.iter_mut() {
            let earlier: &mut Client = earlier;
            earlier.expect_json(presence("pub", nick, "join")).await;
        }
        clients.push(c);
    }
    let [mut troll, mut witness] = <[Client; 2]>::try_from(clients).ok().unwrap();

    root.send(json!({"type": "kick", "room": "pub", "nick": "troll", "id": 1})).await;
    let kicked = json!({"type": "presence", "room": "pub", "nick": "troll", "event": "leave", "by": "root"});
    root.expect_json(kicked.clone()).await;
    root.expect_json(json!({"type": "ack", "id": 1})).await;
    witness.expect_json(kicked).await;
    troll.expect_json(left("pub", "kicked", Some("root"))).await;
    troll.sync().await;

    // A public room: the kicked user may come back.
    troll.join("pub").await;
    root.expect_json(presence("pub", "troll", "join")).await;
    witness.expect_json(presence("pub", "troll", "join")).await;
    // A guest kicks nobody.
    refused(&mut witness, json!({"type": "kick", "room": "pub", "nick": "troll"}), "forbidden").await;
    troll.sync().await;
    root.sync().await;
}

/// Whoever makes a room by joining it (nobody in it, not made through the
/// API) moderates it from then on: kicks, and deletes what is said after,
/// not the history the room had before.
#[tokio::test]
async fn a_room_made_by_joining_is_moderated_by_its_maker() {
    let server = start(auth_config()).await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    carol.join("games").await;
    let old = carol.say("games", "old").await["message"]["msg_id"].as_str().unwrap().to_string();
    carol.send(json!({"type": "leave", "room": "games", "reason": "brb"})).await;
    carol.expect("left").await;
    // Empty again: dave makes it anew, and moderates it.
    let (mut dave, _) = Client::hello(&server, "dave").await;
    dave.join("games").await;
    carol.join("games").await;
    dave.expect_json(presence("games", "carol", "join")).await;
    let new = carol.say("games", "new").await["message"]["msg_id"].as_str().unwrap().to_string();
    dave.expect("message").await;
    refused(&mut dave, json!({"type": "delete", "msg_id": old}), "forbidden").await;
    refused(&mut carol, json!({"type": "kick", "room": "games", "nick": "dave"}), "forbidden").await;
    dave.send(json!({"type": "delete", "msg_id": new, "id": "d"})).await;
    dave.expect_json(json!({"type": "ack", "id": "d"})).await;
    assert_eq!(carol.recv().await, json!({"type": "deleted", "msg_id": new, "room": "games"}));
    // A leave's reason: trimmed, no control characters, cut at limits.max_topic.
    let long = format!("  bye\u{7}{}  ", "x".repeat(600));
    carol.send(json!({"type": "leave", "room": "games", "reason": long})).await;
    carol.expect("left").await;
    let reason: String = format!("bye{}", "x".repeat(600)).chars().take(512).collect();
    dave.expect_json(json!({"type": "presence", "room": "games", "nick": "carol", "event": "leave", "reason": reason}))
        .await;
    carol.join("games").await;
    dave.expect_json(presence("games", "carol", "join")).await;
    dave.send(json!({"type": "kick", "room": "games", "nick": "carol", "id": "k"})).await;
    dave.expect_json(json!({"type": "presence", "room": "games", "nick": "carol", "event": "leave", "by": "dave"}))
        .await;
    dave.expect_json(json!({"type": "ack", "id": "k"})).await;
    carol.expect_json(left("games", "kicked", Some("dave"))).await;
    carol.sync().await;
    dave.sync().await;
}

#[tokio::test]
async fn moderators_delete_any_message_but_edit_only_their_own() {
    let server = start(auth_config()).await;
    api_post(&server, "/api/rooms", json!({"name": "hall"})).await;
    let (_, mut moderator) = site_user(&server, "m", "mod", false).await;
    moderator.join("hall").await;
    let mut guests = quiet_room(&server, "hall", &["bob", "carol"]).await;
    moderator.expect_joins("hall", 2).await;
    let mut carol = guests.pop().unwrap();
    let mut bob = guests.pop().unwrap();

    let spam = bob.say("hall", "spam").await["message"]["msg_id"].as_str().unwrap().to_string();
    for c in [&mut carol, &mut moderator] {
        c.expect("message").await;
    }

    // Not a moderator yet: neither mod nor carol may delete bob's message.
    refused(&mut moderator, json!({"type": "delete", "msg_id": spam}), "forbidden").await;
    refused(&mut carol, json!({"type": "delete", "msg_id": spam}), "forbidden").await;
    // Made moderator while in the room (the role applies at once).
    api_post(&server, "/api/rooms/hall/members", json!({"nick": "mod", "role": "moderator"})).await;
    // Editing someone else's message stays forbidden, even for a moderator.
    refused(&mut moderator, json!({"type": "edit", "msg_id": spam, "text": "nicer"}), "forbidden").await;
    bob.sync().await;
    carol.sync().await;

    moderator.send(json!({"type": "delete", "msg_id": spam, "id": "d"})).await;
    moderator.expect_json(json!({"type": "ack", "id": "d"})).await;
    let deleted = json!({"type": "deleted", "msg_id": spam, "room": "hall"});
    assert_eq!(bob.recv().await, deleted);
    assert_eq!(carol.recv().await, deleted);
    bob.send(json!({"type": "history", "room": "hall", "id": "h"})).await;
    let history = bob.expect("history").await;
    assert_eq!((&history["messages"][0]["deleted"], &history["messages"][0]["text"]), (&json!(true), &json!("")));

    // The role is per room: in another room mod is nobody special.
    let mut other = quiet_room(&server, "other", &["dave"]).await.pop().unwrap();
    moderator.join("other").await;
    other.expect_json(presence("other", "mod", "join")).await;
    let note = other.say("other", "mine").await["message"]["msg_id"].as_str().unwrap().to_string();
    moderator.expect("message").await;
    refused(&mut moderator, json!({"type": "delete", "msg_id": note}), "forbidden").await;
    refused(&mut moderator, json!({"type": "kick", "room": "other", "nick": "dave"}), "forbidden").await;
    other.sync().await;
    bob.sync().await;
    carol.sync().await;
}

#[tokio::test]
async fn only_moderators_set_the_topic_of_a_managed_room() {
    let server = start(auth_config()).await;
    api_post(&server, "/api/rooms", json!({"name": "hall", "topic": "welcome"})).await;
    api_post(&server, "/api/rooms/hall/members", json!({"nick": "mod", "role": "moderator"})).await;
    let (_, mut moderator) = site_user(&server, "m", "mod", false).await;
    moderator.join("hall").await;
    let mut carol = Client::in_rooms(&server, "carol", &["hall"]).await;
    moderator.expect_json(presence("hall", "carol", "join")).await;

    refused(&mut carol, json!({"type": "topic", "room": "hall", "topic": "carol was here"}), "forbidden").await;
    moderator.sync().await;
    moderator.send(json!({"type": "topic", "room": "hall", "topic": "be nice", "id": "t"})).await;
    let topic = json!({"type": "topic", "room": "hall", "topic": "be nice", "by": "mod"});
    moderator.expect_json(topic.clone()).await;
    moderator.expect_json(json!({"type": "ack", "id": "t"})).await;
    carol.expect_json(topic).await;

    // In a room created by joining, anyone may.
    carol.join("free").await;
    moderator.join("free").await;
    carol.expect_json(presence("free", "mod", "join")).await;
    carol.send(json!({"type": "topic", "room": "free", "topic": "anything goes", "id": "c"})).await;
    let topic = json!({"type": "topic", "room": "free", "topic": "anything goes", "by": "carol"});
    carol.expect_json(topic.clone()).await;
    carol.expect_json(json!({"type": "ack", "id": "c"})).await;
    moderator.expect_json(topic).await;
    carol.sync().await;
    moderator.sync().await;
}

// ---- the authorization hook ---------------------------------------------------------

/// A hook for tests: records each request body and answers by room:
/// `open` allows (except `mallory`), `readonly` allows `join` and denies
/// `say`, `slow` answers after 3 s, `garbled` answers with text,
/// `broken` with a 500, `typo` with `{"allowed":true}`; anything else is denied.
struct HookServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl HookServer {
    async fn start() -> HookServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route("/hook", axum::routing::post(decide)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HookServer { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn decide(State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(req): Json<Value>) -> Response {
    seen.lock().unwrap().push(req.clone());
    let allow = |a: bool| Json(json!({"allow": a})).into_response();
    let room = req["room"].as_str().unwrap_or_default().to_ascii_lowercase();
    match (room.as_str(), req["action"].as_str().unwrap_or_default()) {
        ("open", _) => allow(req["user"]["nick"] != "mallory"),
        ("readonly", action) => allow(action == "join"),
        ("slow", _) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            allow(true)
        }
        ("garbled", _) => "yes, sure".into_response(),
        ("broken", _) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"allow": true}))).into_response(),
        ("typo", _) => Json(json!({"allowed": true})).into_response(),
        _ => allow(false),
    }
}

fn hook_config(url: &str) -> chat::Config {
    let mut config = auth_config();
    config.auth.hook_url = url.into();
    config.auth.hook_timeout = Duration::from_millis(300);
    config
}

fn guest_req(nick: &str, room: &str, action: &str) -> Value {
    json!({"user": {"nick": nick, "guest": true}, "room": room, "action": action})
}

#[tokio::test]
async fn the_hook_decides_joins_and_says_and_its_answers_are_cached() {
    let hook = HookServer::start().await;
    let server = start(hook_config(&hook.url())).await;
    let mut alice = Client::in_rooms(&server, "alice", &["open"]).await;
    let (_, mut carol) = site_user(&server, "7", "carol", false).await;
    carol.join("open").await;
    alice.expect_json(presence("open", "carol", "join")).await;
    assert_eq!(
        hook.take(),
        [
            guest_req("alice", "open", "join"),
            json!({"user": {"nick": "carol", "sub": "7", "guest": false}, "room": "open", "action": "join"}),
        ]
    );

    // Denied: mallory may not join `open`; nobody may join `closed`.
    let mut mallory = Client::hello(&server, "mallory").await.0;
    refused(&mut mallory, json!({"type": "join", "room": "open"}), "forbidden").await;
    refused(&mut alice, json!({"type": "join", "room": "closed"}), "forbidden").await;
    assert_eq!(hook.take(), [guest_req("mallory", "open", "join"), guest_req("alice", "closed", "join")]);
    carol.sync().await;

    // Saying asks too, once: the answer is cached (and so is the join's).
    alice.say("open", "one").await;
    alice.say("open", "two").await;
    for text in ["one", "two"] {
        assert_eq!(carol.expect("message").await["text"], text);
    }
    alice.send(json!({"type": "leave", "room": "open"})).await;
    alice.expect("left").await;
    carol.expect_json(presence("open", "alice", "leave")).await;
    alice.join("open").await;
    carol.expect_json(presence("open", "alice", "join")).await;
    assert_eq!(hook.take(), [guest_req("alice", "open", "say")]);

    // `readonly`: joining is allowed, saying is not, and nothing is delivered.
    alice.join("readonly").await;
    carol.join("readonly").await;
    alice.expect_json(presence("readonly", "carol", "join")).await;
    for _ in 0..2 {
        refused(&mut alice, json!({"type": "say", "room": "readonly", "text": "psst"}), "forbidden").await;
    }
    carol.sync().await;
    carol.send(json!({"type": "history", "room": "readonly", "id": "h"})).await;
    assert_eq!(carol.expect("history").await["messages"], json!([]));
    let seen = hook.take();
    assert_eq!(seen[2], guest_req("alice", "readonly", "say"));
    assert_eq!(seen.len(), 3, "the refusal is cached too: {seen:?}");
    alice.sync().await;
    mallory.sync().await;
}

#[tokio::test]
async fn a_slow_malformed_or_failing_hook_denies() {
    let hook = HookServer::start().await;
    let server = start(hook_config(&hook.url())).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    for room in ["slow", "garbled", "broken", "typo"] {
        let started = std::time::Instant::now();
        refused(&mut alice, json!({"type": "join", "room": room}), "forbidden").await;
        assert!(started.elapsed() < Duration::from_secs(2), "{room}: the hook timeout is 300 ms");
    }
    assert_eq!(hook.take().len(), 4);
    alice.sync().await;
}

#[tokio::test]
async fn an_unreachable_hook_denies_unless_told_to_fail_open() {
    // A port with nothing listening.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let server = start(hook_config(&dead)).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    refused(&mut alice, json!({"type": "join", "room": "r"}), "forbidden").await;
    alice.sync().await;

    let mut config = hook_config(&dead);
    config.auth.hook_fail_open = true;
    let server = start(config).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].say("r", "still here").await;
    assert_eq!(clients[1].expect("message").await["text"], "still here");
}
