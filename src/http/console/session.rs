//! The console's sessions: in memory, per process (a restart signs everybody out; several
//! replicas each keep their own, so a load balancer must pin the console to one or the
//! operator signs in again). A session id is 256 random bits, kept only as its SHA-256 (a
//! dump of this map yields no usable cookie); it ends 8 hours after sign-in, after 30 minutes
//! without a request, or at sign-out. Each session has its own CSRF token, which every form
//! carries and every POST must send back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest a session lives, however busy.
pub const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// Longest a session lives without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Most sessions held; past it the one idle longest is dropped.
const MAX_SESSIONS: usize = 1000;

/// What a request learns about its session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The admin credential's configured name (never the token).
    pub credential: String,
    pub csrf: String,
}

impl Session {
    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

struct Entry {
    session: Session,
    created: Instant,
    seen: Instant,
}

/// Every live session of this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session for `credential` at `now`; returns its id (the cookie's value).
    pub fn open(&self, credential: &str, now: Instant) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            credential: credential.to_owned(),
            csrf: random_hex(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| live(e, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&id),
            Entry {
                session: session.clone(),
                created: now,
                seen: now,
            },
        );
        (id, session)
    }

    /// The live session of `id` at `now` (its idle time starts again), or `None`.
    pub fn touch(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        let entry = map.get_mut(&k)?;
        if !live(entry, now) {
            map.remove(&k);
            return None;
        }
        entry.seen = now;
        Some(entry.session.clone())
    }

    /// Ends the session of `id`.
    pub fn close(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&key(id));
    }
}

fn live(e: &Entry, now: Instant) -> bool {
    now.saturating_duration_since(e.created) < MAX_AGE
        && now.saturating_duration_since(e.seen) < IDLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_too_long_at_their_max_age_and_at_sign_out() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, opened) = s.open("ops", t0);
        assert_eq!(id.len(), 64, "256 bits, hex");
        assert_ne!(id, opened.csrf);
        assert!(s.touch("not-a-session", t0).is_none());
        // Kept alive by requests less than IDLE apart, up to MAX_AGE.
        let mut t = t0;
        while t + IDLE / 2 < t0 + MAX_AGE {
            t += IDLE / 2;
            assert!(s.touch(&id, t).is_some());
        }
        assert!(s.touch(&id, t0 + MAX_AGE).is_none(), "max age reached");
        let (id, _) = s.open("ops", t0);
        assert!(s.touch(&id, t0 + IDLE).is_none(), "idle too long");
        let (id, session) = s.open("ops", t0);
        assert!(session.csrf_matches(Some(&session.csrf)));
        assert!(!session.csrf_matches(Some("x")) && !session.csrf_matches(None));
        s.close(&id);
        assert!(s.touch(&id, t0).is_none());
    }
}
