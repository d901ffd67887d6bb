//! Files: `POST /api/uploads`, `GET /files/{id}`, attachments in messages,
//! the sweep, and every bad input of PROTOCOL.md's "Files" section, through
//! a real server as a client would use them.

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chat::Config;
use common::http::{self, Part, RawResponse};
use common::*;
use serde_json::{Value, json};

// ---- making files ----------------------------------------------------------------

/// A `w` x `h` PNG of a colour gradient.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `w` x `h` JPEG.
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 6) as u8, 90, (y * 6) as u8]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
    out
}

/// What a GPS position written by a phone looks like in EXIF, findable in bytes.
const GPS_MARK: &[u8] = b"GPS-48.8584N-2.2945E";

/// `jpeg` with an EXIF segment (APP1) saying "rotate 90° clockwise to show"
/// (orientation 6) and carrying a GPS block.
fn jpeg_with_exif(jpeg: &[u8]) -> Vec<u8> {
    // TIFF, big-endian; IFD0 at 8 with Orientation and a GPS IFD pointer;
    // the GPS IFD holds GPSLatitudeRef and an ASCII GPS tag (0x001B,
    // GPSProcessingMethod) pointing at the mark.
    let mut tiff: Vec<u8> = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    let gps_ifd = 8 + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1]);
    tiff.extend_from_slice(&(gps_ifd as u32).to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(tiff.len(), gps_ifd);
    let mark_at = gps_ifd + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[0x00, 0x1B, 0, 7, 0, 0, 0, GPS_MARK.len() as u8]);
    tiff.extend_from_slice(&(mark_at as u32).to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(GPS_MARK);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A valid PNG header announcing 50,000 x 50,000 RGB pixels (7.5 GB
/// decoded) with a tiny, highly compressed body: a decompression bomb.
fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&50_000u32.to_be_bytes());
    ihdr.extend_from_slice(&50_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    // A zlib stream of a few zero bytes (stored block): whatever follows
    // the header is never read.
    out.extend_from_slice(&png_chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0, 0x04, 0, 0x01],
    ));
    out.extend_from_slice(&png_chunk(b"IEND", &[]));
    out
}

// ---- helpers -----------------------------------------------------------------------

fn config_in(dir: &Path) -> Config {
    let mut c = auth_config();
    c.database.url = format!("sqlite://{}", dir.join("chat.db").display());
    c.uploads.dir = dir.join("uploads").display().to_string();
    c
}

fn fresh_dir() -> PathBuf {
    fresh_db_path().parent().unwrap().to_owned()
}

async fn upload(addr: SocketAddr, token: &str, name: &str, data: &[u8]) -> http::Response {
    let auth = bearer(token);
    http::post_multipart(addr, "/api/uploads", &[("Authorization", &auth)], &[Part::file(name, "image/png", data)])
        .await
}

/// Uploads and expects 201; the attachment object.
async fn uploaded(addr: SocketAddr, token: &str, name: &str, data: &[u8]) -> Value {
    let r = upload(addr, token, name, data).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn get(addr: SocketAddr, url: &str, headers: &[(&str, &str)]) -> RawResponse {
    http::get_bytes(addr, url, headers).await
}

/// A guest and its `welcome.token`, in `room`.
async fn guest(server: &chat::RunningServer, nick: &str, room: &str) -> (Client, String) {
    let (mut c, welcome) = Client::hello(server, nick).await;
    c.join(room).await;
    (c, welcome["token"].as_str().expect("welcome.token").to_owned())
}

fn assert_error(r: &http::Response, status: u16, code: &str, mentions: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["code"], code, "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "`{message}` should mention `{mentions}`");
}

/// The files kept under an uploads folder (spool files included).
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Polls `url` until it answers `status` (the sweep runs on its own clock).
async fn until_status(addr: SocketAddr, url: &str, status: u16) {
    let start = Instant::now();
    loop {
        if get(addr, url, &[]).await.status == status {
            return;
        }
        assert!(start.elapsed() < WAIT, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- tests ---------------------------------------------------------------------------

/// alice uploads a picture, says something with it; bob's `message` carries
/// it; the file and its thumbnail are served with the right headers and
/// ranges; history shows it, an edit keeps it, and deleting the message
/// deletes the files.
#[tokio::test]
async fn a_picture_goes_round_trip() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (mut alice, token) = guest(&server, "alice", "pics").await;
    let (mut bob, _) = guest(&server, "bob", "pics").await;
    alice.expect("presence").await;

    let original = png(64, 48);
    let a = uploaded(addr, &token, "../cat picture.png", &original).await;
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    let size = a["size"].as_u64().unwrap();
    assert_eq!(
        a,
        json!({"id": id, "url": format!("/files/{id}"), "name": "cat picture.png", "content_type": "image/png",
               "size": size, "width": 64, "height": 48, "thumbnail_url": format!("/files/{id}/thumbnail")})
    );

    alice.send(json!({"type": "say", "room": "pics", "text": "", "attachments": [id], "id": 1})).await;
    let ack = alice.expect("ack").await;
    let msg = bob.expect("message").await;
    assert_eq!(msg["attachments"], json!([a]), "{msg}");
    assert_eq!(msg["text"], "");
    assert_eq!(ack["message"]["attachments"], json!([a]));

    // The file: no Authorization needed.
    let r = get(addr, a["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("content-disposition").unwrap().starts_with("inline;"), "{:?}", r.headers);
    assert!(r.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.body.len() as u64, size);
    let served = image::load_from_memory(&r.body).unwrap();
    assert_eq!((served.width(), served.height()), (64, 48));

    // Ranges.
    let r = get(addr, &format!("/files/{id}"), &[("Range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 0-9/{size}").as_str()));
    assert_eq!(r.body.len(), 10);
    assert_eq!(&r.body[..8], b"\x89PNG\r\n\x1a\n");
    let r = get(addr, &format!("/files/{id}"), &[("Range", "bytes=-4")]).await;
    assert_eq!((r.status, r.body.len()), (206, 4));
    let r = get(addr, &format!("/files/{id}"), &[("Range", &format!("bytes={size}-"))]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{size}").as_str()));

    // The thumbnail fits in 320 px (this picture is smaller: as it is).
    let r = get(addr, a["thumbnail_url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    let thumb = image::load_from_memory(&r.body).unwrap();
    assert!(thumb.width() <= 320 && thumb.height() <= 320);

    // Unknown ids.
    assert_eq!(get(addr, &format!("/files/{}", "0".repeat(32)), &[]).await.status, 404);
    assert_eq!(get(addr, "/files/..%2F..%2Fetc%2Fpasswd", &[]).await.status, 404);

    // History, an edit, then the delete.
    let msg_id = msg["msg_id"].as_str().unwrap().to_owned();
    alice.send(json!({"type": "edit", "msg_id": msg_id, "text": "my cat"})).await;
    bob.expect("edited").await;
    let h = bob.request(json!({"type": "history", "room": "pics"})).await;
    assert_eq!(h["messages"][0]["attachments"], json!([a]), "{h}");
    assert_eq!(h["messages"][0]["text"], "my cat");
    alice.send(json!({"type": "delete", "msg_id": msg_id})).await;
    bob.expect("deleted").await;
    assert_eq!(get(addr, &format!("/files/{id}"), &[]).await.status, 404);
    assert_eq!(get(addr, &format!("/files/{id}/thumbnail"), &[]).await.status, 404);
    server.stop().await;
}

/// A photo with EXIF (orientation and GPS) is served upright, without any
/// of it; a large one gets a thumbnail of at most 320 px.
#[tokio::test]
async fn exif_and_gps_never_reach_anyone() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (_alice, token) = guest(&server, "alice", "pics").await;
    let photo = jpeg_with_exif(&jpeg(40, 20));
    assert!(photo.windows(GPS_MARK.len()).any(|w| w == GPS_MARK));
    let a = uploaded(addr, &token, "IMG_0001.JPG", &photo).await;
    assert_eq!(
        (a["content_type"].as_str(), a["width"].as_u64(), a["height"].as_u64()),
        (Some("image/jpeg"), Some(20), Some(40)),
        "{a}"
    );
    for url in [a["url"].as_str().unwrap(), a["thumbnail_url"].as_str().unwrap()] {
        let r = get(addr, url, &[]).await;
        assert_eq!(r.status, 200);
        assert!(!r.body.windows(GPS_MARK.len()).any(|w| w == GPS_MARK), "{url} still has the GPS block");
        assert!(!r.body.windows(4).any(|w| w == b"Exif"), "{url} still has EXIF");
        let img = image::load_from_memory(&r.body).unwrap();
        assert_eq!((img.width(), img.height()), (20, 40), "{url} is not upright");
    }
    let big = uploaded(addr, &token, "big.jpg", &jpeg(1000, 500)).await;
    let thumb = image::load_from_memory(&get(addr, big["thumbnail_url"].as_str().unwrap(), &[]).await.body).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 160));
    server.stop().await;
}

/// Every bad upload gets a clear error, nothing is kept of it, and the
/// server goes on serving.
#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let dir = fresh_dir();
    let mut config = config_in(&dir);
    config.uploads.max_bytes = 4096;
    let server = start(config).await;
    let addr = server.addr();
    let (mut alice, token) = guest(&server, "alice", "r").await;
    let auth = bearer(&token);
    let auth = [("Authorization", auth.as_str())];
    let post =
        |parts: Vec<Part<'static>>| async move { http::post_multipart(addr, "/api/uploads", &auth, &parts).await };

    // Who: no token, a wrong one.
    let r = http::post_multipart(addr, "/api/uploads", &[], &[Part::file("a.png", "image/png", b"x")]).await;
    assert_error(&r, 401, "unauthorized", "Bearer");
    let r = http::post_multipart(
        addr,
        "/api/uploads",
        &[("Authorization", "Bearer nope")],
        &[Part::file("a", "x/y", b"x")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The form.
    let r = post(vec![Part { name: "upload", filename: Some("a.txt"), content_type: "text/plain", data: b"hi" }]).await;
    assert_error(&r, 400, "invalid", "field `file`");
    let r = post(vec![Part { name: "text", filename: None, content_type: "text/plain", data: b"hi" }]).await;
    assert_error(&r, 400, "invalid", "no field `file`");
    let r = http::post(addr, "/api/uploads", &auth, &json!({"file": "x"})).await;
    assert_error(&r, 400, "invalid", "multipart");
    let r = post(vec![Part::file("empty.txt", "text/plain", b"")]).await;
    assert_error(&r, 400, "invalid", "empty");

    // Too large: from Content-Length, before any byte of the body is read…
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={}\r\nContent-Length: 100000000\r\n\r\n",
        http::BOUNDARY
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw)).await;
    assert!(read.is_ok(), "the server waited for the body");
    let r = http::parse(&raw);
    assert_error(&r, 413, "too_large", "4096");
    assert_eq!(r.header("connection"), Some("close"));
    // …and while it streams in (a Content-Length that hides it).
    let big = vec![b'a'; 5000];
    let r = post(vec![Part::file("big.txt", "text/plain", Box::leak(big.into_boxed_slice()))]).await;
    assert_error(&r, 413, "too_large", "4096");

    // Lies and traps.
    let r =
        post(vec![Part::file("x.png", "image/png", b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>")]).await;
    assert_error(&r, 400, "invalid", "PNG");
    let cut = jpeg(60, 60);
    let cut: &'static [u8] = Box::leak(cut[..cut.len() / 2].to_vec().into_boxed_slice());
    let r = post(vec![Part::file("cut.jpg", "image/jpeg", cut)]).await;
    assert_error(&r, 400, "invalid", "JPEG");
    let started = Instant::now();
    let bomb: &'static [u8] = Box::leak(png_bomb().into_boxed_slice());
    let r = post(vec![Part::file("bomb.png", "image/png", bomb)]).await;
    assert_error(&r, 400, "invalid", "50000 x 50000");
    assert!(started.elapsed() < Duration::from_secs(5), "the bomb took {:?}", started.elapsed());
    assert!(stored_files(&dir.join("uploads")).is_empty(), "{:?}", stored_files(&dir.join("uploads")));

    // Kept, but only ever as a download: SVG with a script, HTML.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>"#;
    let r = post(vec![Part::file("logo.svg", "image/png", svg)]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = r.json();
    assert_eq!(a["content_type"], "image/svg+xml");
    assert!(a.get("thumbnail_url").is_none() && a.get("width").is_none(), "{a}");
    let r = get(addr, a["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert!(r.header("content-disposition").unwrap().starts_with("attachment;"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("content-security-policy").unwrap().contains("sandbox"));
    assert_eq!(r.body, svg);
    let r = post(vec![Part::file("page.txt", "text/plain", b"<!doctype html><script>alert(1)</script>")]).await;
    let a = r.json();
    assert_eq!(a["content_type"], "text/html");
    let r = get(addr, a["url"].as_str().unwrap(), &[]).await;
    assert!(r.header("content-disposition").unwrap().starts_with("attachment;"));

    // Only those two files are kept; no spool file is left.
    let kept = stored_files(&dir.join("uploads"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|p| !p.starts_with(dir.join("uploads/tmp"))), "{kept:?}");
    // The session is unharmed.
    alice.sync().await;
    server.stop().await;
}

/// `attachments` in `say`: only the sender's own uploads, each once, at
/// most 10; anything else is `invalid` and nothing is delivered.
#[tokio::test]
async fn attachments_must_be_the_senders_own() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (mut alice, a_token) = guest(&server, "alice", "r").await;
    let (mut bob, b_token) = guest(&server, "bob", "r").await;
    alice.expect("presence").await;
    let mine = uploaded(addr, &a_token, "a.txt", b"alice's").await["id"].as_str().unwrap().to_owned();
    let bobs = uploaded(addr, &b_token, "b.txt", b"bob's").await["id"].as_str().unwrap().to_owned();
    let mut eleven = Vec::new();
    for i in 0..11 {
        eleven.push(uploaded(addr, &a_token, &format!("{i}.txt"), b"n").await["id"].as_str().unwrap().to_owned());
    }
    let say =
        |attachments: Value| json!({"type": "say", "room": "r", "text": "x", "attachments": attachments, "id": "s"});
    for (attachments, mentions) in [
        (json!([bobs]), bobs.as_str()),
        (json!(["0123456789abcdef0123456789abcdef"]), "0123456789abcdef0123456789abcdef"),
        (json!(["../../etc/passwd"]), "../../etc/passwd"),
        (json!(eleven), "at most 10"),
        (json!([mine, mine]), "twice"),
    ] {
        alice.send(say(attachments.clone())).await;
        let e = alice.expect_error("invalid").await;
        assert!(e["message"].as_str().unwrap().contains(mentions), "{attachments}: {e}");
    }
    // A failed say took nothing: the upload is still free.
    alice.send(say(json!([mine, eleven[0]]))).await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["message"]["attachments"].as_array().unwrap().len(), 2);
    // Carried by one message only.
    alice.send(say(json!([mine]))).await;
    alice.expect_error("invalid").await;
    let got = bob.expect("message").await;
    assert_eq!(got["attachments"][0]["id"], mine.as_str());
    // In a DM, without text.
    bob.send(json!({"type": "say", "to": "alice", "text": " ", "attachments": [bobs]})).await;
    let dm = alice.expect("message").await;
    assert_eq!((dm["text"].as_str(), dm["attachments"][0]["name"].as_str()), (Some(""), Some("b.txt")));
    bob.expect("ack").await;
    bob.sync().await;
    alice.sync().await;
    server.stop().await;
}

/// Uploads no message took within `uploads.unattached_ttl` are swept; an
/// attached one stays.
#[tokio::test]
async fn the_sweep_removes_what_no_message_took() {
    let dir = fresh_dir();
    let mut config = config_in(&dir);
    config.uploads.unattached_ttl = Duration::from_millis(300);
    config.uploads.sweep_interval = Duration::from_millis(100);
    let server = start(config).await;
    let addr = server.addr();
    let (mut alice, token) = guest(&server, "alice", "r").await;
    let kept = uploaded(addr, &token, "kept.png", &png(8, 8)).await;
    alice.send(json!({"type": "say", "room": "r", "text": "", "attachments": [kept["id"]], "id": 1})).await;
    alice.expect("ack").await;
    let lost = uploaded(addr, &token, "lost.png", &png(8, 8)).await;
    until_status(addr, lost["url"].as_str().unwrap(), 404).await;
    until_status(addr, lost["thumbnail_url"].as_str().unwrap(), 404).await;
    assert_eq!(get(addr, kept["url"].as_str().unwrap(), &[]).await.status, 200);
    // Only the kept upload's file and thumbnail remain.
    assert_eq!(stored_files(&dir.join("uploads")).len(), 2, "{:?}", stored_files(&dir.join("uploads")));
    server.stop().await;
}

/// Files and the messages that carry them survive a restart.
#[tokio::test]
async fn uploads_survive_a_restart() {
    let dir = fresh_dir();
    let server = start(config_in(&dir)).await;
    let (mut alice, token) = guest(&server, "alice", "r").await;
    let a = uploaded(server.addr(), &token, "notes.txt", b"remember the milk").await;
    alice.send(json!({"type": "say", "room": "r", "text": "see", "attachments": [a["id"]], "id": 1})).await;
    alice.expect("ack").await;
    server.stop().await;

    let server = start(config_in(&dir)).await;
    let (mut bob, _) = guest(&server, "bob", "r").await;
    let h = bob.request(json!({"type": "history", "room": "r"})).await;
    assert_eq!(h["messages"][0]["attachments"], json!([a]), "{h}");
    let r = get(server.addr(), a["url"].as_str().unwrap(), &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"remember the milk"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("content-disposition").unwrap().starts_with("attachment;"));
    server.stop().await;
}

/// The embedding site uploads with its API key and publishes with the
/// file; the transcript lists it in every format.
#[tokio::test]
async fn the_http_api_publishes_files_and_transcripts_list_them() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let (mut bob, _) = guest(&server, "bob", "news").await;
    let a = uploaded(addr, API_KEY, "report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n").await;
    assert_eq!(a["content_type"], "application/pdf");
    let key = bearer(API_KEY);
    let r =
        http::post(addr, "/api/rooms/news/messages", &[("Authorization", &key)], &json!({"attachments": [a["id"]]}))
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let got = bob.expect("message").await;
    assert_eq!((got["from"].as_str(), &got["attachments"]), (Some("server"), &json!([a])));

    let url = a["url"].as_str().unwrap();
    let text = http::get(addr, "/api/rooms/news/transcript?format=text", &[("Authorization", &key)]).await;
    assert!(text.body.contains(&format!("<server> [report.pdf, 23 B] {url}")), "{}", text.body);
    let html = http::get(addr, "/api/rooms/news/transcript?format=html", &[("Authorization", &key)]).await;
    assert!(html.body.contains(&format!("<a href=\"{url}\">report.pdf</a>")), "{}", html.body);
    let json = http::get(addr, "/api/rooms/news/transcript", &[("Authorization", &key)]).await.json();
    assert_eq!(json["messages"][0]["attachments"], json!([a]));
    server.stop().await;
}

/// The uploads table on every backend: attach, read back, delete, sweep.
#[tokio::test]
async fn uploads_work_on_every_backend() {
    for backend in backends::all("uploads_work_on_every_backend").await {
        let dir = fresh_dir();
        let mut config = config_in(&dir);
        config.database.url = backend.url.clone();
        config.uploads.unattached_ttl = Duration::from_millis(300);
        config.uploads.sweep_interval = Duration::from_millis(100);
        let server = start(config).await;
        let addr = server.addr();
        let (mut alice, token) = guest(&server, "alice", "r").await;
        let a = uploaded(addr, &token, "a.png", &png(16, 16)).await;
        alice.send(json!({"type": "say", "room": "r", "text": "", "attachments": [a["id"]], "id": 1})).await;
        let ack = alice.expect("ack").await;
        assert_eq!(ack["message"]["attachments"], json!([a]), "{:?}", backend.kind);
        let h = alice.request(json!({"type": "history", "room": "r"})).await;
        assert_eq!(h["messages"][0]["attachments"], json!([a]), "{:?}", backend.kind);
        let lost = uploaded(addr, &token, "b.png", &png(16, 16)).await;
        until_status(addr, lost["url"].as_str().unwrap(), 404).await;
        alice.send(json!({"type": "delete", "msg_id": ack["message"]["msg_id"], "id": 2})).await;
        alice.expect("ack").await;
        assert_eq!(get(addr, a["url"].as_str().unwrap(), &[]).await.status, 404, "{:?}", backend.kind);
        server.stop().await;
    }
}

/// Two nodes sharing an uploads folder and a Redis: a file uploaded on one
/// is carried by a message to the other, and served by both.
#[tokio::test]
async fn attachments_cross_a_cluster() {
    let Some(cluster) = cluster::Cluster::start("attachments_cross_a_cluster", 2, |_| {}).await else { return };
    let (mut alice, token) = guest(cluster.node(1), "alice", "shared").await;
    let (mut bob, _) = guest(cluster.node(2), "bob", "shared").await;
    alice.expect("presence").await;
    let a = uploaded(cluster.node(1).addr(), &token, "photo.jpg", &jpeg(50, 30)).await;
    alice.send(json!({"type": "say", "room": "shared", "text": "from n1", "attachments": [a["id"]], "id": 1})).await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["message"]["attachments"], json!([a]));
    let got = bob.expect("message").await;
    assert_eq!(got["attachments"], json!([a]), "{got}");
    for node in [1, 2] {
        let r = get(cluster.node(node).addr(), a["url"].as_str().unwrap(), &[]).await;
        assert_eq!((r.status, r.header("content-type")), (200, Some("image/jpeg")), "n{node}");
    }
    let h = bob.request(json!({"type": "history", "room": "shared"})).await;
    assert_eq!(h["messages"][0]["attachments"], json!([a]), "{h}");
    cluster.finish().await;
}

/// moto's S3 server on a port of its own, stopped when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` (from PyPI's `moto[server]`, which `.ci/run`
/// installs); `None`, saying the test is skipped, where it cannot run.
async fn moto(test: &str) -> Option<Moto> {
    let port = cluster::free_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        backends::skipped(test, "s3 (moto_server not found: pip install 'moto[server]')");
        return None;
    };
    let moto = Moto { child, port };
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(moto)
}

/// With `uploads.storage = "s3"` the files live in the bucket: uploaded,
/// served (with ranges), deleted; nothing stays in the local folder.
#[tokio::test]
async fn files_live_in_an_s3_bucket() {
    let Some(moto) = moto("files_live_in_an_s3_bucket").await else { return };
    let moto_addr: SocketAddr = format!("127.0.0.1:{}", moto.port).parse().unwrap();
    // moto takes unsigned requests: make the bucket.
    let r = http::request(moto_addr, "PUT", "/chat-files", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dir = fresh_dir();
    let mut config = config_in(&dir);
    config.uploads.storage = chat::config::StorageKind::S3;
    let s3 = &mut config.uploads.s3;
    s3.bucket = "chat-files".into();
    s3.endpoint = format!("http://127.0.0.1:{}", moto.port);
    s3.allow_http = true;
    s3.access_key_id = chat::config::Secret::new("test");
    s3.secret_access_key = chat::config::Secret::new("test");
    s3.prefix = "chat/".into();
    let server = start(config).await;
    let addr = server.addr();
    let (mut alice, token) = guest(&server, "alice", "r").await;
    let a = uploaded(addr, &token, "pic.png", &png(500, 400)).await;
    alice.send(json!({"type": "say", "room": "r", "text": "", "attachments": [a["id"]], "id": 1})).await;
    let ack = alice.expect("ack").await;
    let size = a["size"].as_u64().unwrap();
    let r = get(addr, a["url"].as_str().unwrap(), &[]).await;
    assert_eq!((r.status, r.body.len() as u64), (200, size));
    assert_eq!(image::load_from_memory(&r.body).unwrap().width(), 500);
    let r = get(addr, a["url"].as_str().unwrap(), &[("Range", "bytes=1-3")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"PNG"[..]));
    let r = get(addr, a["thumbnail_url"].as_str().unwrap(), &[]).await;
    assert_eq!(image::load_from_memory(&r.body).unwrap().width(), 320);
    // The object is in the bucket under the prefix.
    let listing = http::get(moto_addr, "/chat-files?list-type=2", &[]).await;
    assert!(listing.body.contains(&format!("chat/{}", a["id"].as_str().unwrap())), "{}", listing.body);
    assert!(stored_files(&dir.join("uploads")).is_empty());
    alice.send(json!({"type": "delete", "msg_id": ack["message"]["msg_id"], "id": 2})).await;
    alice.expect("ack").await;
    assert_eq!(get(addr, a["url"].as_str().unwrap(), &[]).await.status, 404);
    let listing = http::get(moto_addr, "/chat-files?list-type=2", &[]).await;
    assert!(!listing.body.contains(a["id"].as_str().unwrap()), "{}", listing.body);
    server.stop().await;
}

// ---- avatars -------------------------------------------------------------------------

async fn post_avatar(addr: SocketAddr, token: &str, data: &[u8]) -> http::Response {
    let auth = bearer(token);
    http::post_multipart(
        addr,
        "/api/me/avatar",
        &[("Authorization", &auth)],
        &[Part::file("me.png", "image/png", data)],
    )
    .await
}

#[tokio::test]
async fn an_avatar_is_cropped_square_served_and_seen_live() {
    let dir = fresh_dir();
    let mut config = config_in(&dir);
    config.uploads.avatar_px = 64;
    let server = start(config).await;
    let addr = server.addr();
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (mut alice, _) = Client::with_token(&server, &token).await;
    alice.join("r").await;
    let (mut bob, bob_token) = guest(&server, "bob", "r").await;
    alice.expect_json(json!({"type": "presence", "room": "r", "nick": "bob", "event": "join"})).await;

    // A 300 x 120 photo with EXIF/GPS becomes a 64 x 64 JPEG without them.
    let r = post_avatar(addr, &token, &jpeg_with_exif(&jpeg(300, 120))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.json()["avatar"].as_str().unwrap().to_string();
    assert!(url.starts_with("/avatars/") && url.ends_with(".jpg"), "{url}");
    let got = get(addr, &url, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let img = image::load_from_memory(&got.body).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    assert!(!got.body.windows(GPS_MARK.len()).any(|w| w == GPS_MARK), "GPS survived");

    // bob sees it at once, in the room; alice's own session too.
    let user = json!({"nick": "alice", "display_name": "alice", "avatar": url, "status": ""});
    assert_eq!(bob.recv().await, json!({"type": "profile", "room": "r", "user": user}));
    let mut mine = vec![alice.recv().await, alice.recv().await];
    mine.sort_by_key(|f| f.get("room").is_some());
    assert_eq!(
        mine,
        vec![json!({"type": "profile", "user": user}), json!({"type": "profile", "room": "r", "user": user})]
    );
    // Member lists and the public profile carry it.
    bob.send(json!({"type": "who", "room": "r"})).await;
    let members = bob.expect("room_status").await["members"].clone();
    assert!(members.as_array().unwrap().iter().any(|m| m["nick"] == "alice" && m["avatar"] == url), "{members}");
    let profile = http::get(addr, "/api/users/alice", &[("Authorization", &bearer(&bob_token))]).await;
    assert_eq!(profile.json()["avatar"], url);

    // A new picture (a small transparent PNG stays PNG, not enlarged)
    // replaces the old file.
    let small = {
        let img = image::RgbaImage::from_fn(40, 30, |x, _| image::Rgba([200, 10, 10, (x * 6) as u8]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let r = post_avatar(addr, &token, &small).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json()["avatar"].as_str().unwrap().to_string();
    assert!(second.ends_with(".png"), "{second}");
    let img = image::load_from_memory(&get(addr, &second, &[]).await.body).unwrap();
    assert_eq!((img.width(), img.height()), (30, 30));
    assert_eq!(get(addr, &url, &[]).await.status, 404, "the old avatar is gone");
    assert_eq!(bob.expect("profile").await["user"]["avatar"], second);
    for _ in 0..2 {
        assert_eq!(alice.expect("profile").await["user"]["avatar"], second);
    }

    // Removing it: the file goes, everyone hears `avatar: null`.
    let r = http::delete(addr, "/api/me/avatar", &[("Authorization", &bearer(&token))]).await;
    assert_eq!((r.status, r.json()), (200, json!({"avatar": ""})));
    assert_eq!(get(addr, &second, &[]).await.status, 404);
    assert_eq!(bob.expect("profile").await["user"]["avatar"], Value::Null);
    for _ in 0..2 {
        assert_eq!(alice.expect("profile").await["user"]["avatar"], Value::Null);
    }

    // Bad input changes nothing and tells why.
    assert_error(&post_avatar(addr, &token, b"<html>not a picture</html>").await, 400, "invalid", "image");
    assert_error(&post_avatar(addr, &token, &png_bomb()).await, 400, "invalid", "pixels");
    assert_error(&post_avatar(addr, &token, b"").await, 400, "invalid", "empty");
    assert_error(&post_avatar(addr, &bob_token, &small).await, 403, "forbidden", "guest");
    let r = http::post_multipart(addr, "/api/me/avatar", &[], &[Part::file("me.png", "image/png", &small)]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(get(addr, "/avatars/0123456789abcdef0123456789abcdef.png", &[]).await.status, 404);
    assert_eq!(get(addr, "/avatars/..%2Fchat.db", &[]).await.status, 404);
    // No avatar file is left behind, and no spool file either.
    let left: Vec<_> = stored_files(&dir.join("uploads"));
    assert!(left.iter().all(|p| !p.to_string_lossy().contains(".avatar.")), "{left:?}");
    for c in [&mut alice, &mut bob] {
        c.sync().await;
    }
}
