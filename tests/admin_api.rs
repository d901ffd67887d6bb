//! The HTTP API's access control and its administrative routes: API keys
//! and user tokens on every protected route, creating rooms, publishing,
//! removing members, destroying rooms; and profiles (`/api/me`,
//! `/api/users/{nick}`).
mod common;

use chat::RunningServer;
use common::*;
use serde_json::{Value, json};

/// `Authorization: Bearer <token>` as a header list.
fn auth(token: &str) -> [(&'static str, String); 1] {
    [("Authorization", bearer(token))]
}

/// `[("Authorization", "Bearer …")]` borrowed, as `http::*` take it.
fn h<'a>(a: &'a [(&'static str, String); 1]) -> [(&'static str, &'a str); 1] {
    [(a[0].0, a[0].1.as_str())]
}

/// The response must be an error `{"error":{"code","message"}}` with `status` and `code`.
fn assert_error(r: &http::Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let body = r.json();
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

/// A request that must succeed with `status`; its body.
async fn ok(server: &RunningServer, method: &str, path: &str, token: &str, body: Option<Value>, status: u16) -> Value {
    let a = auth(token);
    let body_text = body.map(|b| b.to_string());
    let r = http::request(server.addr(), method, path, &h(&a), body_text.as_deref()).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.body);
    r.json()
}

async fn site_user(server: &RunningServer, sub: &str, nick: &str) -> (String, Client) {
    let token = site_token(&claims(sub, nick));
    let (c, _) = Client::with_token(server, &token).await;
    (token, c)
}

#[tokio::test]
async fn every_protected_route_needs_a_key_or_a_token() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (user, mut carol) = site_user(&server, "c", "carol").await;
    carol.join("hall").await;
    let expired = {
        let mut c = claims("c", "carol");
        c.exp = unix_now() - 3600;
        site_token(&c)
    };
    let room = json!({"name": "made"});
    let publish = json!({"text": "hello"});
    let member = json!({"nick": "carol"});
    // (method, path, body, only an API key will do)
    let routes: [(&str, &str, Option<&Value>, bool); 13] = [
        ("GET", "/api/me", None, false),
        ("PATCH", "/api/me", Some(&json!({"status": "hi"})), false),
        ("POST", "/api/me/password", Some(&json!({"old": "a", "new": "battery staple"})), false),
        ("GET", "/api/users/carol", None, false),
        ("GET", "/api/rooms", None, false),
        ("POST", "/api/rooms", Some(&room), false),
        ("GET", "/api/rooms/hall", None, false),
        ("DELETE", "/api/rooms/hall", None, false),
        ("POST", "/api/rooms/hall/members", Some(&member), true),
        ("DELETE", "/api/rooms/hall/members/carol", None, true),
        ("POST", "/api/rooms/hall/messages", Some(&publish), true),
        ("GET", "/api/rooms/hall/messages", None, false),
        ("GET", "/api/rooms/hall/transcript", None, true),
    ];
    let wrong = [
        vec![],
        vec![("Authorization", "Bearer wrong-key".to_string())],
        vec![("Authorization", format!("Bearer {API_KEY}x"))],
        vec![("Authorization", API_KEY.to_string())],
        vec![("Authorization", format!("Basic {API_KEY}"))],
        vec![("Authorization", "Bearer ".to_string())],
        vec![("Authorization", bearer(&"0".repeat(64)))],
        vec![("Authorization", bearer(&expired))],
    ];
    for (method, path, body, key_only) in routes {
        let body = body.map(|b| b.to_string());
        for headers in &wrong {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = http::request(addr, method, path, &headers, body.as_deref()).await;
            assert_error(&r, 401, "unauthorized", &format!("{method} {path} with {headers:?}"));
        }
        if key_only {
            let r = http::request(addr, method, path, &h(&auth(&user)), body.as_deref()).await;
            assert_error(&r, 403, "forbidden", &format!("{method} {path} with a user token"));
        }
    }
    // Nothing happened: no room made, nothing said, carol still in the room.
    assert_error(&http::get(addr, "/api/rooms/made", &h(&auth(API_KEY))).await, 404, "no_such_room", "made");
    let history = ok(&server, "GET", "/api/rooms/hall/messages", API_KEY, None, 200).await;
    assert_eq!(history["messages"], json!([]));
    carol.sync().await;
}

#[tokio::test]
async fn creating_rooms() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (user, mut carol) = site_user(&server, "c", "carol").await;
    let made = ok(&server, "POST", "/api/rooms", API_KEY, Some(json!({"name": "Town", "topic": " news "})), 201).await;
    assert_eq!(made, json!({"name": "Town", "topic": "news", "private": false}));
    let made = ok(&server, "POST", "/api/rooms", &user, Some(json!({"name": "vip", "private": true})), 201).await;
    assert_eq!(made, json!({"name": "vip", "topic": "", "private": true}));

    // Taken names: stored, in any case, or live (created by joining).
    let key = auth(API_KEY);
    for name in ["town", "VIP"] {
        let r = http::post(addr, "/api/rooms", &h(&key), &json!({"name": name})).await;
        assert_error(&r, 409, "room_exists", name);
    }
    carol.join("live").await;
    assert_error(&http::post(addr, "/api/rooms", &h(&key), &json!({"name": "live"})).await, 409, "room_exists", "live");
    // Bad names, bad members, a topic too long.
    for body in [
        json!({"name": "no spaces"}),
        json!({"name": "#"}),
        json!({"name": "ok", "members": ["9bad"]}),
        json!({"name": "ok", "topic": "t".repeat(513)}),
    ] {
        let r = http::post(addr, "/api/rooms", &h(&key), &body).await;
        assert_error(&r, 400, "invalid", &body.to_string());
    }

    // The list: the private room only for API keys (and not to its creator as a user).
    let names = |v: Value| -> Vec<Value> { v["rooms"].as_array().unwrap().iter().map(|r| r["name"].clone()).collect() };
    let as_key = ok(&server, "GET", "/api/rooms", API_KEY, None, 200).await;
    assert_eq!(names(as_key.clone()), [json!("Town"), json!("vip"), json!("live")], "{as_key}");
    let as_user = ok(&server, "GET", "/api/rooms", &user, None, 200).await;
    assert_eq!(names(as_user), [json!("Town"), json!("live")]);
    let status = ok(&server, "GET", "/api/rooms/TOWN", &user, None, 200).await;
    assert_eq!(status, json!({"name": "Town", "topic": "news", "private": false, "seq": 0, "count": 0, "members": []}));
    assert_error(&http::get(addr, "/api/rooms/nowhere", &h(&key)).await, 404, "no_such_room", "nowhere");
    carol.sync().await;
}

#[tokio::test]
async fn publishing_as_the_server_or_as_a_user() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let mut clients = quiet_room(&server, "news", &["alice", "bob"]).await;
    clients[0].say("news", "first").await;
    clients[1].expect("message").await;

    let r = ok(&server, "POST", "/api/rooms/news/messages", API_KEY, Some(json!({"text": " extra! "})), 201).await;
    assert_eq!(norm(r["message"].clone()), body(&room_msg("news", 2, "server", "extra!")));
    let as_bob = json!({"text": "me", "from": "bob"});
    let r = ok(&server, "POST", "/api/rooms/NEWS/messages", API_KEY, Some(as_bob), 201).await;
    assert_eq!(norm(r["message"].clone()), body(&room_msg("news", 3, "bob", "me")));
    // Every member session gets both, the named user's too.
    for c in clients.iter_mut() {
        c.expect_json(room_msg("news", 2, "server", "extra!")).await;
        c.expect_json(room_msg("news", 3, "bob", "me")).await;
        c.sync().await;
    }
    // A stored room with nobody in it takes messages too.
    ok(&server, "POST", "/api/rooms", API_KEY, Some(json!({"name": "empty"})), 201).await;
    ok(&server, "POST", "/api/rooms/empty/messages", API_KEY, Some(json!({"text": "anyone?"})), 201).await;
    let history = ok(&server, "GET", "/api/rooms/empty/messages", API_KEY, None, 200).await;
    assert_eq!(history["messages"][0]["from"], "server");

    let key = auth(API_KEY);
    let path = "/api/rooms/news/messages";
    let r = http::post(addr, "/api/rooms/nowhere/messages", &h(&key), &json!({"text": "hi"})).await;
    assert_error(&r, 404, "no_such_room", "unknown room");
    assert_error(&http::post(addr, path, &h(&key), &json!({"text": "  "})).await, 400, "invalid", "empty");
    assert_error(&http::post(addr, path, &h(&key), &json!({"text": "x", "from": "9x"})).await, 400, "invalid", "from");
    let r = http::post(addr, path, &h(&key), &json!({"text": "x".repeat(4001)})).await;
    assert_error(&r, 413, "too_large", "too long");
    let history = ok(&server, "GET", "/api/rooms/news/messages", API_KEY, None, 200).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 3);
    for c in clients.iter_mut() {
        c.sync().await;
    }
}

#[tokio::test]
async fn removing_a_member_kicks_it_out() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    ok(
        &server,
        "POST",
        "/api/rooms",
        API_KEY,
        Some(json!({"name": "vault", "private": true, "members": ["bob"]})),
        201,
    )
    .await;
    let added = ok(&server, "POST", "/api/rooms/vault/members", API_KEY, Some(json!({"nick": "alice"})), 200).await;
    assert_eq!(added, json!({"room": "vault", "nick": "alice", "role": "member"}));
    let alice_token = site_token(&claims("a", "alice"));
    let (mut alice1, _) = Client::with_token(&server, &alice_token).await;
    let (mut alice2, _) = Client::with_token(&server, &alice_token).await;
    let (_, mut bob) = site_user(&server, "b", "bob").await;
    bob.join("vault").await;
    alice1.join("vault").await;
    bob.expect_json(presence("vault", "alice", "join")).await;
    alice2.join("vault").await;

    let r = ok(&server, "DELETE", "/api/rooms/vault/members/alice", API_KEY, None, 200).await;
    assert_eq!(r, json!({"room": "vault", "nick": "alice", "sessions": 2}));
    for alice in [&mut alice1, &mut alice2] {
        alice.expect_json(json!({"type": "left", "room": "vault", "reason": "kicked", "by": "server"})).await;
    }
    bob.expect_json(json!({"type": "presence", "room": "vault", "nick": "alice", "event": "leave", "by": "server"}))
        .await;
    alice1.send(json!({"type": "join", "room": "vault", "id": 1})).await;
    alice1.expect_error("forbidden").await;
    let key = auth(API_KEY);
    assert_error(&http::delete(addr, "/api/rooms/vault/members/alice", &h(&key)).await, 404, "not_in_room", "again");
    let r = http::post(addr, "/api/rooms/nowhere/members", &h(&key), &json!({"nick": "bob"})).await;
    assert_error(&r, 404, "no_such_room", "no room");
    let r = http::post(addr, "/api/rooms/vault/members", &h(&key), &json!({"nick": "bob", "role": "king"})).await;
    assert_error(&r, 400, "invalid", "role");

    // From a public room: kicked, but free to come back.
    let mut clients = quiet_room(&server, "pub", &["gus", "hal"]).await;
    let r = ok(&server, "DELETE", "/api/rooms/pub/members/gus", API_KEY, None, 200).await;
    assert_eq!(r["sessions"], 1);
    clients[0].expect_json(json!({"type": "left", "room": "pub", "reason": "kicked", "by": "server"})).await;
    clients[1]
        .expect_json(json!({"type": "presence", "room": "pub", "nick": "gus", "event": "leave", "by": "server"}))
        .await;
    clients[0].join("pub").await;
    clients[1].expect_json(presence("pub", "gus", "join")).await;
    for c in clients.iter_mut().chain([&mut bob, &mut alice2]) {
        c.sync().await;
    }
}

#[tokio::test]
async fn destroying_a_room_tells_every_member_session() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    ok(&server, "POST", "/api/rooms", API_KEY, Some(json!({"name": "tmp"})), 201).await;
    let alice_token = site_token(&claims("a", "alice"));
    let (mut alice1, _) = Client::with_token(&server, &alice_token).await;
    let (mut alice2, _) = Client::with_token(&server, &alice_token).await;
    let (bob_token, mut bob) = site_user(&server, "b", "bob").await;
    alice1.join("tmp").await;
    alice2.join("tmp").await;
    bob.join("tmp").await;
    alice1.expect_json(presence("tmp", "bob", "join")).await;
    alice2.expect_json(presence("tmp", "bob", "join")).await;
    bob.say("tmp", "kept").await;
    alice1.expect("message").await;
    alice2.expect("message").await;

    // A user who does not moderate the room may not.
    let r = http::delete(addr, "/api/rooms/tmp", &h(&auth(&bob_token))).await;
    assert_error(&r, 403, "forbidden", "not a moderator");
    alice1.sync().await;

    let r = ok(&server, "DELETE", "/api/rooms/tmp", API_KEY, None, 200).await;
    assert_eq!(r, json!({"destroyed": "tmp", "sessions": 3}));
    for c in [&mut alice1, &mut alice2, &mut bob] {
        c.expect_json(json!({"type": "left", "room": "tmp", "reason": "destroyed"})).await;
        c.send(json!({"type": "say", "room": "tmp", "text": "hello?", "id": 1})).await;
        c.expect_error("not_in_room").await;
    }
    // The room is gone with its messages: a room made later under the same
    // name starts empty (the site keeps a transcript before destroying).
    assert_error(&http::get(addr, "/api/rooms/tmp", &h(&auth(API_KEY))).await, 404, "no_such_room", "status");
    let transcript = ok(&server, "GET", "/api/rooms/tmp/transcript", API_KEY, None, 200).await;
    assert_eq!(transcript["messages"], json!([]));
    assert_error(&http::delete(addr, "/api/rooms/tmp", &h(&auth(API_KEY))).await, 404, "no_such_room", "again");

    // The user who created a room moderates it, and may destroy it.
    ok(&server, "POST", "/api/rooms", &bob_token, Some(json!({"name": "mine"})), 201).await;
    bob.join("mine").await;
    alice1.join("mine").await;
    bob.expect_json(presence("mine", "alice", "join")).await;
    let r = http::delete(addr, "/api/rooms/mine", &h(&auth(&alice_token))).await;
    assert_error(&r, 403, "forbidden", "alice");
    let r = ok(&server, "DELETE", "/api/rooms/mine", &bob_token, None, 200).await;
    assert_eq!(r["sessions"], 2);
    bob.expect_json(json!({"type": "left", "room": "mine", "reason": "destroyed"})).await;
    alice1.expect_json(json!({"type": "left", "room": "mine", "reason": "destroyed"})).await;
    for c in [&mut alice1, &mut alice2, &mut bob] {
        c.sync().await;
    }
}

#[tokio::test]
async fn profiles() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let me = auth(&token);

    let mut profile = ok(&server, "GET", "/api/me", &token, None, 200).await;
    assert!(profile["created_at"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{profile}");
    let created_at = profile["created_at"].clone();
    assert_eq!(
        profile,
        json!({"nick": "alice", "display_name": "alice", "status": "", "avatar": "", "settings": {},
            "guest": false, "created_at": created_at})
    );
    assert_error(&http::get(addr, "/api/me", &h(&auth(API_KEY))).await, 403, "forbidden", "API key");
    let r = http::patch(addr, "/api/me", &h(&auth(API_KEY)), &json!({"status": "x"})).await;
    assert_error(&r, 403, "forbidden", "API key");

    // A valid change, at the limits.
    let change = json!({"display_name": "Ä".repeat(64), "status": "s".repeat(140),
        "avatar": "https://img.example/a.png",
        "settings": {"sound": false, "notify": "all", "theme": "dark", "muted_rooms": ["lobby", "Random"]}});
    let updated = ok(&server, "PATCH", "/api/me", &token, Some(change.clone()), 200).await;
    for field in ["display_name", "status", "avatar", "settings"] {
        profile[field] = change[field].clone();
    }
    assert_eq!(updated, profile);

    // Invalid changes change nothing.
    let long_settings = json!({"k": "x".repeat(4100)});
    for bad in [
        json!({"display_name": "Ä".repeat(65)}),
        json!({"display_name": "bell\u{7}"}),
        json!({"status": "s".repeat(141)}),
        json!({"avatar": "javascript:alert(1)"}),
        json!({"avatar": "ftp://img.example/a.png"}),
        json!({"avatar": "https://img.example/a b.png"}),
        json!({"settings": ["not", "an", "object"]}),
        json!({"settings": long_settings}),
        json!({"settings": {"notify": "loud"}}),
        json!({"settings": {"notify": ["dm"]}}),
        json!({"settings": {"theme": "neon"}}),
        json!({"settings": {"muted_rooms": "lobby"}}),
        json!({"settings": {"muted_rooms": [1]}}),
        json!({"settings": {"muted_rooms": ["no spaces allowed"]}}),
        json!({"nickname": "mallory"}),
        json!({"status": 5}),
    ] {
        let r = http::patch(addr, "/api/me", &h(&me), &bad).await;
        assert_error(&r, 400, "invalid", &bad.to_string());
    }
    let r = http::request(addr, "PATCH", "/api/me", &h(&me), Some("{not json")).await;
    assert_error(&r, 400, "invalid", "not JSON");
    assert_eq!(ok(&server, "GET", "/api/me", &token, None, 200).await, profile);
    // An empty avatar clears it.
    let cleared = ok(&server, "PATCH", "/api/me", &token, Some(json!({"avatar": ""})), 200).await;
    assert_eq!(cleared["avatar"], "");

    // The next session shows the new display name.
    let (mut alice, welcome) = Client::with_token(&server, &token).await;
    assert_eq!(welcome["user"]["display_name"], "Ä".repeat(64));

    // Others look alice up: online, then away, then gone with last_seen.
    let (carol_token, mut carol) = site_user(&server, "c", "carol").await;
    let lookup = || async { ok(&server, "GET", "/api/users/ALICE", &carol_token, None, 200).await };
    let seen = lookup().await;
    assert_eq!(
        seen,
        json!({"nick": "alice", "display_name": "Ä".repeat(64), "status": "s".repeat(140), "avatar": "",
            "registered": true, "online": true, "away": false, "last_seen": seen["last_seen"]})
    );
    assert!(seen["last_seen"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{seen}");
    alice.send(json!({"type": "away", "away": true, "id": "a"})).await;
    alice.expect("ack").await;
    assert_eq!((lookup().await["online"].clone(), lookup().await["away"].clone()), (json!(true), json!(true)));
    carol.send(json!({"type": "watch", "nicks": ["alice"]})).await;
    assert_eq!(carol.expect("status").await["online"], true);
    alice.close().await;
    assert_eq!(carol.expect("status").await["online"], false);
    let gone = lookup().await;
    assert_eq!((&gone["online"], &gone["away"]), (&json!(false), &json!(false)));
    assert!(gone["last_seen"].as_i64().is_some_and(|t| t >= seen["last_seen"].as_i64().unwrap()), "{gone}");

    // A site user's profile comes from its token; unknown users are 404.
    let carol_me = ok(&server, "GET", "/api/me", &carol_token, None, 200).await;
    assert_eq!((&carol_me["nick"], &carol_me["display_name"]), (&json!("carol"), &json!("carol")));
    let r = http::get(addr, "/api/users/nobody", &h(&auth(&carol_token))).await;
    assert_error(&r, 404, "no_such_user", "nobody");
    let r = http::get(addr, "/api/users/9bad", &h(&auth(&carol_token))).await;
    assert_error(&r, 400, "invalid", "bad nick");
    carol.sync().await;
}

#[tokio::test]
async fn a_destroyed_private_room_does_not_leak_its_history() {
    let server = start(auth_config()).await;
    ok(
        &server,
        "POST",
        "/api/rooms",
        API_KEY,
        Some(json!({"name": "vault", "private": true, "members": ["bob"]})),
        201,
    )
    .await;
    let (_, mut bob) = site_user(&server, "b", "bob").await;
    bob.join("vault").await;
    bob.say("vault", "the combination is 1234").await;
    ok(&server, "DELETE", "/api/rooms/vault", API_KEY, None, 200).await;
    bob.expect_json(json!({"type": "left", "room": "vault", "reason": "destroyed"})).await;

    let (mut eve, _) = Client::hello(&server, "eve").await;
    eve.send(json!({"type": "join", "room": "vault", "id": "j"})).await;
    let reply = eve.recv().await;
    if reply["type"] == "joined" {
        assert_eq!(reply["history"], json!([]), "a former private room's history leaked: {reply}");
    }
    eve.send(json!({"type": "history", "room": "vault", "id": "h"})).await;
    let reply = eve.recv().await;
    if reply["type"] == "history" {
        assert_eq!(reply["messages"], json!([]), "a former private room's history leaked: {reply}");
    }
    let r = http::get(server.addr(), "/api/rooms/vault/messages", &h(&auth(&site_token(&claims("e", "eve"))))).await;
    if r.status == 200 {
        assert_eq!(r.json()["messages"], json!([]), "a former private room's history leaked");
    }
    bob.sync().await;
}

#[tokio::test]
async fn malformed_bodies_get_the_api_error_body() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let key = auth(API_KEY);
    let room = ok(&server, "POST", "/api/rooms", API_KEY, Some(json!({"name": "hall"})), 201).await;
    assert_eq!(room["name"], "hall");
    for (path, body) in [
        ("/api/register", Some("{}")),
        ("/api/register", Some("not json")),
        ("/api/register", None),
        ("/api/login", Some(r#"{"nick": 1, "password": "password1"}"#)),
        ("/api/rooms", Some(r#"{"name": "x", "colour": "red"}"#)),
        ("/api/rooms/hall/members", Some(r#"{"role": "moderator"}"#)),
        ("/api/rooms/hall/messages", Some(r#"{"text": 5}"#)),
        ("/api/rooms/hall/messages", Some("[]")),
    ] {
        let r = http::request(addr, "POST", path, &h(&key), body).await;
        assert_error(&r, 400, "invalid", &format!("POST {path} {body:?}"));
    }
    let history = ok(&server, "GET", "/api/rooms/hall/messages", API_KEY, None, 200).await;
    assert_eq!(history["messages"], json!([]));
}

#[tokio::test]
async fn a_profile_change_reaches_everyone_who_sees_the_user_at_once() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (mut alice, _) = Client::with_token(&server, &token).await;
    alice.join("r").await;
    alice.join("s").await;
    let (_, mut carol) = site_user(&server, "c", "carol").await;
    carol.join("r").await;
    carol.join("s").await;
    let (_, mut dave) = site_user(&server, "d", "dave").await;
    dave.join("elsewhere").await;
    for room in ["r", "s"] {
        alice.expect_json(json!({"type": "presence", "room": room, "nick": "carol", "event": "join"})).await;
    }

    let change = json!({"display_name": "Alice A.", "status": "at lunch"});
    ok(&server, "PATCH", "/api/me", &token, Some(change), 200).await;
    let user = json!({"nick": "alice", "display_name": "Alice A.", "avatar": null, "status": "at lunch"});
    // One per room the two share, like presence; alice's own session gets
    // the rooms' and its own.
    for room in ["r", "s"] {
        assert_eq!(carol.recv().await, json!({"type": "profile", "room": room, "user": user}));
    }
    let mut mine = vec![alice.recv().await, alice.recv().await, alice.recv().await];
    mine.sort_by_key(|f| f["room"].as_str().unwrap_or("").to_string());
    assert_eq!(
        mine,
        vec![
            json!({"type": "profile", "user": user}),
            json!({"type": "profile", "room": "r", "user": user}),
            json!({"type": "profile", "room": "s", "user": user}),
        ]
    );
    // Member lists show it from now on; someone sharing no room saw nothing.
    carol.send(json!({"type": "who", "room": "r"})).await;
    let status = carol.expect("room_status").await;
    let shown: Vec<&str> =
        status["members"].as_array().unwrap().iter().map(|m| m["display_name"].as_str().unwrap()).collect();
    assert!(shown.contains(&"Alice A."), "{status}");
    // Settings alone change nothing others see: no frame.
    ok(&server, "PATCH", "/api/me", &token, Some(json!({"settings": {"theme": "dark"}})), 200).await;
    for c in [&mut alice, &mut carol, &mut dave] {
        c.sync().await;
    }
}

#[tokio::test]
async fn a_password_change_needs_the_old_one_and_ends_the_other_tokens() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let first = r.json()["token"].as_str().unwrap().to_string();
    let r = http::post(addr, "/api/login", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let second = r.json()["token"].as_str().unwrap().to_string();
    let (mut connected, _) = Client::with_token(&server, &second).await;

    let me = auth(&first);
    for (bad, status, code) in [
        (json!({"old": "wrong horse", "new": "battery staple"}), 401, "unauthorized"),
        (json!({"old": "correct horse", "new": "short"}), 400, "invalid"),
        (json!({"old": "correct horse"}), 400, "invalid"),
        (json!({"old": "correct horse", "new": "battery staple", "extra": 1}), 400, "invalid"),
    ] {
        let r = http::post(addr, "/api/me/password", &h(&me), &bad).await;
        assert_error(&r, status, code, &bad.to_string());
    }
    // Nothing changed: the old password still logs in.
    let r = http::post(addr, "/api/login", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r =
        http::post(addr, "/api/me/password", &h(&me), &json!({"old": "correct horse", "new": "battery staple"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["user"]["nick"], "alice");
    // Every earlier token has ended; the new one works.
    for old in [&first, &second] {
        assert_error(&http::get(addr, "/api/me", &h(&auth(old))).await, 401, "unauthorized", "an old token");
    }
    ok(&server, "GET", "/api/me", &fresh, None, 200).await;
    let r = http::post(addr, "/api/login", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    assert_eq!(r.status, 401, "the old password: {}", r.body);
    let r = http::post(addr, "/api/login", &[], &json!({"nick": "alice", "password": "battery staple"})).await;
    assert_eq!(r.status, 200, "the new password: {}", r.body);
    // A connected session stays connected.
    connected.sync().await;
    // An API key, a site user and a guest have no password to change.
    let r =
        http::post(addr, "/api/me/password", &h(&auth(API_KEY)), &json!({"old": "a", "new": "battery staple"})).await;
    assert_error(&r, 403, "forbidden", "API key");
    let (site, _c) = site_user(&server, "s", "sam").await;
    let r = http::post(addr, "/api/me/password", &h(&auth(&site)), &json!({"old": "a", "new": "battery staple"})).await;
    assert_error(&r, 403, "forbidden", "a site user");
}
