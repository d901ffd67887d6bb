//! `/upload`: a file sent over HTTP (`POST /api/uploads`, multipart, with
//! `welcome.token`), whose id the session then says in the room.

use std::path::Path;

use serde_json::Value;

/// `ws://host:port/ws` → `http://host:port` (`wss` → `https`).
pub(crate) fn http_base(ws_url: &str) -> String {
    let (scheme, rest) = match ws_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", ws_url),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Uploads the file at `path`; its upload id, or why not (for the user).
pub(crate) async fn upload(base: &str, token: &str, path: &str) -> Result<String, String> {
    // A console client sends files of a size the server accepts (25 MiB
    // by default): read whole, then sent.
    let data = tokio::fs::read(path).await.map_err(|e| format!("cannot read it ({e})"))?;
    let name = Path::new(path).file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let name: String = name.chars().map(|c| if c == '"' || c.is_control() { '_' } else { c }).collect();
    let boundary = format!("chat-console-{:016x}", rand_u64());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = reqwest::Client::new()
        .post(format!("{base}/api/uploads"))
        .bearer_auth(token)
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the upload failed ({e})"))?;
    let status = response.status();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() == 201 {
        return reply["id"].as_str().map(str::to_owned).ok_or_else(|| "the server's answer has no id".into());
    }
    Err(reply["error"]["message"].as_str().map_or_else(|| format!("the server answered {status}"), str::to_owned))
}

/// A boundary that the file's bytes are unlikely to contain.
fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bases() {
        assert_eq!(super::http_base("ws://127.0.0.1:8080/ws"), "http://127.0.0.1:8080");
        assert_eq!(super::http_base("wss://chat.example.org/ws"), "https://chat.example.org");
    }
}
