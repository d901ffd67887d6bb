//! `memory://`: recent messages in this process, a bounded ring per
//! conversation. Nothing survives a restart; the SQL backends replace it for
//! that. One mutex: every operation is short and never awaits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use ulid::Ulid;

use super::{HistoryQuery, NewMessage, Page, RoomRecord, StoreError};
use crate::protocol::server::{Conv, StoredMessage};

pub struct MemoryStore {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    convs: HashMap<Conv, ConvLog>,
    /// Where each kept message lives, for edit and delete.
    by_id: HashMap<Ulid, Conv>,
    rooms: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
    seen: HashMap<String, i64>,
}

#[derive(Default)]
struct ConvLog {
    last_seq: u64,
    /// The newest `cap` messages, oldest first, with consecutive `seq`s.
    kept: VecDeque<StoredMessage>,
}

impl MemoryStore {
    pub fn new(cap: usize) -> Self {
        MemoryStore { cap: cap.max(1), inner: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it half-updated in a
        // way that matters more than losing the process; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        let mut inner = self.lock();
        let Inner { convs, by_id, .. } = &mut *inner;
        let mut out = Vec::with_capacity(batch.len());
        for msg in batch {
            let log = convs.entry(msg.conv.clone()).or_default();
            log.last_seq += 1;
            let stored = msg.stored(log.last_seq);
            by_id.insert(stored.msg_id, stored.conv.clone());
            log.kept.push_back(stored.clone());
            if log.kept.len() > self.cap
                && let Some(old) = log.kept.pop_front()
            {
                by_id.remove(&old.msg_id);
            }
            out.push(stored);
        }
        Ok(out)
    }

    pub fn history(&self, conv: &Conv, q: HistoryQuery) -> Page {
        let inner = self.lock();
        let Some(log) = inner.convs.get(conv) else {
            return Page::default();
        };
        let upto = q.upto.unwrap_or(u64::MAX).min(log.last_seq);
        let first_kept = log.kept.front().map_or(log.last_seq + 1, |m| m.seq);
        // Index of a seq in `kept` (seqs there are consecutive).
        let idx = |seq: u64| (seq.saturating_sub(first_kept)) as usize;
        let (lo, hi, more) = match q.after {
            Some(after) => {
                let lo = after.saturating_add(1).max(first_kept);
                let hi = upto.min(lo.saturating_add(q.limit as u64).saturating_sub(1));
                (lo, hi, hi < upto)
            }
            None => {
                let hi = q.before.map_or(upto, |b| b.saturating_sub(1).min(upto));
                let lo = hi.saturating_sub(q.limit as u64).saturating_add(1).max(first_kept);
                (lo, hi, lo > first_kept)
            }
        };
        if lo > hi || hi < first_kept {
            return Page::default();
        }
        let messages = log.kept.range(idx(lo)..=idx(hi).min(log.kept.len().saturating_sub(1))).cloned().collect();
        Page { messages, more }
    }

    pub fn transcript(&self, conv: &Conv, from: i64, to: i64, limit: usize) -> Page {
        let inner = self.lock();
        let Some(log) = inner.convs.get(conv) else { return Page::default() };
        let mut messages: Vec<StoredMessage> =
            log.kept.iter().filter(|m| m.sent_at >= from && m.sent_at < to).take(limit + 1).cloned().collect();
        let more = messages.len() > limit;
        messages.truncate(limit);
        Page { messages, more }
    }

    pub fn message(&self, msg_id: Ulid) -> Option<StoredMessage> {
        let inner = self.lock();
        let conv = inner.by_id.get(&msg_id)?;
        inner.convs.get(conv)?.kept.iter().find(|m| m.msg_id == msg_id).cloned()
    }

    pub fn update(&self, msg_id: Ulid, change: impl FnOnce(&mut StoredMessage)) -> Option<StoredMessage> {
        let mut inner = self.lock();
        let conv = inner.by_id.get(&msg_id)?.clone();
        let msg = inner.convs.get_mut(&conv)?.kept.iter_mut().find(|m| m.msg_id == msg_id)?;
        change(msg);
        Some(msg.clone())
    }

    pub fn room(&self, key: &str) -> Option<RoomRecord> {
        let inner = self.lock();
        let last_seq = inner.convs.get(&Conv::Room(key.into())).map_or(0, |l| l.last_seq);
        match inner.rooms.get(key) {
            Some((name, topic)) => Some(RoomRecord { name: name.clone(), topic: topic.clone(), last_seq }),
            None if last_seq > 0 => Some(RoomRecord { name: key.into(), topic: "".into(), last_seq }),
            None => None,
        }
    }

    pub fn set_topic(&self, key: &str, name: &Arc<str>, topic: &Arc<str>) {
        self.lock().rooms.insert(key.into(), (name.clone(), topic.clone()));
    }

    pub fn user_seen(&self, nick: &str, at: i64) {
        self.lock().seen.insert(nick.to_ascii_lowercase(), at);
    }

    pub fn last_seen(&self, nick_key: &str) -> Option<i64> {
        self.lock().seen.get(nick_key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(room: &str, text: &str) -> NewMessage {
        NewMessage {
            msg_id: Ulid::generate(),
            conv: Conv::Room(room.into()),
            room: Some(room.into()),
            to: None,
            from: "a".into(),
            text: text.into(),
            attachments: vec![],
            sent_at: 0,
        }
    }

    fn seqs(p: &Page) -> Vec<u64> {
        p.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn pages() {
        let s = MemoryStore::new(5);
        s.append((0..8).map(|i| msg("r", &i.to_string())).collect()).unwrap();
        let r = Conv::Room("r".into());
        let q = |before, after, upto, limit| HistoryQuery { before, after, upto, limit };
        // Only the newest 5 (seq 4..=8) are kept.
        let p = s.history(&r, q(None, None, None, 3));
        assert_eq!((seqs(&p), p.more), (vec![6, 7, 8], true));
        let p = s.history(&r, q(Some(6), None, None, 3));
        assert_eq!((seqs(&p), p.more), (vec![4, 5], false));
        let p = s.history(&r, q(None, Some(4), None, 2));
        assert_eq!((seqs(&p), p.more), (vec![5, 6], true));
        let p = s.history(&r, q(None, Some(6), None, 5));
        assert_eq!((seqs(&p), p.more), (vec![7, 8], false));
        let p = s.history(&r, q(None, Some(5), Some(7), 50));
        assert_eq!((seqs(&p), p.more), (vec![6, 7], false));
        let p = s.history(&r, q(None, None, Some(5), 50));
        assert_eq!(seqs(&p), vec![4, 5]);
        assert!(s.history(&r, q(None, Some(8), None, 5)).messages.is_empty());
        assert!(s.history(&Conv::Everyone, q(None, None, None, 5)).messages.is_empty());
    }
}
