//! Admin endpoints, behind their own bearer token (`[admin]`), off when none is configured:
//! `GET /admin/audit?tenant=&since=&resource=&limit=` reads the audit log;
//! `GET /admin/explain?tenant=&user=` (or `&group=`, `&live=true`) explains why a person has or
//! lacks access (`crate::bridge::explain`, the body of `scim-bridge explain --json`).

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::auth::throttle::ADMIN_SCOPE;
use super::auth::{self, Authenticator};
use super::forwarded::ClientAddr;
use super::metrics::Refusal;
use super::{ApiError, Guard, ScimJson};
use crate::bridge::operator::AuditQuery;
use crate::bridge::Bridge;

/// Most audit entries one request returns.
pub const MAX_AUDIT_ENTRIES: u32 = 10_000;

/// What the admin endpoints need.
#[derive(Clone)]
pub struct AdminState {
    pub tokens: Arc<[(String, [u8; 32])]>,
    pub guard: Arc<Guard>,
    pub bridge: Bridge,
}

/// The admin routes (to nest under `/admin`).
pub fn routes(state: AdminState) -> Router {
    let auth = Arc::new(Authenticator::with_tokens("admin", state.tokens.to_vec()));
    Router::new()
        .route("/audit", get(audit))
        .route("/explain", get(explain))
        .layer(axum::middleware::from_fn(super::extract::refuse_nul_in_url))
        .layer(axum::middleware::from_fn_with_state(
            (auth, state.guard.clone()),
            require_admin,
        ))
        .with_state(state)
}

async fn require_admin(
    State((admin, guard)): State<(Arc<Authenticator>, Arc<Guard>)>,
    request: Request,
    next: Next,
) -> Response {
    let client = ClientAddr::of(&request);
    // As for tenants: over the failure budget a valid token still passes, a wrong one is 429.
    let standing = guard.auth_failures.standing(client, ADMIN_SCOPE);
    let over_budget = standing.over_budget();
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::http::server::Hold::verifying_request(&request);
    match admin.authenticate(header, standing).await {
        Ok(_) => {
            if !crate::http::server::Hold::authenticated_request(&request) {
                return crate::http::server::closing();
            }
            next.run(request).await
        }
        Err(reason) => {
            guard.auth_failures.failed(client, ADMIN_SCOPE);
            tracing::info!(client = %client, reason = reason.as_str(), "admin authentication failed");
            if let Some(wait) = over_budget {
                return Refusal::AuthThrottled.mark(auth::too_many(
                    "Too many failed authentication attempts; retry later.",
                    wait,
                ));
            }
            Refusal::AuthFailed(reason.as_str()).mark(auth::unauthorized(&admin))
        }
    }
}

async fn audit(
    State(s): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let v = v.trim().to_owned();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "tenant" => q.tenant = Some(v),
            "resource" => q.resource = Some(v),
            "since" => {
                q.since_ms = Some(
                    AuditQuery::parse_since(&v, crate::bridge::now_ms())
                        .map_err(|e| crate::scim::ScimError::bad_request(format!("since: {e}")))?,
                )
            }
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .map_err(|_| crate::scim::ScimError::bad_request("limit: not a number"))?
                    .clamp(1, MAX_AUDIT_ENTRIES)
            }
            _ => {}
        }
    }
    let entries = s.bridge.search_audit(&q).await.map_err(|e| {
        // The store's text stays in the log: an answer never carries internals.
        tracing::warn!(error = %e, "cannot read the audit log");
        crate::scim::ScimError::new(503, None, "The audit log cannot be read now; retry.")
    })?;
    let body = json!({
        "totalResults": entries.len(),
        "entries": entries,
    });
    Ok(ScimJson(StatusCode::OK, body).into_response())
}

/// `GET /admin/explain`: `user` (a SCIM id, userName or email) or `group` (a SCIM id or
/// displayName) of `tenant` (optional when one tenant is configured); `live=true` reads the
/// partner now. 404 when there is no such user or group.
async fn explain(
    State(s): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    use crate::bridge::explain::{self, ExplainError};
    use crate::scim::ScimError;
    let (mut tenant, mut user, mut group, mut live) = (None, None, None, false);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let v = v.trim().to_owned();
        match k.as_ref() {
            "tenant" if !v.is_empty() => tenant = Some(v),
            "user" if !v.is_empty() => user = Some(v),
            "group" if !v.is_empty() => group = Some(v),
            "live" => {
                live = match v.to_ascii_lowercase().as_str() {
                    "" | "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(ScimError::bad_request("live: true or false").into()),
                }
            }
            _ => {}
        }
    }
    let tenant = match tenant {
        Some(name) => s
            .bridge
            .tenant(&name)
            .ok_or_else(|| ScimError::new(404, None, format!("No tenant named '{name}'.")))?,
        None => {
            let mut all = s.bridge.tenants.values();
            match (all.next(), all.next()) {
                (Some(only), None) => only.clone(),
                _ => {
                    return Err(ScimError::bad_request(
                        "tenant: name the tenant (several are configured)",
                    )
                    .into())
                }
            }
        }
    };
    let store = &s.bridge.store;
    let body = match (user, group) {
        (Some(u), None) => explain::user(store, &tenant, &u, live)
            .await
            .map(|e| serde_json::to_value(e).unwrap_or_default()),
        (None, Some(g)) => explain::group(store, &tenant, &g, live)
            .await
            .map(|e| serde_json::to_value(e).unwrap_or_default()),
        _ => return Err(ScimError::bad_request("give exactly one of user= and group=").into()),
    };
    match body {
        Ok(b) => Ok(ScimJson(StatusCode::OK, b).into_response()),
        Err(ExplainError::NotFound(what)) => Err(ScimError::new(404, None, what).into()),
        Err(ExplainError::Store(e)) => {
            tracing::warn!(error = %e, "cannot read the store to explain");
            Err(ScimError::new(503, None, "The store cannot be read now; retry.").into())
        }
    }
}
