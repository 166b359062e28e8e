//! HTTP Basic credentials (Okta offers them): user names with Argon2 password hashes.
//!
//! Argon2 is slow on purpose (tens of milliseconds), so verification runs on the blocking
//! pool, at most [`MAX_CONCURRENT_VERIFY`] at a time, and a successful check is remembered for
//! [`CACHE_TTL`] under the SHA-256 of `user:password`: an IdP sending the same credentials on
//! every request pays the hash once. A user name that does not exist is checked against a dummy
//! hash, so timing does not tell which user names exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::{credential_name, sha256, BasicCredentialConfig};

/// Most Argon2 verifications running at once.
pub const MAX_CONCURRENT_VERIFY: usize = 2;
/// How long a verified credential is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most remembered credentials (the cache is emptied when full).
const CACHE_CAP: usize = 1024;

struct Entry {
    name: String,
    username: String,
    hash: String,
}

/// SHA-256 of `user \0 password` -> (entry index, verified at).
type VerifiedCache = HashMap<[u8; 32], (usize, Instant)>;

/// Verifies Basic credentials of one tenant.
#[derive(Clone)]
pub struct BasicVerifier {
    entries: Arc<[Entry]>,
    cache: Arc<Mutex<VerifiedCache>>,
    permits: Arc<Semaphore>,
}

impl Default for BasicVerifier {
    fn default() -> Self {
        Self::from_config(&[])
    }
}

impl BasicVerifier {
    /// From the tenant's `credentials.basic`.
    pub fn from_config(list: &[BasicCredentialConfig]) -> Self {
        Self {
            entries: list
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    Some(Entry {
                        name: credential_name(&b.name, "basic", i),
                        username: b.username.clone(),
                        hash: b.password_hash.as_ref()?.expose().to_owned(),
                    })
                })
                .collect(),
            cache: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFY)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The credential name when `user` and `password` are right.
    pub async fn verify(&self, user: &str, password: &str) -> Option<String> {
        let key = cache_key(user, password);
        if let Some(i) = self.cached(&key) {
            return self.entries.get(i).map(|e| e.name.clone());
        }
        let index = self
            .entries
            .iter()
            .position(|e| bool::from(e.username.as_bytes().ct_eq(user.as_bytes())));
        let hash = match index.and_then(|i| self.entries.get(i)) {
            Some(e) => e.hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&hash, &password)
        })
        .await
        .unwrap_or(false);
        let i = index.filter(|_| ok)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key, (i, Instant::now()));
        }
        self.entries.get(i).map(|e| e.name.clone())
    }

    fn cached(&self, key: &[u8; 32]) -> Option<usize> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get(key) {
            Some((i, at)) if at.elapsed() < CACHE_TTL => Some(*i),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut s = String::with_capacity(user.len() + password.len() + 1);
    s.push_str(user);
    s.push('\0');
    s.push_str(password);
    sha256(&s)
}

/// Checks a password against a PHC hash string.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// An Argon2id hash of `password` in PHC form, with a random salt and the crate's default
/// parameters (19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, String> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes).map_err(|e| format!("cannot make a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A valid hash of nothing anyone knows, checked when the user name is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_else(|_| {
            // Unparseable: verification fails at once (only if hashing itself failed).
            String::new()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn verifier(user: &str, password: &str) -> BasicVerifier {
        BasicVerifier::from_config(&[BasicCredentialConfig {
            name: "okta".into(),
            username: user.into(),
            password_hash: Some(Secret::new(hash_password(password).unwrap())),
            password_hash_file: None,
        }])
    }

    #[tokio::test]
    async fn right_password_passes_and_is_cached() {
        let v = verifier("okta-scim", "correct horse battery staple");
        assert_eq!(
            v.verify("okta-scim", "correct horse battery staple").await,
            Some("okta".into())
        );
        // Cached: a second check does not hash again (it is instant).
        let started = Instant::now();
        assert!(v
            .verify("okta-scim", "correct horse battery staple")
            .await
            .is_some());
        assert!(started.elapsed() < Duration::from_millis(5));
    }

    #[tokio::test]
    async fn wrong_password_or_user_fails_and_is_not_cached() {
        let v = verifier("okta-scim", "correct horse battery staple");
        assert_eq!(v.verify("okta-scim", "wrong").await, None);
        assert_eq!(
            v.verify("someone", "correct horse battery staple").await,
            None
        );
        assert_eq!(v.verify("", "").await, None);
        assert!(v.cache.lock().unwrap().is_empty());
    }

    #[test]
    fn hashes_are_salted_phc_strings() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password(&a, "pw") && verify_password(&b, "pw"));
        assert!(!verify_password(&a, "pw2"));
        assert!(!verify_password("not a hash", "pw"));
    }
}
