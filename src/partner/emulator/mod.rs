//! The partner emulator: a faithful fake of the Periscope Data / Sisense for Cloud Data Teams
//! partner API (section 2 "Contract" of `partner-api.md`) with fault injection.
//!
//! A site is of one [`SiteKind`], chosen at start: a **v1 site** (users and groups, section 2)
//! or an **RBAC site** (users v2 and roles, the "User and Role Management API" of section 4.2),
//! built with [`Emulator::builder`] (`rbac_site`) or `partner-emulator --rbac-site`. Each kind
//! answers the other kind's paths with 404 `{"error": ...}` naming what the site uses. Both kinds
//! share authentication, `test_mode`, the call log, counters, switches and every fault.
//!
//! - [`state`]: the data of a v1 site and its ten calls as pure operations.
//! - [`rbac`]: the data of an RBAC site, its ten calls, and their routes.
//! - [`faults`]: the fault data model; [`injector`]: its run-time state (seeded generator, token
//!   bucket, script).
//! - [`router`]: the partner API over HTTP; [`admin`]: the unauthenticated `/_emulator/` API.
//! - [`cli`]: the `partner-emulator` subcommand.
//!
//! The emulator is a **test tool**: its admin API has no authentication and can read every site
//! and change its faults, so it must only listen where its users are trusted (loopback by default).
//!
//! All state sits behind `std::sync::Mutex`es that are never held across an `.await`: one per site
//! for users and groups (and one for users and roles on an RBAC site, never held together with
//! the other), one per site for faults, one for the call log; counters are atomics.

pub mod admin;
pub mod cli;
pub mod faults;
pub mod injector;
pub mod rbac;
pub mod router;
pub mod state;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use self::faults::Faults;
use self::injector::Injector;
use self::rbac::state::RbacState;
use self::state::SiteState;
use crate::partner::{CallKind, PartnerGroup, PartnerUser};
use crate::secret::Secret;

/// How many call records the log of [`Emulator::new`] keeps (about 200 MB at most); older ones are
/// dropped first.
pub const DEFAULT_CALL_LOG_CAPACITY: usize = 1_000_000;

/// How long [`Emulator::serve`] waits for requests in flight after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// One site to emulate: its name (the `/app/<site>/` segment), its API key and its owner.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub name: String,
    pub api_key: Secret,
    /// The first user of the site, an administrator, usable as `invited_by_email`.
    pub owner_email: String,
}

impl SiteSpec {
    /// Parses `NAME:KEY` or `NAME:KEY:OWNER_EMAIL`. The owner defaults to
    /// `owner@<name>.example.com`. A key may itself contain `:`; the last part is taken as the
    /// owner only when it contains `@`. Error messages never include the key.
    pub fn parse(spec: &str) -> Result<SiteSpec, String> {
        let (name, rest) = spec
            .split_once(':')
            .ok_or_else(|| "a site is NAME:KEY or NAME:KEY:OWNER_EMAIL".to_owned())?;
        let (key, owner) = match rest.rsplit_once(':') {
            Some((key, owner)) if owner.contains('@') => (key, Some(owner)),
            _ => (rest, None),
        };
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!(
                "site name `{name}` must be non-empty, without spaces or `/`"
            ));
        }
        if key.is_empty() {
            return Err(format!("site `{name}`: the API key is empty"));
        }
        let owner_email = match owner {
            Some(owner) => owner.to_owned(),
            None => format!("owner@{name}.example.com"),
        };
        Ok(SiteSpec {
            name: name.to_owned(),
            api_key: Secret::new(key),
            owner_email,
        })
    }
}

/// Which API a site speaks, chosen at start (section 4.2 of `partner-api.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// The "User and Group Management API": `/api/v1/users`, `/api/v1/groups`.
    #[default]
    V1,
    /// The "User and Role Management API": `/api/v2/users`, `/api/v1/roles`.
    Rbac,
}

/// Behaviour switches of a site, for the places where the real service may differ. On an RBAC
/// site `groups_merge` applies to a user's `roles`, `refuse_email_change` to a user `PUT`, and
/// `wire_shape` to lists (`bare`: one unpaged array) and single objects (`wrapped`: under
/// `user` / `role`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    /// `groups` in a user `PUT` is merged into the user's groups instead of replacing them.
    pub groups_merge: bool,
    /// A user `PUT` that changes `email` is refused with 400.
    pub refuse_email_change: bool,
    /// How list and single answers are wrapped.
    pub wire_shape: WireShape,
}

/// The JSON shape of answers (all are tolerated by the client, section 3 of `partner-api.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WireShape {
    /// Lists as `{"users": [...]}` / `{"groups": [...]}`; single objects bare; group names as
    /// strings.
    #[default]
    #[serde(alias = "Standard")]
    Standard,
    /// Lists as bare arrays.
    #[serde(alias = "Bare")]
    Bare,
    /// Lists under `"data"`, single objects under `"user"` / `"group"`, a user's groups as
    /// `{"name": ...}` objects.
    #[serde(alias = "Wrapped")]
    Wrapped,
}

/// One partner call as the emulator saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Order in which calls finished, from 1.
    pub seq: u64,
    /// The site; empty when authentication failed (401).
    pub site: String,
    pub call: CallKind,
    pub test_mode: bool,
    /// `HTTP-X-EMAIL`, or the `email` of a created user.
    pub email: Option<String>,
    /// The group in the path, or the `name` of a created group.
    pub group: Option<String>,
    /// The status answered; 0 when the connection was dropped by a fault or the client went away.
    pub status: u16,
    /// Microseconds since the emulator was created, when the request arrived.
    pub started_us: u64,
    /// Microseconds since the emulator was created, when the answer was ready.
    pub finished_us: u64,
}

/// How many calls of one kind a site received (authenticated calls only, faulted ones included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    pub site: String,
    pub call: CallKind,
    pub test_mode: bool,
    pub count: u64,
}

/// How many call kinds there are (the counters' first dimension).
const KINDS: usize = CallKind::ALL.len();

fn kind_index(kind: CallKind) -> usize {
    match kind {
        CallKind::ListUsers => 0,
        CallKind::GetUser => 1,
        CallKind::CreateUser => 2,
        CallKind::UpdateUser => 3,
        CallKind::DeleteUser => 4,
        CallKind::ListGroups => 5,
        CallKind::GetGroup => 6,
        CallKind::CreateGroup => 7,
        CallKind::UpdateGroup => 8,
        CallKind::DeleteGroup => 9,
        CallKind::ListUsersV2 => 10,
        CallKind::GetUserV2 => 11,
        CallKind::CreateUserV2 => 12,
        CallKind::UpdateUserV2 => 13,
        CallKind::DeleteUserV2 => 14,
        CallKind::ListRoles => 15,
        CallKind::GetRole => 16,
        CallKind::CreateRole => 17,
        CallKind::UpdateRole => 18,
        CallKind::DeleteRole => 19,
    }
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// One emulated site.
struct Site {
    name: String,
    /// SHA-256 of the key, compared in constant time (so neither content nor length leaks).
    key_digest: Mutex<[u8; 32]>,
    /// A v1 site's users and groups; on an RBAC site, empty but for the switches.
    state: Mutex<SiteState>,
    /// An RBAC site's users and roles; `None` on a v1 site.
    rbac: Option<Mutex<RbacState>>,
    injector: Mutex<Injector>,
    counters: [[AtomicU64; 2]; KINDS],
    /// Calls that reached the site's data (not answered by an injected fault).
    executed: [[AtomicU64; 2]; KINDS],
}

impl Site {
    #[cfg(test)]
    fn new(spec: &SiteSpec) -> Self {
        Self::of_kind(spec, SiteKind::V1)
    }

    fn of_kind(spec: &SiteSpec, kind: SiteKind) -> Self {
        let (state, rbac) = match kind {
            SiteKind::V1 => (SiteState::new(&spec.owner_email), None),
            SiteKind::Rbac => (
                SiteState::empty(),
                Some(Mutex::new(RbacState::new(&spec.owner_email))),
            ),
        };
        Site {
            name: spec.name.clone(),
            key_digest: Mutex::new(digest(spec.api_key.expose())),
            state: Mutex::new(state),
            rbac,
            injector: Mutex::new(Injector::new(Faults::default())),
            counters: Default::default(),
            executed: Default::default(),
        }
    }

    fn kind(&self) -> SiteKind {
        if self.rbac.is_some() {
            SiteKind::Rbac
        } else {
            SiteKind::V1
        }
    }

    fn key_matches(&self, key: &str) -> bool {
        bool::from(lock(&self.key_digest).ct_eq(&digest(key)))
    }

    fn counter(&self, call: CallKind, test_mode: bool) -> Option<&AtomicU64> {
        self.counters
            .get(kind_index(call))
            .and_then(|pair| pair.get(usize::from(test_mode)))
    }

    fn executed_counter(&self, call: CallKind, test_mode: bool) -> Option<&AtomicU64> {
        self.executed
            .get(kind_index(call))
            .and_then(|pair| pair.get(usize::from(test_mode)))
    }
}

struct Inner {
    sites: BTreeMap<String, Site>,
    epoch: Instant,
    log: Mutex<CallLog>,
    /// True once a `serve` was told to stop: calls waiting on latency or a hang end with 503
    /// at once, so the graceful shutdown does not wait for them.
    stopping: tokio::sync::watch::Sender<bool>,
}

struct CallLog {
    records: VecDeque<CallRecord>,
    next_seq: u64,
    capacity: usize,
}

/// The emulator: cheap to clone (an `Arc` inside); every clone sees the same sites.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("sites", &self.site_names())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// An emulator serving these sites, each with its owner and the built-in groups. A later
    /// spec with the same name replaces an earlier one.
    pub fn new(sites: Vec<SiteSpec>) -> Emulator {
        Self::with_call_log_capacity(sites, DEFAULT_CALL_LOG_CAPACITY)
    }

    /// Like [`Emulator::new`], keeping at most `capacity` call records (oldest dropped first).
    pub fn with_call_log_capacity(sites: Vec<SiteSpec>, capacity: usize) -> Emulator {
        sites
            .into_iter()
            .fold(Emulator::builder(), EmulatorBuilder::site)
            .call_log_capacity(capacity)
            .build()
    }

    /// An emulator of v1 and RBAC sites: `Emulator::builder().site(a).rbac_site(b).build()`.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            sites: Vec::new(),
            capacity: DEFAULT_CALL_LOG_CAPACITY,
        }
    }

    fn from_sites(sites: &[(SiteSpec, SiteKind)], capacity: usize) -> Emulator {
        let sites = sites
            .iter()
            .map(|(spec, kind)| (spec.name.clone(), Site::of_kind(spec, *kind)))
            .collect();
        Emulator {
            inner: Arc::new(Inner {
                sites,
                epoch: Instant::now(),
                log: Mutex::new(CallLog {
                    records: VecDeque::new(),
                    next_seq: 1,
                    capacity,
                }),
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// The partner API (`/api/v1/...`, `/api/v2/...`) and the admin API (`/_emulator/...`).
    pub fn router(&self) -> axum::Router {
        router::partner_routes()
            .nest("/_emulator", admin::routes())
            .fallback(router::not_found)
            .with_state(self.clone())
    }

    /// Binds `127.0.0.1:0` and serves in a background task until the handle is dropped.
    pub async fn spawn(self) -> std::io::Result<RunningEmulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let emulator = self.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(err) = self.serve(listener, shutdown).await {
                tracing::warn!(error = %err, "partner emulator stopped");
            }
        });
        Ok(RunningEmulator {
            addr,
            base_url: format!("http://{addr}"),
            emulator,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Serves on `listener` until `shutdown` resolves. Then calls waiting on injected latency or a
    /// hang are answered 503 at once, and other requests in flight get a few seconds at most.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::trace!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        self.inner.stopping.send_replace(false);
        let mut stop_rx = self.inner.stopping.subscribe();
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
        let server = std::future::IntoFuture::into_future(server);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                self.inner.stopping.send_replace(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(result) => result,
                    Err(_) => Ok(()),
                }
            }
        }
    }

    fn site(&self, name: &str) -> Option<&Site> {
        self.inner.sites.get(name)
    }

    /// A v1 site by name (`None` for an unknown or RBAC site).
    fn v1_site(&self, name: &str) -> Option<&Site> {
        self.site(name).filter(|site| site.kind() == SiteKind::V1)
    }

    /// The names of all sites.
    pub fn site_names(&self) -> Vec<String> {
        self.inner.sites.keys().cloned().collect()
    }

    /// A site's kind; `None` for an unknown site.
    pub fn site_kind(&self, site: &str) -> Option<SiteKind> {
        self.site(site).map(Site::kind)
    }

    /// Replaces a site's faults: a fresh generator from `faults.seed`, a full token bucket and
    /// the whole script. False for an unknown site.
    pub fn set_faults(&self, site: &str, faults: Faults) -> bool {
        match self.site(site) {
            Some(site) => {
                *lock(&site.injector) = Injector::new(faults);
                true
            }
            None => false,
        }
    }

    /// Changes the API key the site accepts (an operator rotating the key in the vendor's
    /// UI); `false` for an unknown site. The key is kept as its digest only.
    pub fn set_site_key(&self, site: &str, api_key: &str) -> bool {
        match self.site(site) {
            Some(site) => {
                *lock(&site.key_digest) = digest(api_key);
                true
            }
            None => false,
        }
    }

    /// A site's faults as last set.
    pub fn faults(&self, site: &str) -> Option<Faults> {
        self.site(site)
            .map(|site| lock(&site.injector).faults().clone())
    }

    /// Replaces a site's switches. False for an unknown site.
    pub fn set_switches(&self, site: &str, switches: Switches) -> bool {
        match self.site(site) {
            Some(site) => {
                lock(&site.state).switches = switches;
                true
            }
            None => false,
        }
    }

    /// A site's switches.
    pub fn switches(&self, site: &str) -> Option<Switches> {
        self.site(site)
            .map(|site| lock(&site.state).switches.clone())
    }

    /// Every call still in the log, in the order they finished.
    pub fn call_log(&self) -> Vec<CallRecord> {
        lock(&self.inner.log).records.iter().cloned().collect()
    }

    /// Empties the call log (counters are kept).
    pub fn clear_call_log(&self) {
        lock(&self.inner.log).records.clear();
    }

    /// Every non-zero counter, ordered by site, call and test mode.
    pub fn counters(&self) -> Vec<CallCount> {
        let mut out = Vec::new();
        for site in self.inner.sites.values() {
            for call in CallKind::ALL {
                for test_mode in [false, true] {
                    let count = self.count(&site.name, call, test_mode);
                    if count > 0 {
                        out.push(CallCount {
                            site: site.name.clone(),
                            call,
                            test_mode,
                            count,
                        });
                    }
                }
            }
        }
        out
    }

    /// How many authenticated calls of this kind and test mode a site received.
    pub fn count(&self, site: &str, call: CallKind, test_mode: bool) -> u64 {
        self.site(site)
            .and_then(|site| site.counter(call, test_mode))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// How many calls of this kind and test mode reached the site's data: authenticated and
    /// not answered by an injected fault (429s, 5xx and hangs are not counted; a dropped answer
    /// is, since the work was done).
    pub fn count_executed(&self, site: &str, call: CallKind, test_mode: bool) -> u64 {
        self.site(site)
            .and_then(|site| site.executed_counter(call, test_mode))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A v1 site's users, ordered by email (case-insensitively). Empty for an unknown or RBAC
    /// site (see [`Emulator::rbac_users`]).
    pub fn users(&self, site: &str) -> Vec<PartnerUser> {
        self.v1_site(site)
            .map(|site| lock(&site.state).users())
            .unwrap_or_default()
    }

    /// One user of a v1 site, by email matched case-insensitively.
    pub fn user(&self, site: &str, email: &str) -> Option<PartnerUser> {
        self.v1_site(site)
            .and_then(|site| lock(&site.state).user(email).cloned())
    }

    /// A v1 site's groups, ordered by name (case-insensitively). Empty for an unknown or RBAC
    /// site.
    pub fn groups(&self, site: &str) -> Vec<PartnerGroup> {
        self.v1_site(site)
            .map(|site| lock(&site.state).groups())
            .unwrap_or_default()
    }

    /// Inserts or replaces a user without a call (test seeding); `All Users` is added to its
    /// groups when missing; group names are not checked. False for an unknown or RBAC site.
    pub fn insert_user(&self, site: &str, user: PartnerUser) -> bool {
        match self.v1_site(site) {
            Some(site) => {
                lock(&site.state).put_user(user);
                true
            }
            None => false,
        }
    }

    /// Inserts or replaces (by name, case-insensitively) a group without a call (test seeding).
    /// False for an unknown or RBAC site.
    pub fn insert_group(&self, site: &str, group: PartnerGroup) -> bool {
        match self.v1_site(site) {
            Some(site) => {
                lock(&site.state).put_group(group);
                true
            }
            None => false,
        }
    }

    /// Sleeps, unless a shutdown comes first (then false).
    async fn sleep_unless_stopping(&self, duration: Duration) -> bool {
        let mut stopping = self.inner.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn push_record(&self, mut record: CallRecord) {
        let mut log = lock(&self.inner.log);
        record.seq = log.next_seq;
        log.next_seq += 1;
        if log.capacity == 0 {
            return;
        }
        while log.records.len() >= log.capacity {
            log.records.pop_front();
        }
        log.records.push_back(record);
    }
}

/// Builds an [`Emulator`] of v1 and RBAC sites (from [`Emulator::builder`]). A later site with
/// the same name replaces an earlier one, whatever their kinds.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    sites: Vec<(SiteSpec, SiteKind)>,
    capacity: usize,
}

impl EmulatorBuilder {
    /// Adds a v1 site (users and groups).
    pub fn site(self, spec: SiteSpec) -> Self {
        self.site_of_kind(spec, SiteKind::V1)
    }

    /// Adds an RBAC site (users v2 and roles).
    pub fn rbac_site(self, spec: SiteSpec) -> Self {
        self.site_of_kind(spec, SiteKind::Rbac)
    }

    /// Adds a site of the given kind.
    pub fn site_of_kind(mut self, spec: SiteSpec, kind: SiteKind) -> Self {
        self.sites.push((spec, kind));
        self
    }

    /// Keeps at most `capacity` call records (oldest dropped first); default
    /// [`DEFAULT_CALL_LOG_CAPACITY`].
    pub fn call_log_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    pub fn build(self) -> Emulator {
        Emulator::from_sites(&self.sites, self.capacity)
    }
}

/// An emulator serving on loopback in a background task; dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    pub emulator: Emulator,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningEmulator {
    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_spec_parses_name_key_and_owner() {
        let s = SiteSpec::parse("acme:k3y").unwrap();
        assert_eq!((s.name.as_str(), s.api_key.expose()), ("acme", "k3y"));
        assert_eq!(s.owner_email, "owner@acme.example.com");
        let s = SiteSpec::parse("acme:a:b:boss@acme.io").unwrap();
        assert_eq!(
            (s.api_key.expose(), s.owner_email.as_str()),
            ("a:b", "boss@acme.io")
        );
        assert!(SiteSpec::parse("acme").is_err());
        assert!(SiteSpec::parse(":key").is_err());
        let err = SiteSpec::parse("bad name:s3cr3t").unwrap_err();
        assert!(!err.contains("s3cr3t"));
        assert!(SiteSpec::parse("acme:").is_err());
    }

    #[test]
    fn keys_compare_by_digest() {
        let site = Site::new(&SiteSpec::parse("acme:k3y").unwrap());
        assert!(site.key_matches("k3y"));
        assert!(!site.key_matches("k3y "));
        assert!(!site.key_matches(""));
    }

    #[test]
    fn call_log_is_bounded() {
        let em = Emulator::with_call_log_capacity(vec![SiteSpec::parse("a:b").unwrap()], 2);
        for _ in 0..3 {
            em.push_record(CallRecord {
                seq: 0,
                site: "a".into(),
                call: CallKind::ListUsers,
                test_mode: false,
                email: None,
                group: None,
                status: 200,
                started_us: 0,
                finished_us: 0,
            });
        }
        let seqs: Vec<u64> = em.call_log().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }
}
