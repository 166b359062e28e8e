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

mod circuit;
mod limiter;
mod retry;

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
pub use self::limiter::{Limiter, Saturated};
pub use self::retry::{Budget, FullJitter};
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
}

/// The default observer: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl CallObserver for NoopObserver {
    fn observe(&self, _event: &CallEvent<'_>) {}
}

/// The client of one partner site. Clones share the connection pool, limits and circuit.
#[derive(Clone)]
pub struct PartnerClient {
    inner: Arc<Inner>,
    sleeper: Arc<dyn Sleeper>,
    observer: Arc<dyn CallObserver>,
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
            }),
            sleeper: Arc::new(TokioSleeper),
            observer: Arc::new(NoopObserver),
        })
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

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// True while the site's circuit rejects calls.
    pub fn circuit_open(&self) -> bool {
        self.inner.circuit.is_open(Instant::now())
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

    // -----------------------------------------------------------------------------------------
    // The ten calls

    /// `GET /api/v1/users`.
    pub async fn list_users(&self) -> Result<Vec<PartnerUser>, PartnerError> {
        let call = CallKind::ListUsers;
        let req = self.prepare(
            call,
            Method::GET,
            wire::users_url(&self.inner.base_url),
            None,
        )?;
        let users = self
            .execute(req, |b| parse_nonblank(b, wire::parse_users))
            .await?;
        users.ok_or_else(|| self.blank_body(call))
    }

    /// `GET /api/v1/users` + `HTTP-X-EMAIL`; `Ok(None)` on 404.
    pub async fn get_user(&self, email: &str) -> Result<Option<PartnerUser>, PartnerError> {
        let call = CallKind::GetUser;
        let mut req = self.prepare(
            call,
            Method::GET,
            wire::users_url(&self.inner.base_url),
            None,
        )?;
        req.email = Some(self.email_header(call, email)?);
        let wanted = email.to_owned();
        let found = self
            .execute(req, move |b| {
                parse_nonblank(b, |b| wire::parse_user_matching(b, &wanted))
            })
            .await;
        match found {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/users?test_mode=...`.
    pub async fn create_user(
        &self,
        user: &NewUser,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        let call = CallKind::CreateUser;
        self.check_email(call, &user.email)?;
        self.check_email(call, &user.invited_by_email)?;
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::CreateUserBody {
                first_name: &user.first_name,
                last_name: &user.last_name,
                email: &user.email,
                groups: &user.groups,
                invited_by_email: &user.invited_by_email,
            };
            self.prepare_write(
                call,
                Method::POST,
                wire::users_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        let created = self
            .execute(req, |b| parse_nonblank(b, wire::parse_user))
            .await?;
        // A blank answer is success: the user is what we asked for.
        Ok(created.unwrap_or_else(|| PartnerUser {
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            groups: user.groups.clone(),
        }))
    }

    /// `PUT /api/v1/users?test_mode=...` + `HTTP-X-EMAIL`.
    pub async fn update_user(
        &self,
        email: &str,
        update: &UserUpdate,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        let call = CallKind::UpdateUser;
        let header = self.email_header(call, email)?;
        if let Some(new_email) = &update.email {
            self.check_email(call, new_email)?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let mut req = {
            let body = wire::UpdateUserBody {
                email: update.email.as_deref(),
                first_name: update.first_name.as_deref(),
                last_name: update.last_name.as_deref(),
                groups: update.groups.as_deref(),
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire::users_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        req.email = Some(header);
        if let Some(user) = self
            .execute(req, |b| parse_nonblank(b, wire::parse_user))
            .await?
        {
            return Ok(user);
        }
        // A blank answer is success; read the user back (a dry run changed nothing: overlay).
        let key = match (&update.email, test_mode) {
            (Some(new_email), false) => new_email.as_str(),
            _ => email,
        };
        let mut user = self
            .get_user(key)
            .await?
            .ok_or_else(|| self.blank_body(call))?;
        if test_mode {
            if let Some(v) = &update.email {
                user.email.clone_from(v);
            }
            if let Some(v) = &update.first_name {
                user.first_name.clone_from(v);
            }
            if let Some(v) = &update.last_name {
                user.last_name.clone_from(v);
            }
            if let Some(v) = &update.groups {
                user.groups.clone_from(v);
            }
        }
        Ok(user)
    }

    /// `DELETE /api/v1/users?test_mode=...` + `HTTP-X-EMAIL`. Any 2xx is success, body or not.
    pub async fn delete_user(&self, email: &str, test_mode: bool) -> Result<(), PartnerError> {
        let call = CallKind::DeleteUser;
        let header = self.email_header(call, email)?;
        let mut req = self.prepare_write::<()>(
            call,
            Method::DELETE,
            wire::users_url(&self.inner.base_url),
            test_mode,
            None,
        )?;
        req.email = Some(header);
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }

    /// `GET /api/v1/groups`.
    pub async fn list_groups(&self) -> Result<Vec<PartnerGroup>, PartnerError> {
        let call = CallKind::ListGroups;
        let req = self.prepare(
            call,
            Method::GET,
            wire::groups_url(&self.inner.base_url),
            None,
        )?;
        let groups = self
            .execute(req, |b| parse_nonblank(b, wire::parse_groups))
            .await?;
        groups.ok_or_else(|| self.blank_body(call))
    }

    /// `GET /api/v1/groups/<name>`; `Ok(None)` on 404.
    pub async fn get_group(&self, name: &str) -> Result<Option<PartnerGroup>, PartnerError> {
        let call = CallKind::GetGroup;
        let req = self.prepare(
            call,
            Method::GET,
            wire::group_url(&self.inner.base_url, name),
            None,
        )?;
        match self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await
        {
            Ok(Some(group)) => Ok(Some(group)),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/groups?test_mode=...`.
    pub async fn create_group(
        &self,
        group: &NewGroup,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        let call = CallKind::CreateGroup;
        wire::validate_group_name(&group.name).map_err(|m| self.invalid(call, m))?;
        if let Some(by) = &group.created_by_email {
            self.check_email(call, by)?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::CreateGroupBody {
                name: &group.name,
                access: group.access,
                created_by_email: group.created_by_email.as_deref(),
            };
            self.prepare_write(
                call,
                Method::POST,
                wire::groups_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        let created = self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await?;
        Ok(created.unwrap_or_else(|| PartnerGroup {
            name: group.name.clone(),
            access: group.access,
        }))
    }

    /// `PUT /api/v1/groups/<name>?test_mode=...`.
    pub async fn update_group(
        &self,
        name: &str,
        update: &GroupUpdate,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        let call = CallKind::UpdateGroup;
        if let Some(new_name) = &update.name {
            wire::validate_group_name(new_name).map_err(|m| self.invalid(call, m))?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::UpdateGroupBody {
                name: update.name.as_deref(),
                access: update.access,
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire::group_url(&self.inner.base_url, name),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(group) = self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await?
        {
            return Ok(group);
        }
        let key = match (&update.name, test_mode) {
            (Some(new_name), false) => new_name.as_str(),
            _ => name,
        };
        let mut group = self
            .get_group(key)
            .await?
            .ok_or_else(|| self.blank_body(call))?;
        if test_mode {
            if let Some(v) = &update.name {
                group.name.clone_from(v);
            }
            if let Some(v) = update.access {
                group.access = v;
            }
        }
        Ok(group)
    }

    /// `DELETE /api/v1/groups/<name>?test_mode=...`. Any 2xx is success, body or not.
    pub async fn delete_group(&self, name: &str, test_mode: bool) -> Result<(), PartnerError> {
        let call = CallKind::DeleteGroup;
        let req = self.prepare_write::<()>(
            call,
            Method::DELETE,
            wire::group_url(&self.inner.base_url, name),
            test_mode,
            None,
        )?;
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }

    // -----------------------------------------------------------------------------------------
    // Building requests (all validation happens here, before any traffic)

    fn invalid(&self, call: CallKind, message: impl Into<String>) -> PartnerError {
        PartnerError::local(PartnerErrorKind::Invalid, call, &self.inner.site, message)
    }

    fn blank_body(&self, call: CallKind) -> PartnerError {
        self.invalid(
            call,
            "the partner answered 2xx without the body this call needs",
        )
    }

    fn check_email(&self, call: CallKind, email: &str) -> Result<(), PartnerError> {
        wire::validate_email(email).map_err(|m| self.invalid(call, m))
    }

    fn email_header(&self, call: CallKind, email: &str) -> Result<HeaderValue, PartnerError> {
        wire::email_header_value(email).map_err(|m| self.invalid(call, m))
    }

    fn prepare(
        &self,
        call: CallKind,
        method: Method,
        url: Result<Url, String>,
        body: Option<Bytes>,
    ) -> Result<Prepared, PartnerError> {
        let url = url.map_err(|m| self.invalid(call, m))?;
        Ok(Prepared {
            call,
            method,
            url,
            email: None,
            body,
        })
    }

    fn prepare_write<B: Serialize>(
        &self,
        call: CallKind,
        method: Method,
        url: Result<Url, String>,
        test_mode: bool,
        body: Option<&B>,
    ) -> Result<Prepared, PartnerError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(|e| self.invalid(call, format!("cannot encode the request body: {e}")))?;
        let url = url.map(|u| wire::with_test_mode(u, test_mode));
        self.prepare(call, method, url, body)
    }

    // -----------------------------------------------------------------------------------------
    // Sending

    /// Runs one call: circuit, retries, limits, classification. `parse` reads a 2xx body
    /// (`Ok(None)` for a blank one); a body cut short is transient and retried.
    fn execute<'a, T: Send + 'a>(
        &'a self,
        req: Prepared,
        parse: impl Fn(&[u8]) -> Result<Parsed<T>, ParseError> + Send + Sync + 'a,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Parsed<T>, PartnerError>> + Send + 'a>,
    > {
        // Boxed as `dyn Future + Send`: the retry combinator's closures otherwise leave rustc
        // unable to prove the caller's future Send when it runs in a spawned task.
        let parse: Box<ParseFn<'a, T>> = Box::new(parse);
        Box::pin(async move { self.execute_inner(req, &*parse).await })
    }

    async fn execute_inner<T: Send>(
        &self,
        req: Prepared,
        parse: &ParseFn<'_, T>,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let call = req.call;
        let span = tracing::info_span!(
            "partner_call",
            site = %inner.site,
            call = %call,
            status = Empty,
            attempt = Empty,
            latency_ms = Empty,
        );
        async {
            // A call that may not wait (an opportunistic read) leaves a partner that asked for
            // a pause alone: its capacity goes to the calls that must be made.
            if let Some(e) = self.paused_for_optional(call) {
                return Err(e);
            }
            let ticket = inner.circuit.ticket(Instant::now());
            let admission = ticket.admission();
            if let Admission::Reject { retry_after } = admission {
                tracing::warn!(
                    retry_after_ms = retry_after.as_millis() as u64,
                    "circuit open, call rejected"
                );
                self.observe(call, 0, None, CallOutcome::Rejected, Duration::ZERO);
                let mut e = PartnerError::local(
                    PartnerErrorKind::Unavailable,
                    call,
                    &inner.site,
                    "the site's circuit is open after repeated transient failures",
                );
                e.retry_after = Some(retry_after);
                return Err(e);
            }
            // The half-open probe is a single attempt: its job is to learn, not to insist.
            let max_attempts = match admission {
                Admission::Probe => 1,
                _ => inner.options.max_attempts,
            };
            let attempts = AtomicU32::new(0);
            let result = self
                .with_retries(&req, parse, max_attempts, &attempts)
                .await;
            self.finish(call, ticket, result, attempts.load(Ordering::Relaxed))
        }
        .instrument(span)
        .await
    }

    /// For a call that may not wait (an opportunistic read) while the partner asked for a
    /// pause: the error that leaves the partner alone.
    fn paused_for_optional(&self, call: CallKind) -> Option<PartnerError> {
        if !super::patience::remaining().is_zero() {
            return None;
        }
        let busy = *self
            .inner
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let until = busy.filter(|u| *u > Instant::now())?;
        let mut e = PartnerError::local(
            PartnerErrorKind::Unavailable,
            call,
            &self.inner.site,
            "the partner asked for a pause; an optional call is not sent",
        );
        e.retry_after = Some(until - Instant::now());
        Some(e)
    }

    /// Up to `max_attempts` attempts with jittered backoff, within the call deadline and what
    /// the request may wait; counts the attempts sent in `attempts`.
    async fn with_retries<T: Send>(
        &self,
        req: &Prepared,
        parse: &ParseFn<'_, T>,
        max_attempts: u32,
        attempts: &AtomicU32,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let budget = Budget::new(Duration::from_millis(inner.options.call_deadline_ms));
        let backoff = FullJitter::new(
            Duration::from_millis(inner.options.backoff_base_ms),
            Duration::from_millis(inner.options.backoff_max_ms),
            max_attempts - 1,
        );
        // A plain loop rather than a retry combinator: its closures made rustc unable to
        // prove the future `Send` inside spawned tasks.
        let mut backoff = backoff;
        loop {
            let started = Instant::now();
            let r = self.attempt(req, attempts, budget.remaining(), parse).await;
            budget.spend(started.elapsed());
            let e = match r {
                Ok(v) => break Ok(v),
                Err(e) if !e.is_retryable() => break Err(e),
                Err(e) => e,
            };
            if let Some(pause) = e.retry_after.filter(|_| e.status.is_some()) {
                *inner.busy_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + pause);
            }
            let Some(next) = backoff.next() else {
                break Err(e);
            };
            // `Retry-After` is a floor under the jittered wait; never wait past the deadline,
            // nor past what an IdP's request may wait (it answers 503 + Retry-After instead).
            let wait = next.max(e.retry_after.unwrap_or_default());
            if wait >= super::patience::remaining() {
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    "no retry: the request may not wait that long"
                );
                break Err(e);
            }
            if !budget.reserve_wait(wait) {
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    "no retry: the wait would pass the call deadline"
                );
                break Err(e);
            }
            super::patience::spend(wait);
            tracing::info!(
                error = %e.message,
                status = e.status,
                retry_in_ms = wait.as_millis() as u64,
                "transient partner failure, retrying"
            );
            self.sleeper.sleep(wait).await;
        }
    }

    /// Records a finished call (circuit, call record, log) and returns its result with the
    /// attempts it sent.
    fn finish<T>(
        &self,
        call: CallKind,
        ticket: circuit::Ticket,
        result: Result<T, PartnerError>,
        sent: u32,
    ) -> Result<T, PartnerError> {
        let inner = &self.inner;
        let outcome = match &result {
            Ok(_) => Outcome::Answered,
            Err(e) if e.kind == PartnerErrorKind::Transient => Outcome::Failed,
            Err(e) if e.kind == PartnerErrorKind::Unavailable => Outcome::Neutral,
            Err(_) => Outcome::Answered,
        };
        ticket.record(outcome, Instant::now());
        super::record::record(super::record::CallRecord {
            site: inner.site.clone(),
            call: call.as_str(),
            outcome: match &result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.kind.to_string(),
            },
            status: result.as_ref().err().and_then(|e| e.status),
            attempts: sent,
        });
        result.map_err(|mut e| {
            e.attempts = sent;
            if e.kind == PartnerErrorKind::Auth {
                tracing::error!(status = e.status, error = %e.message, "partner refused the site's credentials or the change");
            } else if e.kind == PartnerErrorKind::NotFound {
                // An answer, not a failure: lookups before creates expect it.
                tracing::debug!(status = e.status, attempts = sent, error = %e.message, "partner: not found");
            } else {
                tracing::warn!(kind = %e.kind, status = e.status, attempts = sent, error = %e.message, "partner call failed");
            }
            e
        })
    }

    /// One HTTP attempt.
    async fn attempt<T: Send>(
        &self,
        req: &Prepared,
        attempts: &AtomicU32,
        remaining: Duration,
        parse: &ParseFn<'_, T>,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let call = req.call;
        let waited = Instant::now();
        let acquired = inner
            .limiter
            .acquire_paced(remaining, super::patience::remaining())
            .await;
        let _permit = match acquired {
            Ok(p) => p,
            Err(saturated) => {
                self.observe(call, 0, None, CallOutcome::Rejected, Duration::ZERO);
                let (message, retry_after) = match saturated {
                    Saturated::Concurrency => (
                        "no concurrency slot for this site before the call deadline",
                        None,
                    ),
                    Saturated::Rate(w) => {
                        ("the local rate limit for this site is saturated", Some(w))
                    }
                };
                let mut e =
                    PartnerError::local(PartnerErrorKind::Unavailable, call, &inner.site, message);
                e.retry_after = retry_after;
                return Err(e);
            }
        };
        // Counted only once a request really goes out.
        let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let remaining = remaining.saturating_sub(waited.elapsed());
        let timeout = Duration::from_millis(inner.options.request_timeout_ms).min(remaining);
        let started = Instant::now();
        let mut builder = inner
            .http
            .request(req.method.clone(), req.url.clone())
            .header(wire::PARTNER_AUTH_HEADER.clone(), inner.auth.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(wire::CONTENT_TYPE_JSON),
            )
            .timeout(timeout);
        if let Some(email) = &req.email {
            builder = builder.header(wire::EMAIL_HEADER.clone(), email.clone());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let result = self.send(builder, call, timeout, parse).await;
        let latency = started.elapsed();
        let span = tracing::Span::current();
        let status = match &result {
            Ok((status, _)) => Some(*status),
            Err(e) => e.status,
        };
        span.record("attempt", n);
        span.record("latency_ms", latency.as_millis() as u64);
        if let Some(s) = status {
            span.record("status", s);
        }
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => CallOutcome::Failed(e.kind),
        };
        self.observe(call, n, status, outcome, latency);
        tracing::debug!(
            attempt = n,
            status,
            latency_ms = latency.as_millis() as u64,
            "partner attempt"
        );
        result.map(|(_, parsed)| parsed)
    }

    async fn send<T>(
        &self,
        builder: reqwest::RequestBuilder,
        call: CallKind,
        timeout: Duration,
        parse: &ParseFn<'_, T>,
    ) -> Result<(u16, Parsed<T>), PartnerError> {
        let transport = |e: reqwest::Error, status: Option<u16>| {
            let what = if e.is_timeout() {
                format!("no complete answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("cannot connect: {}", error_chain(&e))
            } else if e.is_body() || e.is_decode() {
                format!("the answer was cut short: {}", error_chain(&e))
            } else {
                format!("request failed: {}", error_chain(&e))
            };
            PartnerError {
                kind: PartnerErrorKind::Transient,
                call,
                site: self.inner.site.clone(),
                status,
                message: self.redact(what),
                retry_after: None,
                attempts: 0,
            }
        };
        let response = builder.send().await.map_err(|e| transport(e, None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(&wire::RETRY_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await;
        if status.is_success() {
            let body = body.map_err(|e| transport(e, Some(status.as_u16())))?;
            return match parse(&body) {
                Ok(parsed) => Ok((status.as_u16(), parsed)),
                Err(pe) => Err(PartnerError {
                    kind: if pe.truncated {
                        PartnerErrorKind::Transient
                    } else {
                        PartnerErrorKind::Invalid
                    },
                    call,
                    site: self.inner.site.clone(),
                    status: Some(status.as_u16()),
                    message: self.redact(pe.message),
                    retry_after: None,
                    attempts: 0,
                }),
            };
        }
        // An error body that cannot be read still has a status to classify.
        let body = body.unwrap_or_default();
        let mut message = wire::error_message(&body);
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("no error text")
                .to_owned();
        }
        if status.is_redirection() {
            message = format!("unexpected redirect (not followed): {message}");
        }
        let kind =
            PartnerErrorKind::from_status(status.as_u16(), wire::message_says_exists(&message));
        Err(PartnerError {
            kind,
            call,
            site: self.inner.site.clone(),
            status: Some(status.as_u16()),
            message: self.redact(message),
            retry_after,
            attempts: 0,
        })
    }

    fn observe(
        &self,
        call: CallKind,
        attempt: u32,
        status: Option<u16>,
        outcome: CallOutcome,
        latency: Duration,
    ) {
        self.observer.observe(&CallEvent {
            site: &self.inner.site,
            call,
            attempt,
            status,
            outcome,
            latency,
        });
    }

    /// Removes the API key from text that came from the network, in case a server echoes it.
    fn redact(&self, text: String) -> String {
        let key = self.inner.api_key.expose();
        if !key.is_empty() && text.contains(key) {
            text.replace(key, "***")
        } else {
            text
        }
    }
}

fn parse_nonblank<T>(
    body: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, ParseError>,
) -> Result<Parsed<T>, ParseError> {
    if wire::is_blank(body) {
        Ok(None)
    } else {
        parse(body).map(Some)
    }
}

/// An error and its sources on one line (reqwest's own message is often just "error sending
/// request"). Never contains header values: reqwest errors carry the URL at most.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
