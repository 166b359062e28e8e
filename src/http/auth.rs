//! Tenant authentication: static bearer tokens, stored only as SHA-256 hashes and compared in
//! constant time against every configured hash (so timing tells nothing about which one, or
//! how much of one, matched). Failures answer 401 with a SCIM body and `WWW-Authenticate`, and
//! say nothing about which part of the credential was wrong.

pub mod jwt;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::TenantState;
use crate::config::sha256;
use crate::scim::ScimError;

/// Who made the request: the tenant and the name of the credential (never the secret).
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub credential: String,
}

/// Checks the `Authorization` header against the tenant's credentials.
pub fn authenticate(tenant: &TenantState, authorization: Option<&str>) -> Option<Principal> {
    let header = authorization?.trim();
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let presented = sha256(token.trim());
    let mut found: Option<&str> = None;
    for (name, hash) in tenant.tokens.iter() {
        // Compare against every hash, whatever the outcome of the previous ones.
        if bool::from(hash.ct_eq(&presented)) && found.is_none() {
            found = Some(name);
        }
    }
    found.map(|credential| Principal {
        tenant: tenant.name.clone(),
        credential: credential.to_owned(),
    })
}

/// Middleware: rejects unauthenticated requests, records the principal for handlers.
pub async fn require_auth(
    State(tenant): State<TenantState>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match authenticate(&tenant, header) {
        Some(principal) => {
            tracing::Span::current().record("credential", principal.credential.as_str());
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        None => {
            tracing::info!(tenant = %tenant.name, "authentication failed");
            ScimError::unauthorized("Authentication failed: a valid bearer token is required.")
                .into_response()
        }
    }
}
