//! Prometheus metrics (DESIGN.md section 7): the metric names, the [`Metrics`] handle that
//! records them, the partner client's observer, and the `/metrics` listener of `serve`
//! (`metrics_listen`, off when absent).
//!
//! Each [`Metrics`] owns a recorder instead of installing the process-wide one the `metrics`
//! macros default to, so two bridges in one process (tests run many at once) each count only
//! their own traffic. Every recording method runs the macros against the handle's recorder
//! with `metrics::with_local_recorder`, which is synchronous and therefore safe on any thread
//! of a multi-threaded runtime. [`Metrics::off`] records nothing.
//!
//! Labels take bounded values only: tenant and site names from the configuration, route names,
//! partner call kinds, outcome classes and status codes; never a user id, an email address, a
//! raw path or anything secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::net::TcpListener;

use crate::partner::client::{CallEvent, CallObserver, CallOutcome, NoopObserver};
use crate::store::{
    OutboxAges, OutboxHealth, OutboxSiteStats, OutboxStats, PendingDeletions, Store,
};

/// SCIM requests by `tenant`, `resource`, `operation`, `status`.
pub const HTTP_REQUESTS: &str = "scim_bridge_http_requests_total";
/// Latency of SCIM requests by `tenant`, `resource`, `operation`.
pub const HTTP_DURATION: &str = "scim_bridge_http_request_duration_seconds";
/// Connections open on the SCIM listener, by `listener` (`plain`, `tls`).
pub const HTTP_OPEN_CONNECTIONS: &str = "scim_bridge_http_open_connections";
/// Connections the SCIM listener closed before a request was answered, by `listener` and
/// `reason`: `refused` (at `http.max_connections` with every connection held), `evicted` (the
/// oldest connection not serving an authenticated request, closed to make room), `header_timeout`,
/// `idle_timeout`, `send_timeout`, `handshake_timeout`.
pub const HTTP_CONNECTIONS_DROPPED: &str = "scim_bridge_http_connections_dropped_total";
/// Failed accepts on the SCIM listener (out of open files, say), by `listener`.
pub const HTTP_ACCEPT_ERRORS: &str = "scim_bridge_http_accept_errors_total";
/// Failed authentications by `tenant`, `endpoint` (`scim`, `token`, `admin`), `reason`.
pub const AUTH_FAILURES: &str = "scim_bridge_auth_failures_total";
/// Requests refused by a limit, by `tenant`, `endpoint`, `limit` (`tenant`: the tenant's
/// request budget, 429; `auth_failures`: a wrong credential from a client address that failed
/// to authenticate too often at that tenant, 429; `basic_auth`: the server's Argon2 checks of
/// Basic passwords were saturated and the credential was not checked, 503).
pub const RATE_LIMITED: &str = "scim_bridge_rate_limited_total";
/// Partner HTTP attempts by `tenant`, `site`, `call`, `outcome` (`ok`, a failure class such as
/// `transient` or `not_found`, or `rejected`: not sent, the circuit was open or no slot came).
pub const PARTNER_REQUESTS: &str = "scim_bridge_partner_requests_total";
/// Latency of partner attempts by `tenant`, `site`, `call`.
pub const PARTNER_DURATION: &str = "scim_bridge_partner_request_duration_seconds";
/// Partner attempts after the first of a call (retries), by `tenant`, `site`, `call`.
pub const PARTNER_RETRIES: &str = "scim_bridge_partner_retries_total";
/// Partner answers 429, by `tenant`, `site`, `call`.
pub const PARTNER_THROTTLED: &str = "scim_bridge_partner_throttled_total";
/// Rows in the membership engine's outbox.
pub const OUTBOX_DEPTH: &str = "scim_bridge_outbox_depth";
/// Outbox rows whose last try failed.
pub const OUTBOX_FAILING: &str = "scim_bridge_outbox_failing";
/// Seconds since the longest-waiting outbox row was marked (0 when empty).
pub const OUTBOX_OLDEST_AGE: &str = "scim_bridge_outbox_oldest_age_seconds";
/// Outbox rows parked because the process that claimed them does not serve their site.
pub const OUTBOX_PARKED: &str = "scim_bridge_outbox_parked";
/// Outbox rows whose claim's lease ran out without an outcome (a worker died mid-work).
pub const OUTBOX_OVERDUE_CLAIMS: &str = "scim_bridge_outbox_overdue_claims";
/// Users deleted in SCIM whose deletion is not yet carried out at every site.
pub const PENDING_DELETIONS: &str = "scim_bridge_pending_deletions";
/// Seconds since the oldest pending deletion was made in SCIM (0 when none).
pub const PENDING_DELETION_OLDEST_AGE: &str = "scim_bridge_pending_deletion_oldest_age_seconds";
/// 1 while the bridge is degraded (it serves, but a membership change has kept failing at the
/// partner longer than `bridge.outbox_stuck_after_s`), else 0. `/readyz` stays 200 meanwhile.
pub const DEGRADED: &str = "scim_bridge_degraded";
/// Audit entries deleted because they were older than `audit.retention_days`.
pub const AUDIT_PRUNED: &str = "scim_bridge_audit_pruned_total";
/// What the last reconciliation found, by `tenant`, `site`, `kind`.
pub const RECONCILE_DRIFT: &str = "scim_bridge_reconcile_drift";
/// Reconciliation runs by `tenant`, `outcome` (`ok`, `error`).
pub const RECONCILE_RUNS: &str = "scim_bridge_reconcile_runs_total";
/// Group member ids skipped because they are not users of the tenant
/// (`unknown_members = "skip"`), by `tenant`.
pub const UNKNOWN_MEMBERS_SKIPPED: &str = "scim_bridge_unknown_members_skipped_total";
/// 1 per partner site the process serves, by `tenant`, `site` and `api` (`groups` for a v1
/// site, `roles` for an RBAC site): joins the partner series to the kind of their site.
pub const SITE_INFO: &str = "scim_bridge_site_info";
/// Per partner site, by `tenant`, `site`: 1 while the partner accepts the site's API key, 0
/// once it refused it (a credential check or any call answered 401/403); absent until an
/// answer told, and unchanged by answers that do not tell (network errors, 5xx).
pub const PARTNER_CREDENTIALS_OK: &str = "scim_bridge_partner_credentials_ok";
/// Per partner site, by `tenant`, `site`: 1 while the site's circuit breaker is open (calls
/// rejected at once after repeated transient failures), else 0.
pub const PARTNER_CIRCUIT_OPEN: &str = "scim_bridge_partner_circuit_open";
/// Requests carrying a forwarding header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) from a
/// peer that is not in `http.trusted_proxies` (the header is ignored).
pub const UNTRUSTED_FORWARDED: &str = "scim_bridge_untrusted_forwarded_requests_total";

/// Histogram buckets of every `*_seconds` histogram: 5 ms to a minute.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// How often the listener drains histogram samples into buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a scrape waits for the outbox gauges before answering with the previous values.
const OUTBOX_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The metrics of one bridge: a cheap handle, shared by the HTTP layer, the partner clients
/// and the listener. `Metrics::default()` is [`Metrics::off`].
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Metrics {
    /// A handle that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// A handle with a recorder of its own.
    pub fn new() -> Result<Self, String> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map_err(|e| format!("cannot set up the metrics recorder: {e}"))?
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Self {
            inner: Some(Arc::new(Inner { recorder, handle })),
        };
        metrics.describe();
        Ok(metrics)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.inner
            .as_ref()
            .map(|i| i.handle.render())
            .unwrap_or_default()
    }

    /// Drains histogram samples; the listener calls it every few seconds.
    pub fn upkeep(&self) {
        if let Some(i) = &self.inner {
            i.handle.run_upkeep();
        }
    }

    fn record(&self, f: impl FnOnce()) {
        if let Some(i) = &self.inner {
            ::metrics::with_local_recorder(&i.recorder, f);
        }
    }

    fn describe(&self) {
        use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        self.record(|| {
            describe_counter!(HTTP_REQUESTS, "SCIM requests answered.");
            describe_histogram!(
                HTTP_DURATION,
                Unit::Seconds,
                "Time to answer SCIM requests."
            );
            describe_gauge!(
                HTTP_OPEN_CONNECTIONS,
                "Connections open on the SCIM listener."
            );
            describe_counter!(
                HTTP_CONNECTIONS_DROPPED,
                "Connections the SCIM listener closed early, by reason."
            );
            describe_counter!(HTTP_ACCEPT_ERRORS, "Failed accepts on the SCIM listener.");
            describe_counter!(AUTH_FAILURES, "Failed authentications, by reason.");
            describe_counter!(RATE_LIMITED, "Requests refused with 429 by a local limit.");
            describe_counter!(PARTNER_REQUESTS, "Partner API attempts, by outcome.");
            describe_histogram!(
                PARTNER_DURATION,
                Unit::Seconds,
                "Time of partner API attempts."
            );
            describe_counter!(PARTNER_RETRIES, "Partner API attempts that were retries.");
            describe_counter!(PARTNER_THROTTLED, "Partner API answers 429.");
            describe_gauge!(OUTBOX_DEPTH, "Rows in the membership engine's outbox.");
            describe_gauge!(OUTBOX_FAILING, "Outbox rows whose last try failed.");
            describe_gauge!(
                OUTBOX_OLDEST_AGE,
                Unit::Seconds,
                "Time since the longest-waiting outbox row was marked."
            );
            describe_gauge!(
                OUTBOX_PARKED,
                "Outbox rows parked for a process that serves their site."
            );
            describe_gauge!(
                OUTBOX_OVERDUE_CLAIMS,
                "Outbox rows whose claim ran out without an outcome."
            );
            describe_gauge!(
                PENDING_DELETIONS,
                "SCIM deletions not yet carried out at every site."
            );
            describe_gauge!(
                PENDING_DELETION_OLDEST_AGE,
                Unit::Seconds,
                "Time since the oldest pending deletion was made in SCIM."
            );
            describe_gauge!(
                DEGRADED,
                "1 while a membership change keeps failing past bridge.outbox_stuck_after_s."
            );
            describe_counter!(
                AUDIT_PRUNED,
                "Audit entries deleted past audit.retention_days."
            );
            describe_gauge!(RECONCILE_DRIFT, "Drift found by the last reconciliation.");
            describe_counter!(RECONCILE_RUNS, "Reconciliation runs.");
            describe_counter!(
                UNKNOWN_MEMBERS_SKIPPED,
                "Group member ids skipped because they are not users of the tenant."
            );
            describe_gauge!(
                SITE_INFO,
                "1 per partner site served; its api label is groups (v1) or roles (RBAC)."
            );
            describe_gauge!(
                PARTNER_CREDENTIALS_OK,
                "1 while the partner accepts the site's API key, 0 once it refused it."
            );
            describe_gauge!(
                PARTNER_CIRCUIT_OPEN,
                "1 while the site's circuit breaker is open."
            );
            describe_counter!(
                UNTRUSTED_FORWARDED,
                "Requests with forwarding headers from peers not in http.trusted_proxies."
            );
        });
    }

    /// One answered SCIM request.
    pub fn http_request(
        &self,
        tenant: &str,
        resource: &'static str,
        operation: &'static str,
        status: u16,
        latency: Duration,
    ) {
        self.record(|| {
            ::metrics::counter!(HTTP_REQUESTS,
                "tenant" => tenant.to_owned(),
                "resource" => resource,
                "operation" => operation,
                "status" => status.to_string(),
            )
            .increment(1);
            ::metrics::histogram!(HTTP_DURATION,
                "tenant" => tenant.to_owned(),
                "resource" => resource,
                "operation" => operation,
            )
            .record(latency.as_secs_f64());
        });
    }

    /// The number of connections open on `listener` (`plain`, `tls`).
    pub fn open_connections(&self, listener: &'static str, open: usize) {
        self.record(|| {
            ::metrics::gauge!(HTTP_OPEN_CONNECTIONS, "listener" => listener).set(open as f64);
        });
    }

    /// A connection `listener` closed early; `reason` is a fixed label such as `evicted`.
    pub fn connection_dropped(&self, listener: &'static str, reason: &'static str) {
        self.record(|| {
            ::metrics::counter!(HTTP_CONNECTIONS_DROPPED,
                "listener" => listener,
                "reason" => reason,
            )
            .increment(1);
        });
    }

    /// A failed accept on `listener`.
    pub fn accept_error(&self, listener: &'static str) {
        self.record(|| {
            ::metrics::counter!(HTTP_ACCEPT_ERRORS, "listener" => listener).increment(1);
        });
    }

    /// A failed authentication; `reason` is a fixed label such as `unknown_token`.
    pub fn auth_failure(&self, tenant: &str, endpoint: &'static str, reason: &'static str) {
        self.record(|| {
            ::metrics::counter!(AUTH_FAILURES,
                "tenant" => tenant.to_owned(),
                "endpoint" => endpoint,
                "reason" => reason,
            )
            .increment(1);
        });
    }

    /// A request refused by `limit` (`tenant`, `auth_failures` or `basic_auth`).
    pub fn rate_limited(&self, tenant: &str, endpoint: &'static str, limit: &'static str) {
        self.record(|| {
            ::metrics::counter!(RATE_LIMITED,
                "tenant" => tenant.to_owned(),
                "endpoint" => endpoint,
                "limit" => limit,
            )
            .increment(1);
        });
    }

    /// One partner attempt (or a call rejected before any attempt).
    pub fn partner_attempt(&self, tenant: &str, event: &CallEvent<'_>) {
        let outcome = match event.outcome {
            CallOutcome::Success => "ok",
            CallOutcome::Failed(kind) => kind.as_str(),
            CallOutcome::Rejected => "rejected",
        };
        let call = event.call.as_str();
        self.record(|| {
            ::metrics::counter!(PARTNER_REQUESTS,
                "tenant" => tenant.to_owned(),
                "site" => event.site.to_owned(),
                "call" => call,
                "outcome" => outcome,
            )
            .increment(1);
            if event.attempt == 0 {
                // Never sent: no latency to speak of.
                return;
            }
            ::metrics::histogram!(PARTNER_DURATION,
                "tenant" => tenant.to_owned(),
                "site" => event.site.to_owned(),
                "call" => call,
            )
            .record(event.latency.as_secs_f64());
            if event.attempt > 1 {
                ::metrics::counter!(PARTNER_RETRIES,
                    "tenant" => tenant.to_owned(),
                    "site" => event.site.to_owned(),
                    "call" => call,
                )
                .increment(1);
            }
            if event.status == Some(429) {
                ::metrics::counter!(PARTNER_THROTTLED,
                    "tenant" => tenant.to_owned(),
                    "site" => event.site.to_owned(),
                    "call" => call,
                )
                .increment(1);
            }
        });
    }

    /// What the partner last told of a site's API key.
    pub fn partner_credentials(&self, tenant: &str, site: &str, accepted: bool) {
        self.record(|| {
            ::metrics::gauge!(PARTNER_CREDENTIALS_OK,
                "tenant" => tenant.to_owned(),
                "site" => site.to_owned(),
            )
            .set(if accepted { 1.0 } else { 0.0 });
        });
    }

    /// Whether a site's circuit is open.
    pub fn partner_circuit(&self, tenant: &str, site: &str, open: bool) {
        self.record(|| {
            ::metrics::gauge!(PARTNER_CIRCUIT_OPEN,
                "tenant" => tenant.to_owned(),
                "site" => site.to_owned(),
            )
            .set(if open { 1.0 } else { 0.0 });
        });
    }

    /// The observer to give the partner clients of `tenant`.
    pub fn partner_observer(&self, tenant: &str) -> Arc<dyn CallObserver> {
        if self.enabled() {
            Arc::new(PartnerObserver {
                metrics: self.clone(),
                tenant: tenant.to_owned(),
            })
        } else {
            Arc::new(NoopObserver)
        }
    }

    /// The outbox gauges, as of `now_ms`.
    pub fn outbox(&self, stats: &OutboxStats, ages: &OutboxAges, now_ms: i64) {
        let age_s = ages
            .oldest_marked_ms
            .map(|at| (now_ms.saturating_sub(at)).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.record(|| {
            ::metrics::gauge!(OUTBOX_DEPTH).set(stats.depth as f64);
            ::metrics::gauge!(OUTBOX_FAILING).set(stats.failing as f64);
            ::metrics::gauge!(OUTBOX_OLDEST_AGE).set(age_s);
        });
    }

    /// The outbox rows parked and with overdue claims, and the pending deletions, as of
    /// `now_ms` (summed over tenants and sites, as the other outbox gauges).
    pub fn outbox_attention(
        &self,
        sites: &[OutboxSiteStats],
        deletions: &[PendingDeletions],
        now_ms: i64,
    ) {
        let parked: u64 = sites.iter().map(|s| s.parked).sum();
        let overdue: u64 = sites.iter().map(|s| s.overdue_claims).sum();
        let pending: u64 = deletions.iter().map(|d| d.count).sum();
        let oldest_s = deletions
            .iter()
            .filter_map(|d| d.oldest_deleted_ms)
            .min()
            .map(|at| (now_ms.saturating_sub(at)).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.record(|| {
            ::metrics::gauge!(OUTBOX_PARKED).set(parked as f64);
            ::metrics::gauge!(OUTBOX_OVERDUE_CLAIMS).set(overdue as f64);
            ::metrics::gauge!(PENDING_DELETIONS).set(pending as f64);
            ::metrics::gauge!(PENDING_DELETION_OLDEST_AGE).set(oldest_s);
        });
    }

    /// Whether the bridge is degraded (see [`DEGRADED`]).
    pub fn degraded(&self, degraded: bool) {
        self.record(|| {
            ::metrics::gauge!(DEGRADED).set(if degraded { 1.0 } else { 0.0 });
        });
    }

    /// Reads the outbox gauges from the store (on every scrape), and whether it is stuck
    /// after `stuck_after` (`None`: never). A store that does not answer in time leaves the
    /// previous values.
    pub async fn refresh_outbox(&self, store: &Store, stuck_after: Option<Duration>) {
        if !self.enabled() {
            return;
        }
        let read = async {
            Ok::<_, crate::store::StoreError>((
                store.outbox_stats().await?,
                store.outbox_ages().await?,
                store.outbox_by_site(None).await?,
                store.pending_deletions(None).await?,
            ))
        };
        match tokio::time::timeout(OUTBOX_QUERY_TIMEOUT, read).await {
            Ok(Ok((stats, ages, sites, deletions))) => {
                let now = crate::clock::now_ms();
                self.outbox(&stats, &ages, now);
                self.outbox_attention(&sites, &deletions, now);
                self.degraded(OutboxHealth::assess(&stats, &ages, now, stuck_after).stuck);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the outbox"),
            Err(_) => tracing::warn!("metrics: the outbox query timed out"),
        }
    }

    /// Audit entries deleted by one pruning run (0 still marks the counter as present).
    pub fn audit_pruned(&self, deleted: u64) {
        self.record(|| {
            ::metrics::counter!(AUDIT_PRUNED).increment(deleted);
        });
    }

    /// What one reconciliation found at one site: `kind` is a fixed label such as
    /// `users_missing`.
    pub fn reconcile_drift(&self, tenant: &str, site: &str, kind: &'static str, count: usize) {
        self.record(|| {
            ::metrics::gauge!(RECONCILE_DRIFT,
                "tenant" => tenant.to_owned(),
                "site" => site.to_owned(),
                "kind" => kind,
            )
            .set(count as f64);
        });
    }

    /// A partner site the process serves, and which API it speaks (`groups` or `roles`).
    pub fn site_info(&self, tenant: &str, site: &str, api: &'static str) {
        self.record(|| {
            ::metrics::gauge!(SITE_INFO,
                "tenant" => tenant.to_owned(),
                "site" => site.to_owned(),
                "api" => api,
            )
            .set(1.0);
        });
    }

    /// `count` group member ids a write skipped because they are not users of `tenant`.
    pub fn unknown_members_skipped(&self, tenant: &str, count: usize) {
        self.record(|| {
            ::metrics::counter!(UNKNOWN_MEMBERS_SKIPPED, "tenant" => tenant.to_owned())
                .increment(count as u64);
        });
    }

    /// A request with a forwarding header from a peer that is not a trusted proxy.
    pub fn untrusted_forwarded(&self) {
        self.record(|| {
            ::metrics::counter!(UNTRUSTED_FORWARDED).increment(1);
        });
    }

    /// One reconciliation of a tenant, finished or failed.
    pub fn reconcile_run(&self, tenant: &str, ok: bool) {
        self.record(|| {
            ::metrics::counter!(RECONCILE_RUNS,
                "tenant" => tenant.to_owned(),
                "outcome" => if ok { "ok" } else { "error" },
            )
            .increment(1);
        });
    }
}

/// Counts the attempts of one tenant's partner clients.
struct PartnerObserver {
    metrics: Metrics,
    tenant: String,
}

impl CallObserver for PartnerObserver {
    fn observe(&self, event: &CallEvent<'_>) {
        self.metrics.partner_attempt(&self.tenant, event);
    }

    fn credentials(&self, site: &str, accepted: bool) {
        self.metrics
            .partner_credentials(&self.tenant, site, accepted);
    }

    fn circuit(&self, site: &str, open: bool) {
        self.metrics.partner_circuit(&self.tenant, site, open);
    }
}

/// The metrics listener of `serve`: bound before start-up goes on (a wrong `metrics_listen`
/// stops it), served once the store is open.
pub struct Exporter {
    listener: TcpListener,
    metrics: Metrics,
}

impl Exporter {
    /// Binds `addr` with a fresh [`Metrics`]; `Ok(None)` when metrics are off.
    pub async fn bind(addr: Option<SocketAddr>) -> Result<Option<Exporter>, String> {
        let Some(addr) = addr else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot bind {addr}: {e}"))?;
        Ok(Some(Exporter {
            listener,
            metrics: Metrics::new()?,
        }))
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Serves `/metrics` on a task of its own until the handle is aborted; the outbox counts
    /// as stuck after `outbox_stuck_after_s` (0: never).
    pub fn spawn(self, store: Store, outbox_stuck_after_s: u64) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Ok(addr) = self.listener.local_addr() {
                tracing::info!(listen = %addr, "serving metrics at /metrics");
            }
            let outbox = Some(OutboxSource {
                store,
                stuck_after_s: outbox_stuck_after_s,
            });
            if let Err(e) = serve(self.listener, self.metrics, outbox).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    }
}

/// Where a scrape reads the outbox gauges: the store, and the `bridge.outbox_stuck_after_s`
/// past which a failing row makes the bridge degraded (0: never).
#[derive(Clone)]
pub struct OutboxSource {
    pub store: Store,
    pub stuck_after_s: u64,
}

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    outbox: Option<OutboxSource>,
}

/// Serves `GET /metrics` (Prometheus text format) on `listener`; with an outbox source, the
/// outbox gauges and [`DEGRADED`] are read on every scrape. Runs the recorder's upkeep
/// meanwhile.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    outbox: Option<OutboxSource>,
) -> std::io::Result<()> {
    let upkeep = {
        let metrics = metrics.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n",
            )
        })
        .with_state(Scrape { metrics, outbox });
    tokio::select! {
        served = axum::serve(listener, app) => served,
        () = upkeep => Ok(()),
    }
}

async fn scrape(State(s): State<Scrape>) -> Response {
    if let Some(o) = &s.outbox {
        let stuck_after = (o.stuck_after_s > 0).then(|| Duration::from_secs(o.stuck_after_s));
        s.metrics.refresh_outbox(&o.store, stuck_after).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
