//! etcd's "simple" tokens: opaque strings mapped to a user, valid for a TTL
//! that every use renews. Member-local; a restart forgets them (clients
//! authenticate again, as with etcd).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Tokens {
    // Renewing on use happens under a read lock of the state machine.
    inner: Mutex<HashMap<String, (String, Duration, Instant)>>,
}

impl Tokens {
    pub fn assign(&self, token: &str, user: &str, ttl_seconds: i64) {
        let ttl = Duration::from_secs(ttl_seconds.max(1) as u64);
        self.inner.lock().expect("tokens poisoned").insert(
            token.to_string(),
            (user.to_string(), ttl, Instant::now() + ttl),
        );
    }

    /// The user of a live token, renewing it.
    pub fn user(&self, token: &str) -> Option<String> {
        let mut map = self.inner.lock().expect("tokens poisoned");
        let now = Instant::now();
        map.retain(|_, (_, _, expires)| *expires > now);
        let (user, ttl, expires) = map.get_mut(token)?;
        *expires = now + *ttl;
        Some(user.clone())
    }

    pub fn forget_user(&self, user: &str) {
        self.inner
            .lock()
            .expect("tokens poisoned")
            .retain(|_, (u, _, _)| u != user);
    }

    pub fn clear(&self) {
        self.inner.lock().expect("tokens poisoned").clear();
    }
}
