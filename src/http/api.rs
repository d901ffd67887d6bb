//! Room history (members or an API key) and transcripts (API key), for the
//! embedding site to show and keep.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};

use super::caller::{api_key, caller, may_read};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{bad_request, unavailable};
use crate::app::App;
use crate::protocol::Name;
use crate::protocol::server::{Conv, StoredMessage};
use crate::store::HistoryQuery;

/// Most messages one transcript request returns (`more` says if there are more).
const TRANSCRIPT_MAX: usize = 10_000;

#[derive(Deserialize)]
pub struct MessagesQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u64>,
}

/// `GET /api/rooms/{room}/messages?before=&after=&limit=`
pub async fn room_messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Response {
    let caller = match caller(&app, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(room) = Name::room(&room) else { return bad_request("not a valid room name") };
    let private = match app.store.room(room.key()).await {
        Ok(record) => record.is_some_and(|r| r.private),
        Err(_) => return unavailable(),
    };
    if let Err(r) = may_read(&app, &caller, &room, private).await {
        return r;
    }
    if q.before.is_some() && q.after.is_some() {
        return bad_request("give `before` or `after`, not both");
    }
    let limits = &app.config.limits;
    let limit = match q.limit {
        Some(0) => return bad_request("`limit` must be at least 1"),
        Some(n) => (n as usize).min(limits.history_max),
        None => limits.history_default,
    };
    let query = HistoryQuery { before: q.before, after: q.after, upto: None, limit };
    match app.bus.history(&Conv::Room(room.key().clone()), query).await {
        Ok(mut page) => {
            crate::gateway::limits::cap_page(&mut page, q.after.is_some(), limits.history_max_bytes);
            Json(json!({"messages": page.messages, "more": page.more})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "history request failed");
            unavailable()
        }
    }
}

/// A transcript holds what users wrote: opened in a browser it may run
/// nothing, load nothing, and be taken for nothing but what it says.
const TRANSCRIPT_HEADERS: [(header::HeaderName, &str); 3] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

#[derive(Deserialize)]
pub struct TranscriptQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// A time in a query string: epoch milliseconds or RFC 3339.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as i64)
}

/// `GET /api/rooms/{room}/transcript?from=&to=&format=json|text|html`
pub async fn room_transcript(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<TranscriptQuery>,
) -> Response {
    if let Err(r) = api_key(&app, &headers).await {
        return r;
    }
    let Ok(room) = Name::room(&room) else { return bad_request("not a valid room name") };
    let time = |v: &Option<String>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => {
            parse_time(s).ok_or_else(|| bad_request(&format!("`{name}` must be epoch milliseconds or RFC 3339")))
        }
    };
    let from = match time(&q.from, 0, "from") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let to = match time(&q.to, i64::MAX, "to") {
        Ok(t) => t,
        Err(r) => return r,
    };
    // In a cluster the newest messages may still be buffered in Redis.
    if !app.bus.settle().await {
        return unavailable();
    }
    let page = match app.store.transcript(&Conv::Room(room.key().clone()), from, to, TRANSCRIPT_MAX).await {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(error = %e, "transcript request failed");
            return unavailable();
        }
    };
    match q.format.as_deref().unwrap_or("json") {
        "json" => Json(json!({"room": room.as_str(), "messages": page.messages, "more": page.more})).into_response(),
        "text" => {
            let mut out = String::new();
            for m in &page.messages {
                out.push_str(&text_line(m));
                out.push('\n');
            }
            if page.more {
                out.push_str(&format!("[truncated after {TRANSCRIPT_MAX} messages: ask again with a later `from`]\n"));
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], TRANSCRIPT_HEADERS, out).into_response()
        }
        "html" => {
            let mut out = format!(
                "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head><body>\n<h1>{0}</h1>\n<ul>\n",
                escape_html(room.as_str())
            );
            for m in &page.messages {
                out.push_str(&format!(
                    "<li><time datetime=\"{t}\">{t}</time> <b>{from}</b>: {text}</li>\n",
                    t = escape_html(&rfc3339(m.sent_at)),
                    from = escape_html(&m.from),
                    text = escape_html(&shown_text(m)),
                ));
            }
            out.push_str("</ul>\n</body></html>\n");
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], TRANSCRIPT_HEADERS, out).into_response()
        }
        _ => bad_request("`format` must be json, text or html"),
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn shown_text(m: &StoredMessage) -> String {
    if m.deleted { "[deleted]".to_owned() } else { m.text.clone() }
}

/// One transcript line: time, sender, text (line breaks kept visible as ⏎).
fn text_line(m: &StoredMessage) -> String {
    format!("{} <{}> {}", rfc3339(m.sent_at), m.from, shown_text(m).replace('\n', " ⏎ "))
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1767225600123"), Some(1767225600123));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1767225600000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(rfc3339(1767225600123), "2026-01-01T00:00:00.123Z");
    }
}
