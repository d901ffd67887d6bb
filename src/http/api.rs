//! Room history (members or an API key) and transcripts (API key), for the
//! embedding site to show and keep.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};

use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::App;
use super::caller::{api_key, caller};
use super::error::ApiError;
use crate::protocol::server::StoredMessage;
use crate::protocol::{Name, Target, size_text};
use crate::service::messages::PageRequest;
use crate::service::social::SearchRequest;

/// Most messages one transcript request returns (`more` says if there are more).
const TRANSCRIPT_MAX: usize = 10_000;

#[derive(Deserialize)]
pub(crate) struct MessagesQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u64>,
}

/// `GET /api/rooms/{room}/messages?before=&after=&limit=`
pub(crate) async fn room_messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Result<Response, ApiError> {
    let caller = caller(&app, &headers).await?;
    let Ok(room) = Name::room(&room) else { return Err(ApiError::invalid("not a valid room name")) };
    let request = PageRequest { before: q.before, after: q.after, limit: q.limit };
    let page = app.room_messages(&caller, &room, &request).await?;
    Ok(Json(json!({"messages": page.messages, "more": page.more})).into_response())
}

#[derive(Deserialize)]
pub(crate) struct SearchParams {
    q: Option<String>,
    room: Option<String>,
    with: Option<String>,
    limit: Option<u64>,
    before: Option<String>,
}

/// `GET /api/search?q=&room=&with=&limit=&before=`: full-text search over
/// what the caller may read, newest first (`docs/search.md`).
pub(crate) async fn search(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let caller = caller(&app, &headers).await?;
    let conv = match (p.room.as_deref(), p.with.as_deref()) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give `room` or `with`, not both")),
        (Some(r), None) => Some(Target::Room(Name::room(r)?)),
        (None, Some(w)) => Some(Target::User(Name::nick(w).map_err(|_| ApiError::invalid("`with` must be a nick"))?)),
        (None, None) => None,
    };
    let before = match p.before.as_deref() {
        Some(b) => Some(ulid::Ulid::from_string(b).map_err(|_| ApiError::invalid("`before` must be a message id"))?),
        None => None,
    };
    let Some(q) = p.q else { return Err(ApiError::invalid("`q` is missing")) };
    let page = app.search(&caller, &[], &SearchRequest { q, conv, limit: p.limit, before }).await?;
    Ok(Json(json!({"messages": page.messages, "more": page.more})).into_response())
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
pub(crate) struct TranscriptQuery {
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
pub(crate) async fn room_transcript(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<TranscriptQuery>,
) -> Result<Response, ApiError> {
    api_key(&app, &headers).await?;
    let Ok(room) = Name::room(&room) else { return Err(ApiError::invalid("not a valid room name")) };
    let time = |v: &Option<String>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => {
            parse_time(s).ok_or_else(|| ApiError::invalid(format!("`{name}` must be epoch milliseconds or RFC 3339")))
        }
    };
    let from = time(&q.from, 0, "from")?;
    let to = time(&q.to, i64::MAX, "to")?;
    let page = app.transcript(&room, from, to, TRANSCRIPT_MAX).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            Ok(Json(json!({"room": room.as_str(), "messages": page.messages, "more": page.more})).into_response())
        }
        "text" => {
            let mut out = String::new();
            for m in &page.messages {
                out.push_str(&text_line(m));
                out.push('\n');
            }
            if page.more {
                out.push_str(&format!("[truncated after {TRANSCRIPT_MAX} messages: ask again with a later `from`]\n"));
            }
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], TRANSCRIPT_HEADERS, out).into_response())
        }
        "html" => {
            let mut out = format!(
                "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head><body>\n<h1>{0}</h1>\n<ul>\n",
                escape_html(room.as_str())
            );
            for m in &page.messages {
                out.push_str(&format!(
                    "<li><time datetime=\"{t}\">{t}</time> <b>{from}</b>: {text}",
                    t = escape_html(&rfc3339(m.sent_at)),
                    from = escape_html(&m.from),
                    text = escape_html(&shown_text(m)),
                ));
                for note in [reply_note(m), reactions_note(m)].into_iter().flatten() {
                    out.push_str(&format!(" <small>{}</small>", escape_html(&note)));
                }
                if !m.deleted && !m.attachments.is_empty() {
                    out.push_str("\n<ul class=\"files\">");
                    for a in &m.attachments {
                        out.push_str(&format!(
                            "<li><a href=\"{url}\">{name}</a> ({size}, {kind})</li>",
                            url = escape_html(&a.url),
                            name = escape_html(&a.name),
                            size = size_text(a.size),
                            kind = escape_html(&a.content_type),
                        ));
                    }
                    out.push_str("</ul>");
                }
                out.push_str("</li>\n");
            }
            out.push_str("</ul>\n</body></html>\n");
            Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], TRANSCRIPT_HEADERS, out).into_response())
        }
        _ => Err(ApiError::invalid("`format` must be json, text or html")),
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn shown_text(m: &StoredMessage) -> String {
    if m.deleted { "[deleted]".to_owned() } else { m.text.clone() }
}

/// One transcript line: time, sender, text (line breaks kept visible as
/// ⏎), then each attachment as `[name, size] URL`.
fn text_line(m: &StoredMessage) -> String {
    let mut line = format!("{} <{}>", rfc3339(m.sent_at), m.from);
    let text = shown_text(m);
    if !text.is_empty() {
        line.push(' ');
        line.push_str(&text.replace('\n', " ⏎ "));
    }
    if !m.deleted {
        for a in &m.attachments {
            line.push_str(&format!(" [{}, {}] {}", a.name.replace('\n', " "), size_text(a.size), a.url));
        }
    }
    for note in [reply_note(m), reactions_note(m)].into_iter().flatten() {
        line.push(' ');
        line.push_str(&note.replace('\n', " ⏎ "));
    }
    line
}

/// What a reply answers, for the text and HTML transcripts:
/// `(reply to alice: "the quote…")`.
fn reply_note(m: &StoredMessage) -> Option<String> {
    let r = m.reply_to.as_ref()?;
    let quote: String = r.text.chars().take(60).collect();
    let cut = if r.text.chars().count() > 60 { "…" } else { "" };
    Some(if r.deleted {
        "(reply to a deleted message)".to_owned()
    } else {
        format!("(reply to {}: \"{quote}{cut}\")", r.from)
    })
}

/// A message's reactions, for the text and HTML transcripts:
/// `[👍 bob, alice; 🎉 carol]`.
fn reactions_note(m: &StoredMessage) -> Option<String> {
    if m.reactions.is_empty() || m.deleted {
        return None;
    }
    let parts: Vec<String> =
        m.reactions.0.iter().map(|(emoji, nicks)| format!("{emoji} {}", nicks.join(", "))).collect();
    Some(format!("[{}]", parts.join("; ")))
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
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
