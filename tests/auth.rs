//! Identity: accounts over HTTP (register, login, throttling), `hello` with
//! a password or a session token, guests switched off, site tokens (claims,
//! expiry and leeway, forgery, the `rooms` claim), `chat token`, and the
//! Origin check on the WebSocket upgrade.
//!
//! Password hashing (argon2id) is slow in a debug build, so these tests
//! register and log in only as often as what they check needs.
mod common;

use std::time::Duration;

use chat::RunningServer;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

async fn register(server: &RunningServer, nick: &str, password: &str) -> http::Response {
    http::post(server.addr(), "/api/register", &[], &json!({"nick": nick, "password": password})).await
}

async fn login(server: &RunningServer, nick: &str, password: &str) -> http::Response {
    http::post(server.addr(), "/api/login", &[], &json!({"nick": nick, "password": password})).await
}

/// The response's `{"error":{"code","message"}}`, checked for `status` and `code`; returns the message.
fn http_error(r: &http::Response, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "an error needs a message: {body}");
    message
}

fn is_session_token(v: &Value) -> bool {
    v.as_str().is_some_and(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A JWT with arbitrary claims (for tokens `SiteClaims` cannot express).
fn raw_token(claims: Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A `hello` on `c` that must fail with `code` (and echo the id).
async fn refused_hello(c: &mut Client, fields: Value, code: &str) -> Value {
    let mut hello = json!({"type": "hello", "id": "h"});
    hello.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    c.send(hello.clone()).await;
    let e = c.expect_error(code).await;
    assert_eq!(e["id"], "h", "{hello} → {e}");
    e
}

#[tokio::test]
async fn register_and_log_in_over_http() {
    let server = start(auth_config()).await;

    // Validation comes first: bad nick, password too short or too long.
    http_error(&register(&server, "9lives", "long enough").await, 400, "invalid");
    http_error(&register(&server, "alice", "7 chars").await, 400, "invalid");
    http_error(&register(&server, "alice", &"p".repeat(257)).await, 400, "invalid");

    // 8 characters is enough.
    let r = register(&server, "alice", "8 chars!").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut body = r.json();
    let registered_token = body["token"].clone();
    assert!(is_session_token(&registered_token), "{body}");
    assert!(body["user"]["created_at"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{body}");
    body["user"].as_object_mut().unwrap().remove("created_at");
    assert_eq!(
        body["user"],
        json!({"nick": "alice", "display_name": "alice", "status": "", "avatar": "", "settings": {}, "guest": false})
    );

    // The nick is taken, in any case; a 256-character password passes validation.
    http_error(&register(&server, "ALICE", &"p".repeat(256)).await, 409, "nick_taken");

    // Log in (any case of the nick): a new session token.
    let r = login(&server, "Alice", "8 chars!").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert!(is_session_token(&body["token"]), "{body}");
    assert_ne!(body["token"], registered_token);
    assert_eq!(body["user"]["nick"], "alice");

    // Wrong password and unknown nick: the same answer.
    let wrong = http_error(&login(&server, "alice", "8 chars?").await, 401, "unauthorized");
    let unknown = http_error(&login(&server, "nobody", "8 chars!").await, 401, "unauthorized");
    assert_eq!(wrong, unknown, "a wrong password must not reveal that the nick exists");

    // Both tokens are valid.
    for token in [&registered_token, &body["token"]] {
        let auth = bearer(token.as_str().unwrap());
        let r = http::get(server.addr(), "/api/me", &[("Authorization", &auth)]).await;
        assert_eq!((r.status, r.json()["nick"].clone()), (200, json!("alice")), "{}", r.body);
    }
}

#[tokio::test]
async fn hello_with_a_password_or_a_session_token() {
    let server = start(auth_config()).await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let token = register(&server, "alice", "correct horse").await.json()["token"].as_str().unwrap().to_string();

    let mut c = Client::connect(&server).await;
    let wrong = refused_hello(&mut c, json!({"nick": "alice", "password": "wrong horse"}), "unauthorized").await;
    let unknown = refused_hello(&mut c, json!({"nick": "nobody", "password": "wrong horse"}), "unauthorized").await;
    assert_eq!(wrong["message"], unknown["message"], "a wrong password must not reveal that the nick exists");
    refused_hello(&mut c, json!({"token": "0".repeat(64)}), "unauthorized").await;
    // A guest may not take a registered nick, in any case.
    refused_hello(&mut c, json!({"nick": "ALICE"}), "nick_taken").await;

    // The right password, after the refusals, on the same connection.
    c.send(json!({"type": "hello", "nick": "alice", "password": "correct horse", "id": 3})).await;
    let welcome = c.expect("welcome").await;
    assert_eq!(welcome["id"], 3);
    assert_eq!(welcome["nick"], "alice");
    assert_eq!(welcome["user"], json!({"nick": "alice", "display_name": "alice", "guest": false}));
    c.nick = "alice".into();

    // The session token too, and again: one user with three sessions.
    let (mut t1, w1) = Client::with_token(&server, &token).await;
    let (mut t2, w2) = Client::with_token(&server, &token).await;
    assert_eq!((&w1["nick"], &w1["user"]["guest"]), (&json!("alice"), &json!(false)));
    assert_ne!(w1["session"], w2["session"]);

    // The others see the user join once, and list it once.
    c.join("r").await;
    observer.expect_json(presence("r", "alice", "join")).await;
    let joined = t1.join("r").await;
    assert_eq!(norm(joined["members"].clone()), json!([member("observer"), member("alice")]));
    t2.join("r").await;
    observer.sync().await;

    // What one session says reaches the user's other sessions and the others.
    let ack = t1.say("r", "from the second tab").await;
    let mut msg = ack["message"].clone();
    msg["type"] = json!("message");
    for other in [&mut c, &mut t2, &mut observer] {
        assert_eq!(other.recv().await, msg);
        other.sync().await;
    }

    // A guest nick has one session only.
    let (mut solo, _) = Client::hello(&server, "solo").await;
    let mut again = Client::connect(&server).await;
    refused_hello(&mut again, json!({"nick": "SOLO"}), "nick_taken").await;
    solo.sync().await;
    t1.sync().await;
}

#[tokio::test]
async fn login_attempts_are_throttled_per_nick() {
    let mut config = auth_config();
    config.auth.login_per_nick_per_minute = 2;
    config.auth.login_per_ip_per_minute = 1000;
    let server = start(config).await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    // Registering counts as an attempt, then a wrong password: two.
    let token = register(&server, "alice", "correct horse").await.json()["token"].as_str().unwrap().to_string();
    http_error(&login(&server, "ALICE", "wrong horse").await, 401, "unauthorized");
    // Now even the right password is refused, over HTTP and in `hello`.
    http_error(&login(&server, "alice", "correct horse").await, 429, "rate_limited");
    let mut c = Client::connect(&server).await;
    let e = refused_hello(&mut c, json!({"nick": "alice", "password": "correct horse"}), "rate_limited").await;
    assert!(e["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{e}");
    // Another nick from the same address is not throttled.
    http_error(&login(&server, "bob", "whatever1").await, 401, "unauthorized");
    // A session token is not a password attempt.
    let (mut alice, _) = Client::with_token(&server, &token).await;
    alice.sync().await;
    observer.sync().await;
}

#[tokio::test]
async fn login_attempts_are_throttled_per_address() {
    let mut config = auth_config();
    config.auth.login_per_nick_per_minute = 1000;
    config.auth.login_per_ip_per_minute = 2;
    let server = start(config).await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    http_error(&login(&server, "ann", "password1").await, 401, "unauthorized");
    let mut c = Client::connect(&server).await;
    refused_hello(&mut c, json!({"nick": "ben", "password": "password1"}), "unauthorized").await;
    // The address's budget is spent: other nicks, HTTP or hello, register too.
    http_error(&login(&server, "cat", "password1").await, 429, "rate_limited");
    refused_hello(&mut c, json!({"nick": "dan", "password": "password1"}), "rate_limited").await;
    http_error(&register(&server, "eve", "password1").await, 429, "rate_limited");
    // Guests are not throttled.
    c.send(json!({"type": "hello", "nick": "fay"})).await;
    assert_eq!(c.expect("welcome").await["user"]["guest"], true);
    observer.sync().await;
}

#[tokio::test]
async fn without_guests_only_passwords_and_tokens_identify() {
    let mut config = auth_config();
    config.auth.guests = false;
    let server = start(config).await;
    let token = register(&server, "alice", "correct horse").await.json()["token"].as_str().unwrap().to_string();
    let (mut bob, welcome) = Client::with_token(&server, &site_token(&claims("7", "bob"))).await;
    assert_eq!(welcome["user"], json!({"nick": "bob", "display_name": "bob", "guest": false}));
    bob.join("r").await;

    let mut c = Client::connect(&server).await;
    refused_hello(&mut c, json!({"nick": "guest"}), "unauthorized").await;
    refused_hello(&mut c, json!({"nick": "alice"}), "unauthorized").await;
    bob.sync().await;
    c.send(json!({"type": "hello", "nick": "alice", "password": "correct horse"})).await;
    assert_eq!(c.expect("welcome").await["user"], json!({"nick": "alice", "display_name": "alice", "guest": false}));

    let (mut alice, welcome) = Client::with_token(&server, &token).await;
    assert_eq!(welcome["nick"], "alice");
    alice.join("r").await;
    bob.expect_json(presence("r", "alice", "join")).await;
    bob.sync().await;
}

#[tokio::test]
async fn a_site_token_names_the_user() {
    let server = start(auth_config()).await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let mut full = claims("42", "Carol");
    full.name = Some("Carol Caró".into());
    full.avatar = Some("https://site.example/carol.png".into());
    full.admin = true;
    let token = site_token(&full);
    let (mut carol, welcome) = Client::with_token(&server, &token).await;
    assert_eq!(
        norm(welcome),
        json!({"type": "welcome", "session": SESSION, "nick": "Carol", "token": TOKEN,
            "user": {"nick": "Carol", "display_name": "Carol Caró", "avatar": "https://site.example/carol.png",
                "guest": false, "admin": true},
            "rooms": [],
            "server": {"name": "chat", "version": env!("CARGO_PKG_VERSION"), "node": NODE},
            "limits": {"max_text": 4000, "max_frame_bytes": 65536, "rate_per_sec": 10, "burst": 20, "allow_everyone": true}})
    );
    // The display name shows in the room.
    let joined = carol.join("r").await;
    assert_eq!(joined["members"][1]["display_name"], "Carol Caró");
    observer.expect_json(presence("r", "Carol", "join")).await;

    // The same token again: a second session of the same user.
    let (mut carol2, _) = Client::with_token(&server, &token).await;
    carol2.join("r").await;
    // The nick is held: not by a guest, nor by another site user.
    let mut c = Client::connect(&server).await;
    refused_hello(&mut c, json!({"nick": "carol"}), "nick_taken").await;
    refused_hello(&mut c, json!({"token": site_token(&claims("43", "carol"))}), "nick_taken").await;

    // `sub` may be a number.
    let numeric = raw_token(json!({"sub": 7, "nick": "dan", "exp": unix_now() + 60}), Algorithm::HS256, TOKEN_SECRET);
    c.send(json!({"type": "hello", "token": numeric})).await;
    assert_eq!(c.expect("welcome").await["nick"], "dan");
    observer.sync().await;
    carol.sync().await;
}

#[tokio::test]
async fn bad_site_tokens_are_unauthorized() {
    let server = start(auth_config()).await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let now = unix_now();
    let with_exp = |exp: u64| {
        let mut c = claims("1", "mallory");
        c.exp = exp;
        c
    };
    let forged = chat::auth::mint_site_token(&chat::config::Secret::new("not-the-secret"), &claims("1", "mallory"));
    let bad = [
        ("expired beyond the leeway", site_token(&with_exp(now - 120))),
        ("forged", forged.unwrap()),
        ("no nick", raw_token(json!({"sub": "1", "exp": now + 60}), Algorithm::HS256, TOKEN_SECRET)),
        ("no sub", raw_token(json!({"nick": "mallory", "exp": now + 60}), Algorithm::HS256, TOKEN_SECRET)),
        ("no exp", raw_token(json!({"sub": "1", "nick": "mallory"}), Algorithm::HS256, TOKEN_SECRET)),
        (
            "empty sub",
            raw_token(json!({"sub": "", "nick": "mallory", "exp": now + 60}), Algorithm::HS256, TOKEN_SECRET),
        ),
        ("bad nick", raw_token(json!({"sub": "1", "nick": "9 x", "exp": now + 60}), Algorithm::HS256, TOKEN_SECRET)),
        ("HS512", raw_token(json!({"sub": "1", "nick": "mallory", "exp": now + 60}), Algorithm::HS512, TOKEN_SECRET)),
        ("garbage", "garbage".into()),
        ("three dots", "a.b.c".into()),
        ("empty", String::new()),
    ];
    let mut c = Client::connect(&server).await;
    for (what, token) in bad {
        c.send(json!({"type": "hello", "token": token, "id": what})).await;
        let e = c.expect_error("unauthorized").await;
        assert_eq!(e["id"], what, "{e}");
    }
    // Within the leeway (60 s by default) an expired token still works.
    c.send(json!({"type": "hello", "token": site_token(&with_exp(now - 20))})).await;
    assert_eq!(c.expect("welcome").await["nick"], "mallory");
    c.nick = "mallory".into();
    c.sync().await;
    observer.sync().await;

    // Without a secret, site tokens are refused altogether.
    let server = start(test_config()).await;
    let mut c = Client::connect(&server).await;
    refused_hello(&mut c, json!({"token": site_token(&claims("1", "mallory"))}), "unauthorized").await;
}

#[tokio::test]
async fn the_rooms_claim_limits_joins_and_auto_joins() {
    let mut config = auth_config();
    config.rooms.auto_join = vec!["lobby".into(), "dev".into()];
    let server = start(config).await;
    let (mut observer, _) = Client::hello(&server, "observer").await;
    observer.expect("joined").await;
    observer.expect("joined").await;

    let mut limited = claims("5", "rita");
    limited.rooms = Some(vec!["DEV".into(), "ops".into()]);
    let (mut rita, welcome) = Client::with_token(&server, &site_token(&limited)).await;
    assert_eq!(welcome["rooms"], json!(["dev"]), "lobby is outside the token's rooms");
    let joined = rita.expect("joined").await;
    assert_eq!(joined["room"], "dev");
    observer.expect_json(presence("dev", "rita", "join")).await;

    for room in ["lobby", "elsewhere"] {
        rita.send(json!({"type": "join", "room": room, "id": room})).await;
        assert_eq!(rita.expect_error("forbidden").await["id"], room);
    }
    rita.send(json!({"type": "say", "room": "lobby", "text": "sneaky", "id": 1})).await;
    rita.expect_error("not_in_room").await;
    observer.sync().await;
    assert_eq!(rita.join("Ops").await["room"], "Ops");
    rita.sync().await;
}

#[tokio::test]
async fn chat_token_mints_a_token_the_server_accepts() {
    let server = start(auth_config()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["token", "--sub", "99", "--nick", "dora", "--name", "Dora D.", "--admin", "--ttl", "10m"])
        .env("CHAT_AUTH__TOKEN_SECRET", TOKEN_SECRET)
        .output()
        .await
        .expect("run chat token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (mut dora, welcome) = Client::with_token(&server, &token).await;
    assert_eq!(welcome["user"], json!({"nick": "dora", "display_name": "Dora D.", "guest": false, "admin": true}));
    dora.sync().await;

    // Without a secret it refuses to mint.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["token", "--sub", "99", "--nick", "dora"])
        .env_remove("CHAT_AUTH__TOKEN_SECRET")
        .output()
        .await
        .expect("run chat token");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// Upgrades with `Origin: origin` (none for `None`); the HTTP status.
async fn upgrade_status(server: &RunningServer, origin: Option<&str>) -> u16 {
    let mut request = server.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(request)).await.unwrap() {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test]
async fn the_upgrade_checks_the_origin() {
    let mut config = auth_config();
    config.auth.allowed_origins = vec!["https://site.example".into()];
    let server = start(config).await;
    let own = format!("http://{}", server.addr());
    let other_port = format!("http://127.0.0.1:{}", server.addr().port() + 1);
    let suffixed = format!("{own}.evil.example");
    for (origin, status) in [
        (None, 101),
        (Some(own.as_str()), 101),
        (Some("https://site.example"), 101),
        (Some("https://evil.example"), 403),
        (Some("https://site.example.evil.example"), 403),
        (Some(other_port.as_str()), 403),
        (Some(suffixed.as_str()), 403),
        (Some("null"), 403),
    ] {
        assert_eq!(upgrade_status(&server, origin).await, status, "Origin: {origin:?}");
    }
}

/// A nick belongs to the first account or site user that uses it: nobody
/// else may register it, bring a token for it, or take it as a guest, so
/// nobody inherits another's memberships and roles.
#[tokio::test]
async fn a_nick_belongs_to_its_first_account_or_site_user() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    // A site user (sub 1) takes `alice`.
    let (alice, _) = Client::with_token(&server, &site_token(&claims("1", "alice"))).await;
    drop(alice);
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "Alice", "password": "long enough pw"})).await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (409, json!("nick_taken")), "{}", r.body);
    // Another site user (sub 2) with the same nick is refused.
    let mut c = Client::connect(&server).await;
    c.send(json!({"type": "hello", "token": site_token(&claims("2", "alice")), "id": 1})).await;
    assert_eq!(c.expect_error("nick_taken").await["id"], 1);
    // So is a guest, even while alice is offline.
    c.send(json!({"type": "hello", "nick": "ALICE", "id": 2})).await;
    assert_eq!(c.expect_error("nick_taken").await["id"], 2);
    // The owner comes back fine.
    Client::with_token(&server, &site_token(&claims("1", "alice"))).await;

    // An account owns `bob`: a site token for `bob` is refused.
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "bob", "password": "long enough pw"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    c.send(json!({"type": "hello", "token": site_token(&claims("3", "bob")), "id": 3})).await;
    assert_eq!(c.expect_error("nick_taken").await["id"], 3);
    // The connection is still usable.
    c.send(json!({"type": "hello", "nick": "carol"})).await;
    c.expect("welcome").await;
}
