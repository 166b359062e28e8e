//! The partner client: every call the bridge makes to a Periscope Data / Sisense for Cloud Data
//! Teams site goes through [`PartnerClient`] (`DESIGN.md` section 5).
//!
//! One client per site, cheap to clone. Per call: validate what will go into headers and paths
//! (before any network traffic), ask the site's circuit, then attempt with retries. Per attempt:
//! take a concurrency slot and a rate-limit token, send with a per-attempt timeout, classify.
//! Transient failures (429, 5xx, timeouts, connection errors, bodies cut short) are retried with
//! full-jitter exponential backoff, `Retry-After` as a floor, within `max_attempts` and the call
//! deadline. Writes are retried too: the bridge's flows are idempotent by design (a create that
//! did land answers 409 on the retry, which the bridge treats as "already there").
//!
//! Wire details (paths, header and field names, tolerant parsing) live in [`crate::partner::wire`].
//! The API key travels only in a header value marked sensitive and never appears in spans, logs
//! or errors.

mod calls;
mod circuit;
mod history;
mod limiter;
mod links;
mod rbac_calls;
mod retry;
mod roles;
mod transport;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Method;
use serde::{Deserialize, Serialize};
use tracing::field::Empty;
use tracing::Instrument;
use url::Url;

pub use self::circuit::{Admission, Circuit, Outcome};
pub use self::history::{CallHistory, MinuteCalls};
pub use self::limiter::{Limiter, Saturated};
pub use self::links::{Link, LinkFuture, LinkKind, MemoryLinks, SiteLinks};
pub use self::rbac_calls::{NewRole, NewUserV2, UserUpdateV2};
pub use self::retry::{Budget, FullJitter};
pub use self::roles::RoleSite;
use crate::partner::error::{PartnerError, PartnerErrorKind};
use crate::partner::wire::{self, ParseError};
use crate::partner::{Access, CallKind, PartnerGroup, PartnerUser};
use crate::secret::Secret;

/// Reads a 2xx body (`Ok(None)` for a blank one). A trait object, not a generic, so the
/// futures built around it are provably `Send` for every lifetime (spawned tasks need that).
type ParseFn<'a, T> = dyn Fn(&[u8]) -> Result<Parsed<T>, ParseError> + Send + Sync + 'a;

/// Where a site lives and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct SiteConnection {
    /// `https://api.periscopedata.com` by default (see [`wire::DEFAULT_BASE_URL`]).
    pub base_url: Url,
    /// The `/app/<site>/` segment of the site's dashboard URLs.
    pub site_name: String,
    pub api_key: Secret,
}

/// Timeouts, retries and limits of a site's client. Durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClientOptions {
    /// Timeout of one HTTP attempt, connect to last body byte.
    pub request_timeout_ms: u64,
    /// Total time of one call: attempts, waits for slots and tokens, and backoff.
    pub call_deadline_ms: u64,
    /// HTTP attempts per call, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before retry `n` is random in `0..=min(backoff_max_ms, backoff_base_ms * 2^n)`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Attempts in flight at once to this site.
    pub max_concurrency: usize,
    /// Token bucket: attempts per second (0 disables it) and burst.
    pub rate_per_second: f64,
    pub burst: u32,
    /// Consecutive transient calls that open the circuit (0 disables it).
    pub circuit_failure_threshold: u32,
    /// How long an open circuit rejects calls before letting a probe through.
    pub circuit_open_ms: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout_ms: 10_000,
            call_deadline_ms: 30_000,
            max_attempts: 6,
            backoff_base_ms: 200,
            backoff_max_ms: 10_000,
            max_concurrency: 8,
            rate_per_second: 20.0,
            burst: 20,
            circuit_failure_threshold: 5,
            circuit_open_ms: 30_000,
        }
    }
}

impl ClientOptions {
    fn validate(&self) -> Result<(), String> {
        if self.request_timeout_ms == 0 {
            return Err("request_timeout_ms must be positive".into());
        }
        if self.call_deadline_ms == 0 {
            return Err("call_deadline_ms must be positive".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.max_concurrency == 0 {
            return Err("max_concurrency must be at least 1".into());
        }
        if !self.rate_per_second.is_finite() || self.rate_per_second < 0.0 {
            return Err("rate_per_second must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Group names; the partner adds `All Users` itself.
    pub groups: Vec<String>,
    /// An existing user of the site (the owner by default).
    pub invited_by_email: String,
}

/// `PUT /api/v1/users`: only the `Some` fields are sent. `groups` is the full intended list
/// (the contract replaces; a merge switch exists in the emulator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub groups: Option<Vec<String>>,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub access: Access,
    pub created_by_email: Option<String>,
}

/// `PUT /api/v1/groups/<name>`: `name` renames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub access: Option<Access>,
}

/// Where retry and backoff waits go. Tests inject one that records and returns at once.
pub trait Sleeper: Send + Sync {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real sleeper.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// How one attempt (or a locally rejected call) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// 2xx, body understood.
    Success,
    /// Failed with this classification (HTTP status, if any, in [`CallEvent::status`]).
    Failed(PartnerErrorKind),
    /// Not sent: the circuit was open or no slot/token could be had in time (`attempt` is 0).
    Rejected,
}

/// One attempt, for metrics.
#[derive(Debug, Clone)]
pub struct CallEvent<'a> {
    pub site: &'a str,
    pub call: CallKind,
    /// 1-based; 0 for a call rejected before any attempt.
    pub attempt: u32,
    pub status: Option<u16>,
    pub outcome: CallOutcome,
    pub latency: Duration,
}

/// A metrics hook, called once per attempt.
pub trait CallObserver: Send + Sync {
    fn observe(&self, event: &CallEvent<'_>);
    /// The site's API key was found accepted (`true`) or refused (`false`): called when what
    /// the client knows of it changes. No default: a wrapping observer must pass it on.
    fn credentials(&self, site: &str, accepted: bool);
    /// Whether the site's circuit is open, after each call. No default, as `credentials`.
    fn circuit(&self, site: &str, open: bool);
}

/// What a client knows of its site's API key, from the partner's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// No answer yet that tells (nothing sent, or only network errors and 5xx).
    Unknown,
    /// The partner answered a call past its authentication (2xx, or a 4xx that is not about
    /// the key).
    Accepted,
    /// The partner refused the key (401, or 403 to a read): calls are pointless
    /// until the key changes (a new client) or a credential check passes.
    Refused,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Unknown => "unknown",
            KeyState::Accepted => "ok",
            KeyState::Refused => "refused",
        }
    }
}

/// The outcome of [`PartnerClient::check_credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// The partner answered past its authentication.
    Accepted,
    /// 401 (or 403): the key is refused.
    Refused,
    /// No answer that tells (network error, 5xx, circuit open, rate limit): why, without any
    /// secret.
    Unreachable(String),
}

/// The key state and how many times it changed (a worker that saw a refusal compares the
/// count after parking its row, so a check that passed meanwhile is never missed).
#[derive(Debug, Clone, Copy)]
struct KeyKnowledge {
    state: KeyState,
    epoch: u64,
}

/// The default observer: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl CallObserver for NoopObserver {
    fn observe(&self, _event: &CallEvent<'_>) {}
    fn credentials(&self, _site: &str, _accepted: bool) {}
    fn circuit(&self, _site: &str, _open: bool) {}
}

/// The client of one partner site. Clones share the connection pool, limits and circuit.
#[derive(Clone)]
pub struct PartnerClient {
    inner: Arc<Inner>,
    sleeper: Arc<dyn Sleeper>,
    observer: Arc<dyn CallObserver>,
    /// Set for an RBAC site: its calls go to the v2 user and role API.
    roles: Option<Arc<RoleSite>>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    site: String,
    api_key: Secret,
    auth: HeaderValue,
    options: ClientOptions,
    limiter: Limiter,
    circuit: Circuit,
    /// Until when the partner asked for a pause (its last 429/503 with `Retry-After`): calls
    /// that may not wait at all (see `patience`) are not sent before then.
    busy_until: std::sync::Mutex<Option<Instant>>,
    /// What the partner's answers told of the API key.
    key: std::sync::Mutex<KeyKnowledge>,
}

impl std::fmt::Debug for PartnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerClient")
            .field("site", &self.inner.site)
            .field("base_url", &self.inner.base_url.as_str())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// One request, ready to send as many times as needed.
struct Prepared {
    call: CallKind,
    method: Method,
    url: Url,
    email: Option<HeaderValue>,
    body: Option<Bytes>,
}

/// A 2xx answer's body as parsed: `None` when the body was blank.
type Parsed<T> = Option<T>;

impl PartnerClient {
    /// Builds the client of one site. Fails `Invalid` on a bad site name, key or option.
    pub fn new(site: SiteConnection, options: ClientOptions) -> Result<Self, PartnerError> {
        let invalid = |m: String| {
            PartnerError::local(
                PartnerErrorKind::Invalid,
                CallKind::ListUsers,
                &site.site_name,
                m,
            )
        };
        options.validate().map_err(invalid)?;
        let auth = wire::partner_auth_header_value(&site.site_name, site.api_key.expose())
            .map_err(invalid)?;
        if !matches!(site.base_url.scheme(), "http" | "https") {
            return Err(invalid("base_url must be http or https".into()));
        }
        let http = reqwest::Client::builder()
            // A redirect would carry the auth header to wherever it points: never follow.
            .redirect(reqwest::redirect::Policy::none())
            // The vendor examples spell headers in capitals; names are case-insensitive, but
            // title case is the closest hyper gets to them.
            .http1_title_case_headers()
            .pool_max_idle_per_host(options.max_concurrency)
            .connect_timeout(Duration::from_millis(options.request_timeout_ms))
            .user_agent(concat!("scim-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(PartnerClient {
            inner: Arc::new(Inner {
                http,
                limiter: Limiter::new(
                    options.max_concurrency,
                    options.rate_per_second,
                    options.burst,
                ),
                circuit: Circuit::new(
                    options.circuit_failure_threshold,
                    Duration::from_millis(options.circuit_open_ms),
                ),
                base_url: site.base_url,
                site: site.site_name,
                api_key: site.api_key,
                auth,
                options,
                busy_until: std::sync::Mutex::new(None),
                key: std::sync::Mutex::new(KeyKnowledge {
                    state: KeyState::Unknown,
                    epoch: 0,
                }),
            }),
            sleeper: Arc::new(TokioSleeper),
            observer: Arc::new(NoopObserver),
            roles: None,
        })
    }

    /// Makes this the client of an RBAC site (`partner-api.md` section 4): the user and group
    /// calls go to `/api/v2/users` and `/api/v1/roles`, SCIM groups mapped onto roles.
    pub fn with_roles(mut self, site: RoleSite) -> Self {
        self.roles = Some(Arc::new(site));
        self
    }

    /// Sends retry and backoff waits to `sleeper` instead of tokio's timer.
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Reports every attempt to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn site_name(&self) -> &str {
        &self.inner.site
    }

    /// The site's partner API base URL (no secret in it).
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// True while the site's circuit rejects calls.
    pub fn circuit_open(&self) -> bool {
        self.inner.circuit.is_open(Instant::now())
    }

    /// How long the open circuit still rejects calls; `None` while it is not open.
    pub fn circuit_retry_after(&self) -> Option<Duration> {
        self.inner.circuit.open_for(Instant::now())
    }

    /// What the partner's answers told of the site's API key so far.
    pub fn key_state(&self) -> KeyState {
        self.key_knowledge().0
    }

    /// True once the partner refused the site's API key, until it accepts it again.
    pub fn key_refused(&self) -> bool {
        self.key_state() == KeyState::Refused
    }

    /// The key state and how many times it changed so far.
    pub fn key_knowledge(&self) -> (KeyState, u64) {
        let k = *self.inner.key.lock().unwrap_or_else(|p| p.into_inner());
        (k.state, k.epoch)
    }

    /// Records what an answer told of the key; logs and reports a change.
    fn note_key(&self, state: KeyState) {
        let changed = {
            let mut k = self.inner.key.lock().unwrap_or_else(|p| p.into_inner());
            let changed = k.state != state;
            if changed {
                k.state = state;
                k.epoch = k.epoch.wrapping_add(1);
            }
            changed
        };
        if !changed {
            return;
        }
        match state {
            KeyState::Refused => tracing::error!(
                site = %self.inner.site,
                "the partner refused the site's API key: its work is parked until the key is fixed (and the bridge restarted) or a credential check passes"
            ),
            KeyState::Accepted => {
                tracing::info!(site = %self.inner.site, "the partner accepts the site's API key")
            }
            KeyState::Unknown => {}
        }
        if state != KeyState::Unknown {
            self.observer
                .credentials(&self.inner.site, state == KeyState::Accepted);
        }
    }

    /// Checks the site's API key with one cheap read that is not retried: a lookup of an
    /// account that cannot exist (v1: a user by a reserved `.invalid` email; RBAC: a v2 user
    /// by an id no site gives), which a partner that accepts the key answers 404.
    pub async fn check_credentials(&self) -> KeyCheck {
        const PROBE_EMAIL: &str = "credential-check@scim-bridge.invalid";
        const PROBE_ID: &str = "00000000-0000-0000-0000-000000000000";
        let read = async {
            match self.roles {
                Some(_) => self.get_user_v2(PROBE_ID).await.map(|_| ()),
                None => self.get_user(PROBE_EMAIL).await.map(|_| ()),
            }
        };
        // No retry and no waiting for limits: the check asks once.
        match crate::partner::patience::impatient(Duration::ZERO, read).await {
            Ok(()) => KeyCheck::Accepted,
            Err(e) if e.refuses_key() => KeyCheck::Refused,
            Err(e) if e.status.is_some() && e.kind != PartnerErrorKind::Transient => {
                KeyCheck::Accepted
            }
            Err(e) => KeyCheck::Unreachable(match e.status {
                Some(s) => format!("{} (HTTP {s})", e.kind),
                None => format!("{}: {}", e.kind, e.message),
            }),
        }
    }

    /// True while the partner's last 429/503 asked for a pause that has not run out.
    pub fn paused(&self) -> bool {
        let busy = *self
            .inner
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        busy.is_some_and(|u| u > Instant::now())
    }
}
