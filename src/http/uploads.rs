//! Files over HTTP: `POST /api/uploads` (multipart, field `file`) streams
//! a file to the service; `GET /files/{id}` and `/files/{id}/thumbnail`
//! serve one, with `Range`, long caching and the headers that keep a
//! browser from running or guessing anything. Parse, call the service,
//! encode.

use std::ops::Range;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::caller::caller;
use super::error::ApiError;
use super::{App, IMMUTABLE, fresh};
use crate::protocol::{ErrorCode, ProtoError};
use crate::service::uploads::FileMeta;

type Result<T> = std::result::Result<T, ApiError>;

/// Bytes of multipart framing (boundaries, part headers) allowed in a body
/// beyond `uploads.max_bytes` before its `Content-Length` alone refuses it.
const FRAMING: u64 = 64 * 1024;

/// What every served file says besides its type: never sniffed, never a
/// page that runs anything, cached for good (an id names one content).
const FILE_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, IMMUTABLE),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"),
    (header::REFERRER_POLICY, "no-referrer"),
];

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("the file is larger than {max} bytes (uploads.max_bytes)"),
    )
}

/// A multipart error as the client's fault: over a limit, or malformed.
fn multipart_error(e: MultipartError) -> ProtoError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ProtoError::new(ErrorCode::TooLarge, "the upload is too large (uploads.max_bytes)")
    } else {
        ProtoError::invalid(format!("a malformed multipart body: {}", e.body_text()))
    }
}

/// Refusing a body the server will not read: the connection closes, so
/// the rest of the body is never read either.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `POST /api/uploads`, multipart with the file in field `file` → 201
/// `{id, url, name, content_type, size}` (+ `width`, `height`,
/// `thumbnail_url` for images). A user's session token (a guest's
/// `welcome.token` too) or an API key.
pub(crate) async fn create(State(app): State<Arc<App>>, request: Request) -> Response {
    answer(upload(app, request).await)
}

/// An upload's answer; refused as too large, the connection closes (the
/// rest of the body is never read).
fn answer(result: Result<Response>) -> Response {
    match result {
        Ok(r) => r,
        Err(e) if e.code() == ErrorCode::TooLarge => closing(e.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn upload(app: Arc<App>, request: Request) -> Result<Response> {
    let caller = caller(&app, request.headers()).await?;
    let mut multipart = file_field_body(&app, request).await?;
    let field = loop {
        let field = multipart.next_field().await.map_err(multipart_error)?.ok_or_else(no_file_field)?;
        if is_file_field(&field)? {
            break field;
        }
    };
    let name = field.file_name().map(str::to_owned);
    let chunks = std::pin::pin!(field.map(|chunk| chunk.map_err(multipart_error)));
    let attachment = app.upload(&caller, name.as_deref(), chunks).await?;
    Ok((StatusCode::CREATED, Json(attachment)).into_response())
}

/// The multipart body of a file upload (`413` at once when its
/// `Content-Length` is over the cap).
async fn file_field_body(app: &App, request: Request) -> Result<Multipart> {
    let max = app.max_upload_bytes();
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(FRAMING)) {
        return Err(too_large(max));
    }
    Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::invalid(format!("send the file as multipart/form-data, in field `file` ({})", e.body_text()))
    })
}

/// Whether `field` is the part named `file` (true) or one to skip (false);
/// another file field is a mistake worth naming.
fn is_file_field(field: &Field<'_>) -> Result<bool> {
    match field.name() {
        Some("file") => Ok(true),
        Some(other) if field.file_name().is_some() => {
            Err(ApiError::invalid(format!("the file must be in field `file`, not `{other}`")))
        }
        _ => Ok(false),
    }
}

fn no_file_field() -> ApiError {
    ApiError::invalid("no field `file`: send the file as multipart/form-data in field `file`")
}

/// `GET /files/{id}`: the file, to anyone who has its URL.
pub(crate) async fn file(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    serve(&app, &id, false, &headers).await
}

/// `GET /files/{id}/thumbnail`: an image's thumbnail.
pub(crate) async fn thumbnail(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    serve(&app, &id, true, &headers).await
}

/// `POST /api/me/avatar`, multipart with the image in field `file` →
/// `{"avatar": url}`.
pub(crate) async fn set_avatar(State(app): State<Arc<App>>, request: Request) -> Response {
    answer(avatar_upload(app, request).await)
}

async fn avatar_upload(app: Arc<App>, request: Request) -> Result<Response> {
    let caller = caller(&app, request.headers()).await?;
    let mut multipart = file_field_body(&app, request).await?;
    let field = loop {
        let field = multipart.next_field().await.map_err(multipart_error)?.ok_or_else(no_file_field)?;
        if is_file_field(&field)? {
            break field;
        }
    };
    let chunks = std::pin::pin!(field.map(|chunk| chunk.map_err(multipart_error)));
    let account = app.set_avatar(&caller, chunks).await?;
    Ok(Json(serde_json::json!({"avatar": account.avatar})).into_response())
}

/// `DELETE /api/me/avatar` → `{"avatar": ""}`.
pub(crate) async fn remove_avatar(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let account = app.remove_avatar(&caller).await?;
    Ok(Json(serde_json::json!({"avatar": account.avatar})).into_response())
}

/// `GET /avatars/{file}`: an avatar, to anyone.
pub(crate) async fn avatar(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let Some(meta) = app.avatar_file(&file) else { return Err(not_found()) };
    respond(&app, meta, format!("\"{file}\""), &headers).await
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such file")
}

async fn serve(app: &App, id: &str, thumbnail: bool, headers: &HeaderMap) -> Result<Response> {
    let Some(meta) = app.file(id, thumbnail).await? else { return Err(not_found()) };
    let etag = format!("\"{id}{}\"", if thumbnail { "-t" } else { "" });
    respond(app, meta, etag, headers).await
}

/// A stored file as the answer: its headers, 304 for a fresh copy, the
/// requested range.
async fn respond(app: &App, meta: FileMeta, etag: String, headers: &HeaderMap) -> Result<Response> {
    let disposition = content_disposition(meta.inline, &meta.name);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, &meta.content_type)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::ETAG, &etag);
    for (name, value) in FILE_HEADERS {
        builder = builder.header(name, value);
    }
    if fresh(headers, &etag) {
        return Ok(builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default());
    }
    let (status, range) = match meta.size {
        None => (StatusCode::OK, None),
        Some(total) => {
            builder = builder.header(header::ACCEPT_RANGES, "bytes");
            match headers.get(header::RANGE).map(|v| requested_range(v, total)) {
                None | Some(Asked::Ignored) => {
                    builder = builder.header(header::CONTENT_LENGTH, total);
                    (StatusCode::OK, Some(0..total))
                }
                Some(Asked::Range(r)) => {
                    builder = builder
                        .header(header::CONTENT_RANGE, format!("bytes {}-{}/{total}", r.start, r.end - 1))
                        .header(header::CONTENT_LENGTH, r.end - r.start);
                    (StatusCode::PARTIAL_CONTENT, Some(r))
                }
                Some(Asked::Unsatisfiable) => {
                    let e = ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        ErrorCode::Invalid,
                        format!("`Range` must name bytes within the file's {total}"),
                    );
                    let mut response = e.into_response();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                        response.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return Ok(response);
                }
            }
        }
    };
    let Some(stream) = app.file_bytes(&meta, range).await? else { return Err(not_found()) };
    Ok(builder.status(status).body(Body::from_stream(stream)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a file response could not be built");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }))
}

/// What a `Range` header asks of a file of `total` bytes.
#[derive(Debug, PartialEq)]
enum Asked {
    /// One range of bytes, `end` exclusive.
    Range(Range<u64>),
    /// Not a single byte range (another unit, several ranges): the whole
    /// file is sent, as RFC 9110 allows.
    Ignored,
    /// A byte range that is malformed or lies outside the file: 416.
    Unsatisfiable,
}

fn requested_range(value: &HeaderValue, total: u64) -> Asked {
    let Ok(value) = value.to_str() else { return Asked::Unsatisfiable };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Asked::Ignored };
    if spec.contains(',') {
        return Asked::Ignored;
    }
    let Some((start, end)) = spec.trim().split_once('-') else { return Asked::Unsatisfiable };
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (start.is_empty(), end.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => parse(end).filter(|&n| n > 0).map(|n| total.saturating_sub(n)..total),
        // bytes=A-: from A to the end.
        (false, true) => parse(start).map(|a| a..total),
        // bytes=A-B: inclusive; B past the end means the end.
        (false, false) => match (parse(start), parse(end)) {
            (Some(a), Some(b)) if a <= b => Some(a..b.saturating_add(1).min(total)),
            _ => None,
        },
        (true, true) => None,
    };
    match range {
        Some(r) if r.start < total && r.start < r.end => Asked::Range(r),
        _ => Asked::Unsatisfiable,
    }
}

/// `inline` or `attachment`, with the file's name (plain ASCII for old
/// clients, and UTF-8 percent-encoded per RFC 6266).
fn content_disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(v: &str, total: u64) -> Asked {
        requested_range(&HeaderValue::from_str(v).unwrap(), total)
    }

    #[test]
    fn ranges() {
        assert_eq!(asked("bytes=0-9", 100), Asked::Range(0..10));
        assert_eq!(asked("bytes=90-", 100), Asked::Range(90..100));
        assert_eq!(asked("bytes=-10", 100), Asked::Range(90..100));
        assert_eq!(asked("bytes=-500", 100), Asked::Range(0..100));
        assert_eq!(asked("bytes=50-500", 100), Asked::Range(50..100));
        assert_eq!(asked("bytes=100-", 100), Asked::Unsatisfiable);
        assert_eq!(asked("bytes=9-0", 100), Asked::Unsatisfiable);
        assert_eq!(asked("bytes=x-1", 100), Asked::Unsatisfiable);
        assert_eq!(asked("bytes=-0", 100), Asked::Unsatisfiable);
        assert_eq!(asked("bytes=0-1,5-6", 100), Asked::Ignored);
        assert_eq!(asked("items=0-1", 100), Asked::Ignored);
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition(true, "a b.png"), "inline; filename=\"a b.png\"; filename*=UTF-8''a%20b.png");
        assert_eq!(
            content_disposition(false, "é\"x.svg"),
            "attachment; filename=\"__x.svg\"; filename*=UTF-8''%C3%A9%22x.svg"
        );
    }
}
