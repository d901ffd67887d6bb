//! A history page fit for one frame (`limits.history_max_bytes`).

use crate::model::Page;
use crate::protocol::server::StoredMessage;

/// Cuts a history page to at most `max_bytes` of messages as JSON, so that
/// a page of long, heavily escaped texts cannot make one frame of many
/// megabytes. It keeps the end next to where the reader is going: the
/// newest messages of a page that reads backwards (`before`, or the latest
/// page), the oldest of one that reads forwards (`after`), and sets `more`
/// when it cut. At least one message stays, so paging always moves on.
pub(crate) fn cap_page(page: &mut Page, forwards: bool, max_bytes: usize) {
    let sizes: Vec<usize> = page.messages.iter().map(json_len).collect();
    let n = sizes.len();
    let keep = if forwards { fitting(sizes.iter(), max_bytes) } else { fitting(sizes.iter().rev(), max_bytes) };
    if keep < n {
        if forwards {
            page.messages.truncate(keep);
        } else {
            page.messages.drain(..n - keep);
        }
        page.more = true;
    }
}

/// How many of `sizes`, in order, fit in `max_bytes` (at least one).
fn fitting<'a>(sizes: impl Iterator<Item = &'a usize>, max_bytes: usize) -> usize {
    let mut total = 0usize;
    sizes
        .take_while(|n| {
            total += **n;
            total <= max_bytes
        })
        .count()
        .max(1)
}

/// The length of a message as JSON, without building the string.
fn json_len(m: &StoredMessage) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, m);
    count.0 + 1 // the comma between entries
}
