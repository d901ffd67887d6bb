use super::*;

fn sent(s: &mut Session) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Next::Send(text) = s.next(Instant::now()) {
        frames.push(serde_json::from_str(&text).unwrap());
    }
    frames
}

fn bodies(lines: &[Line]) -> Vec<&Body> {
    lines.iter().map(|l| &l.body).collect()
}

#[test]
fn join_then_say_goes_to_the_new_room_at_once() {
    let mut s = Session::new("alice".into(), true, 20);
    let mut out = Vec::new();
    s.input("/join dev", &mut out);
    s.input("hello", &mut out);
    assert!(out.is_empty());
    assert_eq!(
        sent(&mut s),
        vec![
            json!({"type": "join", "room": "dev", "history": 20, "id": 1}),
            json!({"type": "say", "room": "dev", "text": "hello", "id": 2}),
        ]
    );
    assert!(!s.settled());
    s.frame(r#"{"type":"joined","id":1,"room":"dev","topic":"","members":[],"seq":3,"history":[]}"#, &mut out);
    s.frame(r#"{"type":"ack","id":2,"message":{"room":"dev","seq":4,"from":"alice","text":"hello"}}"#, &mut out);
    assert!(s.settled());
    assert_eq!(out.len(), 2);
    // A duplicate of a message seen already is not shown again.
    s.frame(r#"{"type":"message","room":"dev","seq":4,"from":"alice","text":"hello"}"#, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(s.failures, 0);
}

#[test]
fn bad_lines_and_refusals_count() {
    let mut s = Session::new("alice".into(), true, 20);
    let mut out = Vec::new();
    s.input("/jion dev", &mut out);
    s.input("no room yet", &mut out);
    assert_eq!((s.usage_errors, s.failures), (1, 1));
    assert!(sent(&mut s).is_empty());
    s.input("/msg bob hi", &mut out);
    assert_eq!(sent(&mut s).len(), 1);
    s.frame(r#"{"type":"error","id":1,"code":"no_such_user","message":"nobody called bob"}"#, &mut out);
    assert_eq!(s.failures, 2);
    assert_eq!(
        out.last().unwrap().body,
        Body::Error { context: Some("not sent to bob".into()), message: "nobody called bob".into() }
    );
}

#[test]
fn rate_limited_is_retried_after_the_pause() {
    let mut s = Session::new("alice".into(), true, 20);
    let mut out = Vec::new();
    s.input("/msg bob one", &mut out);
    assert_eq!(sent(&mut s).len(), 1);
    s.frame(r#"{"type":"error","id":1,"code":"rate_limited","message":"slow down","retry_after_ms":500}"#, &mut out);
    assert!(out.is_empty());
    assert!(matches!(s.next(Instant::now()), Next::Wait(_)));
    let later = Instant::now() + Duration::from_secs(1);
    assert_eq!(s.next(later), Next::Send(json!({"type":"say","to":"bob","text":"one","id":1}).to_string()));
}

#[test]
fn resume_after_reconnect() {
    let mut s = Session::new("alice".into(), true, 20);
    let mut out = Vec::new();
    s.input("/join dev", &mut out);
    sent(&mut s);
    s.frame(r#"{"type":"joined","id":1,"room":"dev","members":[],"seq":7,"history":[]}"#, &mut out);
    s.frame(r#"{"type":"message","to":"alice","seq":2,"from":"bob","text":"psst"}"#, &mut out);
    s.input("lost?", &mut out);
    sent(&mut s);
    out.clear();
    s.disconnected(false, &mut out);
    assert_eq!(s.failures, 1, "{out:?}");
    let welcome = wire::Welcome { nick: "alice".into(), ..Default::default() };
    let frames: Vec<Value> = s.welcomed(&welcome).iter().map(|f| serde_json::from_str(f).unwrap()).collect();
    assert_eq!(
        frames,
        vec![
            json!({"type": "join", "room": "dev", "since": 7, "id": 3}),
            json!({"type": "history", "with": "bob", "after": 2, "id": 4}),
        ]
    );
    out.clear();
    s.frame(
        r#"{"type":"joined","id":3,"room":"dev","members":[],"seq":9,
            "history":[{"room":"dev","seq":8,"from":"bob","text":"missed"},{"room":"dev","seq":9,"from":"bob","text":"too"}]}"#,
        &mut out,
    );
    assert_eq!(out.len(), 2, "{:?}", bodies(&out));
    assert!(s.settled() || !s.inflight.is_empty());
}
