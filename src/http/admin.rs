//! Admin endpoints, behind their own bearer token (`[admin]`), off when none is configured:
//! `GET /admin/audit?tenant=&since=&resource=&type=&limit=` reads the audit log (`resource`: an
//! id, an email, a userName or a group name, as `scim-bridge audit --resource`).

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
            "type" => q.resource_type = Some(v),
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
