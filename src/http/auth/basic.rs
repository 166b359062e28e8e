//! HTTP Basic credentials (Okta offers them): user names with a password's SHA-256 or its
//! Argon2 hash.
//!
//! A password `scim-bridge token new --basic` generated holds 256 random bits: no guessing can
//! find it, so its SHA-256 (`password_sha256`) is as safe to store as a bearer token's and
//! is checked at once, in constant time, without the lane below. Such a credential never waits
//! behind anyone's guesses, whatever address they share with the IdP. A password somebody
//! chose (`password_hash`, Argon2) needs the slow hash, because a fast one would let whoever
//! reads the configuration try a dictionary against it.
//!
//! Argon2 is slow on purpose (tens of milliseconds of CPU and 19 MiB per check), so every
//! verification of the server runs through one [`HashLane`]: at most a few at a time on the
//! blocking pool (by default half the CPUs, at least one, so guessing cannot take every core
//! from the requests of the IdPs), a short bounded queue, and past it an immediate refusal
//! with `Retry-After` instead of a pile of waiting requests. The queue has three classes, by
//! the client's [`Standing`] at the tenant: clients without a recent failure of their address
//! or network (the IdPs) wait behind at most one client of each other class; clients whose
//! address failed (the guessers) and clients whose network did (their neighbours, and guesses
//! from fresh addresses) pass one at a time per class, each class with a queue of its own. So
//! guesses from ever new addresses do not crowd out an IdP, and a guesser in the IdP's /24
//! delays it by its fresh addresses at most. Clients over their failure budget also share one
//! slot between them, waiting their turn within the lane's wait.
//!
//! A successful check is remembered for [`CACHE_TTL`] under an HMAC of `user:password` keyed
//! with a random per-process key (memory holds no fast hash of a password): an IdP sending the
//! same credentials on every request pays the hash once and never waits behind guessers. The
//! cache belongs to the verifier built from the configuration, so a configuration built anew
//! starts empty. A user name that does not exist is checked against a dummy hash while the
//! tenant has any Argon2 password, so timing does not tell which of those user names exist;
//! a user name with a generated password answers at once, which tells it exists (harmless:
//! its password holds 256 random bits).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::throttle::Standing;
use crate::config::{credential_name, parse_sha256_hex, sha256, BasicCredentialConfig};

/// How long a verified credential is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Fewest characters of a password checked by its SHA-256 (`token new --basic` makes 43): a
/// shorter one was chosen by someone, and is refused however it was configured.
pub const GENERATED_MIN_CHARS: usize = 32;
/// Most remembered credentials (the cache is emptied when full; only successes enter it).
const CACHE_CAP: usize = 1024;
/// Longest a verification waits for a slot of the lane before it is refused.
pub const LANE_MAX_WAIT: Duration = Duration::from_secs(1);
/// Most verifications waiting for a slot, per slot and per class (clean, recently failed);
/// more are refused at once.
const LANE_QUEUE_PER_SLOT: usize = 32;
/// `Retry-After` of a verification the lane refused.
pub const LANE_RETRY_AFTER: Duration = Duration::from_secs(crate::bridge::retry_after::CONTENDED);
/// Shortest password, and fewest different characters in it, that a remembered success may
/// be looked up with while the client is over its failure budget (see [`BasicVerifier::verify`]).
const STRONG_MIN_CHARS: usize = 16;
const STRONG_MIN_DISTINCT: usize = 10;

/// The lane had no slot for a verification within [`LANE_MAX_WAIT`] (or its queue was full):
/// the request is refused with `Retry-After` (the value), and the credential was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy(pub Duration);

/// Bounds the password hashing of the whole server: at most `slots` Argon2 verifications run
/// at once, at most `LANE_QUEUE_PER_SLOT * slots` wait per class, none waits longer than
/// [`LANE_MAX_WAIT`]; clients with recent failures (of their address, of their network) queue
/// for the slots one at a time per class, so a clean client waits behind at most one of each.
#[derive(Debug)]
pub struct HashLane {
    slots: usize,
    permits: Arc<Semaphore>,
    /// Clients with recent failures pass here, one at a time, before they queue for a slot.
    failed_gate: Arc<Semaphore>,
    /// Clients whose network (not address) failed recently: the same, apart.
    neighbour_gate: Arc<Semaphore>,
    /// The one slot that verifications for clients over their failure budget share.
    over_budget: Arc<Semaphore>,
    clean_waiting: AtomicUsize,
    neighbour_waiting: AtomicUsize,
    failed_waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
    /// Verifications started since the lane was made.
    started: AtomicU64,
}

impl Default for HashLane {
    fn default() -> Self {
        Self::new(0)
    }
}

impl HashLane {
    /// `slots` verifications at once; 0: half the CPUs, at least one.
    pub fn new(slots: usize) -> Self {
        Self::with_wait(slots, LANE_MAX_WAIT)
    }

    /// As [`HashLane::new`], with another longest wait (tests).
    pub fn with_wait(slots: usize, max_wait: Duration) -> Self {
        let slots = if slots == 0 { default_slots() } else { slots };
        Self {
            slots,
            permits: Arc::new(Semaphore::new(slots)),
            failed_gate: Arc::new(Semaphore::new(1)),
            neighbour_gate: Arc::new(Semaphore::new(1)),
            over_budget: Arc::new(Semaphore::new(1)),
            clean_waiting: AtomicUsize::new(0),
            neighbour_waiting: AtomicUsize::new(0),
            failed_waiting: AtomicUsize::new(0),
            max_waiting: slots.saturating_mul(LANE_QUEUE_PER_SLOT),
            max_wait,
            started: AtomicU64::new(0),
        }
    }

    /// How many verifications may run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// How many verifications have started (each one Argon2 hash).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool once a slot is free, for a client of this standing.
    pub async fn run<T, F>(&self, standing: Standing, work: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let busy = Busy(LANE_RETRY_AFTER);
        let deadline = tokio::time::Instant::now() + self.max_wait;
        // Over budget, clients share one slot and wait for it in turn (the semaphore is fair)
        // within the lane's wait, so a valid credential behind a few guessers from its own
        // address still gets checked instead of being turned away at once.
        let penalty: Option<OwnedSemaphorePermit> = match standing {
            Standing::OverBudget(_) => {
                let _queued = Queued::enter(&self.failed_waiting, self.max_waiting).ok_or(busy)?;
                Some(
                    tokio::time::timeout_at(deadline, self.over_budget.clone().acquire_owned())
                        .await
                        .map_err(|_| busy)?
                        .map_err(|_| busy)?,
                )
            }
            _ => None,
        };
        let permit = {
            let (queue, gate) = match standing {
                Standing::Clean => (&self.clean_waiting, None),
                Standing::Neighbour => (&self.neighbour_waiting, Some(&self.neighbour_gate)),
                _ => (&self.failed_waiting, Some(&self.failed_gate)),
            };
            let queued = Queued::enter(queue, self.max_waiting).ok_or(busy)?;
            let gate = match gate {
                Some(g) => Some(
                    tokio::time::timeout_at(deadline, g.clone().acquire_owned())
                        .await
                        .map_err(|_| busy)?
                        .map_err(|_| busy)?,
                ),
                None => None,
            };
            let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| busy)?
                .map_err(|_| busy)?;
            drop((gate, queued));
            permit
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _slots = (permit, penalty);
            work()
        })
        .await
        .map_err(|_| busy)
    }
}

/// Counts a verification as waiting until dropped (also when its request goes away).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        let entry = Queued(waiting);
        (before < max).then_some(entry)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

struct Entry {
    name: String,
    username: String,
    check: Check,
}

/// How an entry's password is checked.
enum Check {
    /// A PHC string of an Argon2 hash: through the lane.
    Argon2(String),
    /// The SHA-256 of a generated password: at once.
    Sha256([u8; 32]),
}

/// HMAC of `user \0 password` -> (entry index, verified at).
type VerifiedCache = HashMap<[u8; 32], (usize, Instant)>;

/// Verifies Basic credentials of one tenant.
#[derive(Clone)]
pub struct BasicVerifier {
    entries: Arc<[Entry]>,
    cache: Arc<Mutex<VerifiedCache>>,
    /// The key of the cache's HMAC, random per verifier.
    cache_key: Arc<[u8; 32]>,
    lane: Arc<HashLane>,
}

impl Default for BasicVerifier {
    fn default() -> Self {
        Self::from_config(&[], Arc::default())
    }
}

impl BasicVerifier {
    /// From the tenant's `credentials.basic`; `lane` bounds the hashing of the whole server.
    pub fn from_config(list: &[BasicCredentialConfig], lane: Arc<HashLane>) -> Self {
        Self {
            entries: list
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    // The configuration's validation refuses an entry with neither or both.
                    let check = match (&b.password_sha256, &b.password_hash) {
                        (Some(hex), _) => Check::Sha256(parse_sha256_hex(hex)?),
                        (None, Some(phc)) => Check::Argon2(phc.expose().to_owned()),
                        (None, None) => return None,
                    };
                    Some(Entry {
                        name: credential_name(&b.name, "basic", i),
                        username: b.username.clone(),
                        check,
                    })
                })
                .collect(),
            cache: Arc::default(),
            cache_key: Arc::new(rand::random()),
            lane,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `Ok(Some(credential name))` when `user` and `password` are right, `Ok(None)` when not,
    /// `Err` when the lane had no slot (nothing was checked). A generated password (its
    /// SHA-256 configured) is checked at once, whatever the standing.
    ///
    /// `standing`: the client's at this tenant. Over its failure budget the check still runs
    /// (a valid credential is never refused for someone else's failures), but a remembered
    /// success is looked up only for a password that could be a strong one (at least 16
    /// characters, 10 of them different): a cache hit costs nothing, so over budget it would
    /// let a guesser try weak passwords as fast as it can send them. Any other password takes
    /// the Argon2 path through the shared over-budget slot, so such guessing runs at one hash
    /// at a time.
    pub async fn verify(
        &self,
        user: &str,
        password: &str,
        standing: Standing,
    ) -> Result<Option<String>, Busy> {
        let index = self
            .entries
            .iter()
            .position(|e| bool::from(e.username.as_bytes().ct_eq(user.as_bytes())));
        let entry = index.and_then(|i| self.entries.get(i));
        if let Some(Entry {
            name,
            check: Check::Sha256(digest),
            ..
        }) = entry
        {
            // Only a password as long as a generated one can match: a digest of a chosen
            // (short) password configured here would otherwise be guessable at full speed.
            let matches = bool::from(sha256(password).ct_eq(digest));
            let ok = matches && password.chars().count() >= GENERATED_MIN_CHARS;
            return Ok(ok.then(|| name.clone()));
        }
        let key = self.cache_key(user, password);
        if standing.over_budget().is_none() || strong(password) {
            if let Some(i) = self.cached(&key) {
                return Ok(self.entries.get(i).map(|e| e.name.clone()));
            }
        }
        let hash = match entry.map(|e| &e.check) {
            Some(Check::Argon2(phc)) => phc.clone(),
            // An unknown user name: hashed all the same when some password of the tenant is
            // (timing does not tell which names exist); with only generated passwords, no
            // check costs anything, so answer at once.
            _ if self.has_argon2() => dummy_hash().to_owned(),
            _ => return Ok(None),
        };
        let password = password.to_owned();
        let ok = self
            .lane
            .run(standing, move || verify_password(&hash, &password))
            .await?;
        let Some(i) = index.filter(|_| ok) else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key, (i, Instant::now()));
        }
        Ok(self.entries.get(i).map(|e| e.name.clone()))
    }

    fn has_argon2(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.check, Check::Argon2(_)))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<usize> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get_mut(key) {
            // Sliding: an IdP that keeps using its credential keeps it remembered, so it is not
            // sent back into the Argon2 lane (and behind guessers) every few minutes.
            Some((i, at)) if at.elapsed() < CACHE_TTL => {
                *at = Instant::now();
                Some(*i)
            }
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.cache_key[..]) else {
            // Unreachable (HMAC takes a key of any length); a key nobody can look up.
            return rand::random();
        };
        mac.update(user.as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Could `password` be a strong one (see [`BasicVerifier::verify`])?
fn strong(password: &str) -> bool {
    let mut distinct: Vec<char> = password.chars().collect();
    let len = distinct.len();
    distinct.sort_unstable();
    distinct.dedup();
    len >= STRONG_MIN_CHARS && distinct.len() >= STRONG_MIN_DISTINCT
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

    const STRONG: &str = "correct horse battery staple";
    const CLEAN: Standing = Standing::Clean;
    const FAILED: Standing = Standing::Failed;
    const OVER: Standing = Standing::OverBudget(Duration::from_secs(5));

    fn verifier(user: &str, password: &str, lane: Arc<HashLane>) -> BasicVerifier {
        BasicVerifier::from_config(
            &[BasicCredentialConfig {
                name: "okta".into(),
                username: user.into(),
                password_hash: Some(Secret::new(hash_password(password).unwrap())),
                password_hash_file: None,
                password_sha256: None,
            }],
            lane,
        )
    }

    #[tokio::test]
    async fn right_password_passes_and_is_remembered() {
        let lane = Arc::new(HashLane::new(1));
        let v = verifier("okta-scim", STRONG, lane.clone());
        assert_eq!(
            v.verify("okta-scim", STRONG, CLEAN).await,
            Ok(Some("okta".into()))
        );
        assert_eq!(lane.started(), 1);
        // Remembered: checked again without hashing, also for a client over its budget.
        for standing in [CLEAN, FAILED, OVER] {
            assert_eq!(
                v.verify("okta-scim", STRONG, standing).await,
                Ok(Some("okta".into()))
            );
        }
        assert_eq!(lane.started(), 1);
        // The cache holds no plain SHA-256 of the credentials.
        let plain = crate::config::sha256(&format!("okta-scim\0{STRONG}"));
        assert!(!v.cache.lock().unwrap().contains_key(&plain));
    }

    fn generated(user: &str, password: &str) -> BasicCredentialConfig {
        BasicCredentialConfig {
            name: "okta".into(),
            username: user.into(),
            password_sha256: Some(hex::encode(crate::config::sha256(password))),
            ..BasicCredentialConfig::default()
        }
    }

    #[tokio::test]
    async fn a_generated_password_is_checked_at_once_without_the_lane() {
        // A lane with no room at all: anything that needed it would be refused.
        let lane = Arc::new(HashLane::with_wait(1, Duration::ZERO));
        let _taken = lane.permits.clone().acquire_owned().await.unwrap();
        let password = crate::secret::random_token();
        let v = BasicVerifier::from_config(&[generated("okta-scim", &password)], lane.clone());
        for standing in [CLEAN, FAILED, OVER] {
            assert_eq!(
                v.verify("okta-scim", &password, standing).await,
                Ok(Some("okta".into()))
            );
            assert_eq!(v.verify("okta-scim", "wrong", standing).await, Ok(None));
            // Only generated passwords: an unknown user costs no hash either.
            assert_eq!(v.verify("someone", &password, standing).await, Ok(None));
        }
        assert_eq!(lane.started(), 0);
        assert!(v.cache.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_short_password_never_matches_a_configured_sha256() {
        let lane = Arc::new(HashLane::new(1));
        let v = BasicVerifier::from_config(&[generated("okta-scim", "Summer2024")], lane);
        assert_eq!(v.verify("okta-scim", "Summer2024", CLEAN).await, Ok(None));
        let v = BasicVerifier::from_config(&[generated("okta-scim", "")], Arc::default());
        assert_eq!(v.verify("okta-scim", "", CLEAN).await, Ok(None));
        let long = crate::secret::random_token();
        let v = BasicVerifier::from_config(&[generated("okta-scim", &long)], Arc::default());
        assert_eq!(
            v.verify("okta-scim", &long, CLEAN).await,
            Ok(Some("okta".into()))
        );
    }

    #[tokio::test]
    async fn beside_an_argon2_password_an_unknown_user_is_still_hashed() {
        let lane = Arc::new(HashLane::new(1));
        let argon2 = BasicCredentialConfig {
            name: "chosen".into(),
            username: "people".into(),
            password_hash: Some(Secret::new(hash_password("hunter2").unwrap())),
            ..BasicCredentialConfig::default()
        };
        let password = crate::secret::random_token();
        let v =
            BasicVerifier::from_config(&[generated("okta-scim", &password), argon2], lane.clone());
        assert_eq!(v.verify("someone", &password, CLEAN).await, Ok(None));
        assert_eq!(lane.started(), 1);
        assert_eq!(
            v.verify("okta-scim", &password, CLEAN).await,
            Ok(Some("okta".into()))
        );
        assert_eq!(
            v.verify("people", "hunter2", CLEAN).await,
            Ok(Some("chosen".into()))
        );
        assert_eq!(lane.started(), 2);
    }

    #[tokio::test]
    async fn wrong_password_or_user_fails_and_is_not_remembered() {
        let lane = Arc::new(HashLane::new(1));
        let v = verifier("okta-scim", STRONG, lane.clone());
        assert_eq!(v.verify("okta-scim", "wrong", CLEAN).await, Ok(None));
        assert_eq!(v.verify("someone", STRONG, CLEAN).await, Ok(None));
        assert_eq!(v.verify("", "", CLEAN).await, Ok(None));
        assert!(v.cache.lock().unwrap().is_empty());
        // Every one of them was hashed (an unknown user against the dummy hash).
        assert_eq!(lane.started(), 3);
        // A verifier built anew (a configuration loaded again) remembers nothing.
        v.verify("okta-scim", STRONG, CLEAN).await.unwrap();
        let again = verifier("okta-scim", STRONG, lane.clone());
        assert!(again.cache.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn over_budget_a_weak_password_is_hashed_every_time() {
        let lane = Arc::new(HashLane::new(1));
        let v = verifier("okta-scim", "hunter2", lane.clone());
        assert_eq!(
            v.verify("okta-scim", "hunter2", CLEAN).await,
            Ok(Some("okta".into()))
        );
        // Within the budget the success is remembered...
        v.verify("okta-scim", "hunter2", CLEAN).await.unwrap();
        assert_eq!(lane.started(), 1);
        // ... but a client over its budget cannot look weak passwords up for free.
        assert_eq!(
            v.verify("okta-scim", "hunter2", OVER).await,
            Ok(Some("okta".into()))
        );
        assert_eq!(lane.started(), 2);
        assert!(!strong("hunter2") && !strong("aaaaaaaaaaaaaaaaaaaa"));
        assert!(strong(STRONG));
    }

    /// Work that records how many copies of it run at once.
    fn tracked(running: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> impl FnOnce() + Send {
        let (running, most) = (running.clone(), most.clone());
        move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_slots_verifications_run_at_once() {
        let lane = Arc::new(HashLane::with_wait(2, Duration::from_secs(30)));
        let (running, most) = (Arc::default(), Arc::default());
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let (lane, work) = (lane.clone(), tracked(&running, &most));
                tokio::spawn(async move { lane.run(CLEAN, work).await })
            })
            .collect();
        for j in jobs {
            assert_eq!(j.await.unwrap(), Ok(()));
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?}");
        assert_eq!(lane.started(), 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_queue_or_the_wait_a_verification_is_refused_not_queued() {
        let lane = Arc::new(HashLane::with_wait(1, Duration::from_millis(100)));
        let (running, most) = (Arc::default(), Arc::default());
        let started = Instant::now();
        let jobs: Vec<_> = (0..(LANE_QUEUE_PER_SLOT + 20))
            .map(|_| {
                let (lane, work) = (lane.clone(), tracked(&running, &most));
                tokio::spawn(async move { lane.run(CLEAN, work).await })
            })
            .collect();
        let mut refused = 0;
        for j in jobs {
            match j.await.unwrap() {
                Ok(()) => {}
                Err(Busy(retry)) => {
                    assert_eq!(retry, LANE_RETRY_AFTER);
                    refused += 1;
                }
            }
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // 30 ms each, one at a time, 100 ms of waiting: most are refused, none waited long.
        assert!(refused >= LANE_QUEUE_PER_SLOT, "{refused}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(lane.clean_waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_over_budget_share_one_slot() {
        let lane = Arc::new(HashLane::with_wait(4, Duration::from_secs(30)));
        let (running, most) = (Arc::default(), Arc::default());
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (lane, work) = (lane.clone(), tracked(&running, &most));
                tokio::spawn(async move { lane.run(OVER, work).await })
            })
            .collect();
        let outcomes: Vec<_> = futures::future::join_all(jobs).await;
        let done = outcomes.iter().filter(|o| matches!(o, Ok(Ok(())))).count();
        assert!(done >= 1, "{outcomes:?}");
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Within the budget the other slots are still there.
        let (running, most) = (Arc::default(), Arc::default());
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (lane, work) = (lane.clone(), tracked(&running, &most));
                tokio::spawn(async move { lane.run(CLEAN, work).await })
            })
            .collect();
        for j in jobs {
            assert_eq!(j.await.unwrap(), Ok(()));
        }
        let most = most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_client_waits_behind_at_most_one_client_with_failures() {
        let lane = Arc::new(HashLane::with_wait(1, Duration::from_secs(30)));
        let (running, most) = (Arc::default(), Arc::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let job = |standing: Standing, name: &'static str| {
            let (lane, work, order) = (lane.clone(), tracked(&running, &most), order.clone());
            tokio::spawn(async move {
                lane.run(standing, work).await.unwrap();
                order.lock().unwrap().push(name);
            })
        };
        // Ten guessers' verifications queue up, then an IdP's.
        let mut jobs: Vec<_> = (0..10).map(|_| job(FAILED, "guesser")).collect();
        while lane.failed_waiting.load(Ordering::SeqCst) < 9 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        jobs.push(job(CLEAN, "idp"));
        for j in jobs {
            j.await.unwrap();
        }
        let order = order.lock().unwrap();
        let idp = order.iter().position(|n| *n == "idp").unwrap();
        // Behind the one running and at most one queued for the slot: never behind ten.
        assert!(idp <= 2, "{order:?}");
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn default_slots_leave_cpus_free() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lane = HashLane::new(0);
        assert!(lane.slots() >= 1 && (lane.slots() <= cpus / 2 || cpus == 1));
        assert_eq!(HashLane::new(3).slots(), 3);
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
