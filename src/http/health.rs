//! Health endpoints (DESIGN.md section 7), outside every tenant and without authentication.
//!
//! - `GET /healthz`: the process serves HTTP. Checks nothing else, so a liveness probe never
//!   restarts the bridge for a database outage.
//! - `GET /readyz`: 200 when the store answers a trivial query, every embedded migration is
//!   applied, and the membership engine's outbox is not stuck (no row has kept failing for
//!   longer than `bridge.outbox_stuck_after_s` since it was marked); otherwise 503 with a JSON
//!   body naming the failing checks. Details that could reveal the store's address stay in the
//!   log.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::store::Store;

/// How long each readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    store: Store,
    /// `None`: the outbox is never reported stuck.
    outbox_stuck_after: Option<Duration>,
}

/// The outcome of one check.
enum Check {
    Ok,
    /// Failed: the value shown for the check, and a line for the body's `detail`.
    Failed(&'static str, String),
    /// Not run because an earlier check failed.
    Skipped,
}

impl Readiness {
    /// Checks `store`; the outbox counts as stuck after `outbox_stuck_after_s` seconds of
    /// failures (0: never).
    pub fn new(store: Store, outbox_stuck_after_s: u64) -> Self {
        Self {
            store,
            outbox_stuck_after: (outbox_stuck_after_s > 0)
                .then(|| Duration::from_secs(outbox_stuck_after_s)),
        }
    }

    /// Runs every check: `(ready, body)`.
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
            Check::Skipped
        };
        let mut checks = Map::new();
        let mut failing = Vec::new();
        let mut detail = Map::new();
        for (name, check) in [
            ("store", store),
            ("migrations", migrations),
            ("outbox", outbox),
        ] {
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
        let ready = failing.is_empty();
        let body = if ready {
            json!({"status": "ready", "checks": checks})
        } else {
            json!({"status": "not ready", "failing": failing, "checks": checks, "detail": detail})
        };
        (ready, body)
    }

    async fn check_store(&self) -> Check {
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.ping()).await {
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
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.migrations_applied()).await {
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

    async fn check_outbox(&self, now_ms: i64) -> Check {
        let Some(limit) = self.outbox_stuck_after else {
            return Check::Ok;
        };
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.outbox_ages()).await {
            Ok(Ok(ages)) => {
                let failing_for = ages
                    .oldest_failing_marked_ms
                    .map(|at| Duration::from_millis(u64::try_from(now_ms - at).unwrap_or(0)));
                match failing_for {
                    Some(d) if d > limit => {
                        tracing::warn!(
                            failing_for_s = d.as_secs(),
                            limit_s = limit.as_secs(),
                            "readiness: the outbox is stuck"
                        );
                        Check::Failed(
                            "stuck",
                            format!(
                                "A membership change has been failing for {} s (limit {} s); see the log.",
                                d.as_secs(),
                                limit.as_secs()
                            ),
                        )
                    }
                    _ => Check::Ok,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: cannot read the outbox");
                Check::Failed("error", "The outbox cannot be read.".into())
            }
            Err(_) => Check::Failed("error", "The outbox query timed out.".into()),
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
