//! The HTTP API's Web Push operations: the server's public key, and a
//! user's subscriptions (each checked before it is kept: see [`super::push`]).

use super::push::{Keys, check_endpoint};
use crate::protocol::{ErrorCode, ProtoError, now_ms};
use crate::service::access::forbidden;
use crate::service::{Caller, Service};
use crate::store::PushSubscription;

impl Service {
    /// `GET /api/push/key`: the VAPID public key (base64url point).
    pub(crate) fn push_key(&self) -> Result<&str, ProtoError> {
        match &self.vapid {
            Some(v) => Ok(&v.public),
            None => Err(ProtoError::new(ErrorCode::NotFound, "Web Push is off here (notify.push)")),
        }
    }

    /// `POST /api/me/push`: keeps a subscription of the caller; returns its
    /// id. The same endpoint again replaces the older one; past
    /// `notify.max_subscriptions` the oldest is dropped.
    pub(crate) async fn add_push(
        &self,
        caller: &Caller,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
    ) -> Result<String, ProtoError> {
        let Caller::User(me) = caller else { return Err(forbidden("only a user has push subscriptions")) };
        if me.is_guest() {
            // A guest's id is never used again: its subscriptions would
            // only pile up.
            return Err(forbidden("push notifications are for accounts and site users, not guests"));
        }
        self.push_key()?;
        Keys::parse(p256dh, auth).map_err(ProtoError::invalid)?;
        check_endpoint(endpoint, self.config.notify.allow_insecure_push).await.map_err(ProtoError::invalid)?;
        let mut mine = self.store.subscriptions(&me.id).await?;
        for old in mine.iter().filter(|s| s.endpoint == endpoint) {
            self.store.remove_subscription(&old.id).await?;
        }
        mine.retain(|s| s.endpoint != endpoint);
        let max = self.config.notify.max_subscriptions;
        for old in mine.iter().take((mine.len() + 1).saturating_sub(max)) {
            self.store.remove_subscription(&old.id).await?;
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| ProtoError::internal())?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let sub = PushSubscription {
            id: id.clone(),
            user_id: me.id.to_string(),
            endpoint: endpoint.to_owned(),
            p256dh: p256dh.to_owned(),
            auth: auth.to_owned(),
        };
        self.store.add_subscription(&sub, now_ms()).await?;
        Ok(id)
    }

    /// `DELETE /api/me/push/{id}`: one of the caller's subscriptions.
    pub(crate) async fn remove_push(&self, caller: &Caller, id: &str) -> Result<(), ProtoError> {
        let Caller::User(me) = caller else { return Err(forbidden("only a user has push subscriptions")) };
        match self.store.subscription(id).await? {
            Some(s) if s.user_id == *me.id => Ok(self.store.remove_subscription(id).await?),
            _ => Err(ProtoError::new(ErrorCode::NotFound, format!("no push subscription `{id}` of yours"))),
        }
    }
}
