//! Health endpoints (DESIGN.md section 7), outside every tenant and without authentication.
//!
//! - `GET /healthz`: the process serves HTTP. Checks nothing else, so a liveness probe never
//!   restarts the bridge for a database outage.
//! - `GET /readyz`: whether *this process* can serve. 200 when the store answers a trivial
//!   query and every embedded migration is applied; otherwise 503 with a JSON body naming the
//!   failing checks (`"status": "not ready"`, `"failing"`).
//!
//!   The partner's trouble never makes the bridge unready: every replica shares the partner,
//!   so an orchestrator that took unready replicas out of service would turn a partner outage
//!   into a full SCIM outage, while the bridge can still accept the IdP's writes and retry
//!   them. A membership change that has kept failing for longer than
//!   `bridge.outbox_stuck_after_s` (since it was marked) makes the bridge *degraded* instead:
//!   still 200, with `"status": "degraded"`, `"degraded": ["outbox"]`, `checks.outbox` `stuck`,
//!   a sentence in `detail.outbox` and the numbers in `outbox` (failing rows, age of the oldest,
//!   the limit). The same state sets the `scim_bridge_degraded` gauge, and a change of it is
//!   logged once (a warning on entering, info on leaving), not on every probe.
//!   A partner that refuses a site's API key (as this process last found it: a credential
//!   check or any call) makes it degraded too: `"degraded": ["credentials"]`,
//!   `checks.credentials` `refused` (else `ok`) and a sentence in `detail.credentials` that
//!   counts the sites without naming them; `scim-bridge status` names them.
//!
//! Details that could reveal the store's address, a site or a user stay in the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::bridge::operator::OutboxHealth;
use crate::bridge::Bridge;
use crate::telemetry::metrics::Metrics;

/// How long each readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
pub struct Readiness {
    bridge: Bridge,
    /// `None`: the outbox is never reported stuck.
    outbox_stuck_after: Option<Duration>,
    /// Where the degraded state is reported as a gauge.
    metrics: Metrics,
    /// Whether the last check found the bridge degraded: a change is logged once.
    degraded: AtomicBool,
}

/// The outcome of one check.
enum Check {
    Ok,
    /// Failed: the value shown for the check, and a line for the body's `detail`.
    Failed(&'static str, String),
    /// Not run because an earlier check failed.
    Skipped,
}

/// The outcome of the outbox check, which never makes the bridge unready.
enum OutboxCheck {
    Ok,
    /// Stuck: the bridge is degraded.
    Stuck(OutboxHealth),
    /// The outbox could not be read (the store answered the trivial query): degraded too,
    /// with a line for the body's `detail`.
    Unknown(String),
    Skipped,
}

impl Readiness {
    /// Checks the bridge's store; the outbox counts as stuck after `outbox_stuck_after_s` seconds of
    /// failures (0: never). The degraded state goes to `metrics` on every check.
    pub fn new(bridge: Bridge, outbox_stuck_after_s: u64, metrics: Metrics) -> Self {
        Self {
            bridge,
            outbox_stuck_after: (outbox_stuck_after_s > 0)
                .then(|| Duration::from_secs(outbox_stuck_after_s)),
            metrics,
            degraded: AtomicBool::new(false),
        }
    }

    /// Runs every check: `(ready, body)`. Ready means the store and the migrations pass; the
    /// outbox only decides between `ready` and `degraded`.
    pub async fn check(&self) -> (bool, Value) {
        let store = self.check_store().await;
        let reachable = matches!(store, Check::Ok);
        let migrations = if reachable {
            self.check_migrations().await
        } else {
            Check::Skipped
        };
        let outbox = if reachable {
            self.check_outbox(crate::bridge::now_ms()).await
        } else {
            OutboxCheck::Skipped
        };
        let mut checks = Map::new();
        let mut failing = Vec::new();
        let mut detail = Map::new();
        for (name, check) in [("store", store), ("migrations", migrations)] {
            let shown = match check {
                Check::Ok => "ok",
                Check::Skipped => "skipped",
                Check::Failed(shown, why) => {
                    failing.push(name);
                    detail.insert(name.into(), Value::String(why));
                    shown
                }
            };
            checks.insert(name.into(), Value::String(shown.into()));
        }
        let mut degraded = Vec::new();
        let mut numbers = None;
        let shown = match outbox {
            OutboxCheck::Ok => "ok",
            OutboxCheck::Skipped => "skipped",
            OutboxCheck::Stuck(health) => {
                degraded.push("outbox");
                detail.insert("outbox".into(), Value::String(health.describe()));
                numbers = Some(json!({
                    "failing": health.failing,
                    "oldest_failing_age_s": health.oldest_failing_age_s,
                    "stuck_after_s": health.stuck_after_s,
                }));
                "stuck"
            }
            OutboxCheck::Unknown(why) => {
                degraded.push("outbox");
                detail.insert("outbox".into(), Value::String(why));
                "error"
            }
        };
        checks.insert("outbox".into(), Value::String(shown.into()));
        // A partner that refuses a site's key: the bridge serves and keeps the IdP's changes,
        // but carries none out at that site until an operator fixes the key.
        let refused = self.bridge.refused_sites().len();
        checks.insert(
            "credentials".into(),
            Value::String(if refused > 0 { "refused" } else { "ok" }.into()),
        );
        if refused > 0 {
            degraded.push("credentials");
            detail.insert(
                "credentials".into(),
                Value::String(format!(
                    "The partner refuses the API key of {refused} site{}; changes for it are \
                     stored and parked until the key is fixed. See `scim-bridge status` and \
                     the log.",
                    if refused == 1 { "" } else { "s" }
                )),
            );
        }
        // A skipped outbox check (the store is down) says nothing new about the partner.
        if !matches!(shown, "skipped") {
            self.note_degraded(degraded.contains(&"outbox"), &detail, numbers.as_ref());
        }

        let ready = failing.is_empty();
        let status = match (ready, degraded.is_empty()) {
            (false, _) => "not ready",
            (true, false) => "degraded",
            (true, true) => "ready",
        };
        let mut body = Map::new();
        body.insert("status".into(), status.into());
        if !ready {
            body.insert("failing".into(), json!(failing));
        }
        if !degraded.is_empty() {
            body.insert("degraded".into(), json!(degraded));
        }
        body.insert("checks".into(), Value::Object(checks));
        if !detail.is_empty() {
            body.insert("detail".into(), Value::Object(detail));
        }
        if let Some(numbers) = numbers {
            body.insert("outbox".into(), numbers);
        }
        (ready, Value::Object(body))
    }

    /// Sets the gauge, and logs when the degraded state changed since the last check.
    fn note_degraded(&self, degraded: bool, detail: &Map<String, Value>, numbers: Option<&Value>) {
        self.metrics.degraded(degraded);
        let was = self.degraded.swap(degraded, Ordering::Relaxed);
        match (was, degraded) {
            (false, true) => {
                let field = |k: &str| numbers.and_then(|n| n[k].as_u64());
                let why = detail
                    .get("outbox")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                tracing::warn!(
                    why,
                    failing = field("failing"),
                    oldest_failing_age_s = field("oldest_failing_age_s"),
                    stuck_after_s = field("stuck_after_s"),
                    "degraded: the bridge still serves, but the outbox is stuck"
                );
            }
            (true, false) => tracing::info!("no longer degraded: the outbox is moving again"),
            _ => {}
        }
    }

    async fn check_store(&self) -> Check {
        match tokio::time::timeout(CHECK_TIMEOUT, self.bridge.ping_store()).await {
            Ok(Ok(())) => Check::Ok,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the store is unreachable");
                Check::Failed("unreachable", "The store does not answer.".into())
            }
            Err(_) => {
                tracing::warn!("readiness: the store did not answer in time");
                Check::Failed(
                    "unreachable",
                    format!(
                        "The store did not answer within {} s.",
                        CHECK_TIMEOUT.as_secs()
                    ),
                )
            }
        }
    }

    async fn check_migrations(&self) -> Check {
        match tokio::time::timeout(CHECK_TIMEOUT, self.bridge.migrations_applied()).await {
            Ok(Ok(true)) => Check::Ok,
            Ok(Ok(false)) => Check::Failed(
                "pending",
                "Not every migration this version needs is applied; run `scim-bridge migrate`."
                    .into(),
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: cannot read the applied migrations");
                Check::Failed("error", "The applied migrations cannot be read.".into())
            }
            Err(_) => Check::Failed("error", "The migrations query timed out.".into()),
        }
    }

    async fn check_outbox(&self, now_ms: i64) -> OutboxCheck {
        if self.outbox_stuck_after.is_none() {
            return OutboxCheck::Ok;
        }
        let read = self.bridge.outbox_health(now_ms, self.outbox_stuck_after);
        match tokio::time::timeout(CHECK_TIMEOUT, read).await {
            Ok(Ok(health)) if health.stuck => OutboxCheck::Stuck(health),
            Ok(Ok(_)) => OutboxCheck::Ok,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: cannot read the outbox");
                OutboxCheck::Unknown("The outbox cannot be read.".into())
            }
            Err(_) => OutboxCheck::Unknown("The outbox query timed out.".into()),
        }
    }
}

/// `GET /healthz`.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`; without a store (the HTTP layer alone, in tests) there is nothing to check.
pub async fn readyz(State(readiness): State<Option<Arc<Readiness>>>) -> Response {
    let Some(readiness) = readiness else {
        return Json(json!({"status": "ready", "checks": {}})).into_response();
    };
    let (ready, body) = readiness.check().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
