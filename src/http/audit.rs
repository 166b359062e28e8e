//! The audit log of writes: every POST, PUT, PATCH and DELETE under a tenant is recorded after
//! it is answered: when, which tenant, which credential (its configured name, never the
//! secret), the client address, the request id, the operation, the resource, the status, and
//! the partner calls the request made itself (`detail.partner_calls`; the membership engine
//! records the calls it makes afterwards as entries of its own), and what the bridge noted
//! while answering (`detail.skipped_members`: group members that were not users). Each entry is also one
//! structured log line (target `audit`).

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::auth::Principal;
use super::forwarded::ClientAddr;
use super::resources::ResourceState;
use super::REQUEST_ID;
use crate::bridge::now_ms;
use crate::bridge::operator::{AuditEntry, CallRecorder};

/// Middleware: records writes; reads pass through untouched.
///
/// A write runs to its end on a task of its own, its audit entry included: the request's
/// deadline or the client's disconnect drops only the wait for the answer, never the flow
/// half-way (a partner write without its store commit, a rename without its undo, marks not
/// written). The task keeps the request's span, so its log lines keep the request id.
pub async fn record(State(s): State<ResourceState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let bridge = s.bridge.clone();
    let write = record_write(s, request, next).instrument(tracing::Span::current());
    match bridge.spawn_write(write).await {
        Ok(response) => response,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => crate::scim::ScimError::new(503, None, "The bridge is shutting down; retry.")
            .into_response(),
    }
}

async fn record_write(s: ResourceState, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let credential = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.credential.clone())
        .unwrap_or_default();
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let recorder = CallRecorder::default();
    // An IdP's write waits for partner limits only so long (503 + Retry-After after that).
    let response = s
        .bridge
        .answering(recorder.clone(), next.run(request))
        .await;
    // The resource: the path's id, or the Location of a created one.
    let mut segments = path.rsplit('/');
    let last = segments.next().unwrap_or_default().to_owned();
    let (resource_type, resource_id) = match (segments.next(), last.as_str()) {
        (Some(kind @ ("Users" | "Groups")), id) => (kind.to_owned(), Some(id.to_owned())),
        (_, kind) => {
            let created = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .map(str::to_owned);
            (kind.to_owned(), created)
        }
    };
    let entry = AuditEntry {
        at_ms: now_ms(),
        tenant: s.tenant.name().to_owned(),
        credential,
        client,
        request_id,
        operation: method.to_string(),
        resource_type,
        resource_id,
        status: response.status().as_u16(),
        detail: recorder.detail(),
    };
    s.bridge.record_audit(&entry).await;
    response
}
