//! Liveness: heartbeats, cleaning up after dead nodes, and making Redis
//! match the hub again after an outage.

use super::*;

impl RedisBus {
    /// Makes Redis match the hub (after Redis came back, after this node was
    /// taken for dead, or after an unregistration failed): registrations of
    /// sessions and memberships that are gone are removed (members see them
    /// quit), and every local session and membership is registered again.
    /// Idempotent; a session that leaves meanwhile is undone right after.
    pub(super) async fn reconcile(&self) {
        self.dirty.store(false, Ordering::Relaxed);
        let sessions = self.hub.sessions();
        let mut keep = Vec::new();
        for s in &sessions {
            keep.push(online_entry(s));
            keep.extend(s.rooms().iter().map(|r| member_entry(&r.key, s)));
        }
        if let Err(e) = self.reap(&self.node, -1, Some(keep)).await {
            tracing::warn!(error = %e.message, "could not reconcile this node's registrations");
            self.dirty.store(true, Ordering::Relaxed);
            return;
        }
        let registered = futures_util::stream::iter(sessions)
            .map(|s| async move { self.reregister(&s).await })
            .buffer_unordered(32)
            .collect::<Vec<bool>>()
            .await;
        if registered.contains(&false) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Registers one local session and its rooms again; undoes what a
    /// concurrent leave or disconnect made stale. False if Redis failed.
    async fn reregister(&self, session: &Arc<SessionHandle>) -> bool {
        match self.claim(session).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(nick = %session.nick(), "nick taken elsewhere while redis was away; closing");
                session.close(crate::hub::CloseReason::Normal);
                return true;
            }
            Err(_) => return false,
        }
        let rooms = session.rooms().clone();
        for r in rooms {
            if self.register_member(session, &r.key, &r.name).await.is_err() {
                return false;
            }
            if session.joined(&r.key).is_none() || !self.hub.has_session(session.id) {
                let _ = self.unregister_member(session, &r.key, &r.name, Some(Parting::LEAVE)).await;
            }
        }
        // Gone while it was being registered: its own disconnect may have
        // run before the registration; undo it.
        if !self.hub.has_session(session.id) {
            self.disconnected(session, Vec::new()).await;
        }
        true
    }

    /// Whether Redis answers a PING now.
    pub async fn ping(&self) -> bool {
        let Ok(mut conn) = self.conn() else { return false };
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }

    pub(super) async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.beats.cancelled() => return,
            }
            if !self.up.load(Ordering::Acquire) {
                continue;
            }
            // Senders whose message never came back through the subscriber.
            self.release_acks(messages::ACK_WAIT);
            match self.heartbeat().await {
                Ok(known) if !known || self.dirty.load(Ordering::Relaxed) => {
                    if !known {
                        tracing::warn!("this node was taken for dead; registering its sessions again");
                    }
                    self.reconcile().await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e.message, "heartbeat failed"),
            }
        }
    }

    /// Says this node is alive and cleans up after dead ones. Returns whether
    /// Redis knew this node (if not, its registrations are gone).
    pub(super) async fn heartbeat(&self) -> Result<bool, ProtoError> {
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        // Found silent for node_timeout − heartbeat by a check that runs
        // every heartbeat, a dead node is cleaned up within node_timeout.
        let silent = self.config.node_timeout.saturating_sub(self.config.heartbeat).as_millis() as i64;
        inv.key(self.key("nodes")).arg(&self.node).arg(silent);
        let (known, dead): (i64, Vec<String>) = self.run(inv).await?;
        for node in dead.into_iter().filter(|n| *n != self.node) {
            if let Err(e) = self.reap(&node, silent, None).await {
                tracing::warn!(node, error = %e.message, "could not clean up after a dead node");
            }
        }
        Ok(known == 1)
    }

    /// Removes a node's sessions everywhere (or, with `keep`, those of its
    /// registrations not listed) and tells the members and watchers
    /// (`timeout` -1: regardless of its last heartbeat).
    async fn reap(&self, node: &str, timeout: i64, keep: Option<Vec<String>>) -> Result<(), ProtoError> {
        let mut inv = self.scripts.reap.prepare_invoke();
        inv.key(self.key("nodes")).key(self.node_key(node)).arg(&self.prefix).arg(node).arg(timeout);
        match keep {
            Some(keep) => {
                inv.arg("prune").arg(keep);
            }
            None => {
                inv.arg("all");
            }
        }
        let (left, offline): (Vec<String>, Vec<String>) = self.run(inv).await?;
        if !left.is_empty() || !offline.is_empty() {
            tracing::info!(node, users = offline.len(), memberships = left.len() / 3, "removed stale registrations");
        } else {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        for t in left.chunks_exact(3) {
            let (key, name, nick) = (&t[0], &t[1], &t[2]);
            let presence = encode(&ServerFrame::Presence { room: name, nick, event: "quit", reason: None, by: None });
            let env = envelope::envelope(Kind::Frame, &self.node, None, &nick.to_ascii_lowercase(), "", &presence);
            pipe.publish(self.chan_name(&Chan::Room(key.as_str().into())), env);
        }
        for nick in &offline {
            pipe.publish(self.all_chan(), self.status_envelope(nick, false, false));
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Leaves the cluster at shutdown: this node's users quit everywhere at
    /// once, then the tasks stop (after a last archiver pass).
    pub async fn shutdown(&self) {
        self.beats.cancel();
        if self.up.load(Ordering::Acquire)
            && let Err(e) = self.reap(&self.node, -1, None).await
        {
            tracing::warn!(error = %e.message, "could not unregister this node's sessions");
        }
        self.settle().await;
        self.abort();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Stops the bus's tasks at once.
    pub fn abort(&self) {
        self.beats.cancel();
        self.stop.cancel();
    }
}
