//! Request metrics: a layer around each tenant's routes (and the admin routes) that counts and
//! times requests by tenant, resource, operation and status, and counts the refusals the
//! authentication middlewares mark on their answers ([`Refusal`]): failed authentications by
//! reason and refusals by limit.
//!
//! The resource and operation come from the matched route (`/Users/{id}`), never from the raw
//! path, so a label takes one of a few fixed values whatever clients send.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::telemetry::metrics::Metrics;

/// Why a request was refused before its handler ran: put in the answer's extensions by the
/// authentication middlewares, read by the metrics layer. Never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Authentication failed for this reason (a fixed label, e.g. `unknown_token`).
    AuthFailed(&'static str),
    /// The client's address failed to authenticate too often (429).
    AuthThrottled,
    /// The tenant's request budget is spent (429).
    RateLimited,
    /// The server's password hashing was saturated; the Basic credential was not checked
    /// (503).
    HashingBusy,
}

impl Refusal {
    /// `response`, marked with this refusal.
    pub fn mark(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// Which door a request knocked on, for the `endpoint` label of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A tenant's SCIM routes.
    Scim,
    /// A tenant's OAuth token endpoint.
    Token,
    /// `/admin/...` (no tenant: the `tenant` label is empty).
    Admin,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Scim => "scim",
            Endpoint::Token => "token",
            Endpoint::Admin => "admin",
        }
    }
}

#[derive(Clone)]
struct Scope {
    metrics: Metrics,
    tenant: Arc<str>,
    /// The path the routes are nested under; matched routes are named without it.
    base_path: Arc<str>,
    endpoint: Endpoint,
}

/// `router` (nested under `base_path` by the caller) with its requests counted for `tenant`.
/// Unchanged when metrics are off.
pub fn track(
    router: Router,
    metrics: &Metrics,
    tenant: &str,
    base_path: &str,
    endpoint: Endpoint,
) -> Router {
    if !metrics.enabled() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(
        Scope {
            metrics: metrics.clone(),
            tenant: tenant.into(),
            base_path: base_path.trim_end_matches('/').into(),
            endpoint,
        },
        record,
    ))
}

async fn record(State(scope): State<Scope>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    let route = route
        .as_deref()
        .map(|r| r.strip_prefix(&*scope.base_path).unwrap_or(r));
    let (resource, operation) = classify(&method, route);
    let m = &scope.metrics;
    m.http_request(
        &scope.tenant,
        resource,
        operation,
        response.status().as_u16(),
        start.elapsed(),
    );
    let endpoint = scope.endpoint.as_str();
    match response.extensions().get::<Refusal>() {
        Some(Refusal::AuthFailed(reason)) => m.auth_failure(&scope.tenant, endpoint, reason),
        Some(Refusal::AuthThrottled) => m.rate_limited(&scope.tenant, endpoint, "auth_failures"),
        Some(Refusal::RateLimited) => m.rate_limited(&scope.tenant, endpoint, "tenant"),
        Some(Refusal::HashingBusy) => m.rate_limited(&scope.tenant, endpoint, "basic_auth"),
        None => {}
    }
    response
}

/// The `resource` and `operation` labels of a request, from its method and its matched route
/// relative to the tenant's base path (`None`: no route matched).
///
/// Resources are the first segment of the route as SCIM spells it (`Users`, `Groups`, `Bulk`,
/// `.search`, `ServiceProviderConfig`, `ResourceTypes`, `Schemas`, `Me`, `oauth`, and the admin
/// routes' names); `unmatched` when no route matched. Operations: `list`, `get`, `create`,
/// `replace`, `patch`, `delete`, `search`, `bulk`, `token`, or `other`.
pub fn classify(method: &Method, route: Option<&str>) -> (&'static str, &'static str) {
    let Some(route) = route else {
        return ("unmatched", method_label(method));
    };
    let mut segments = route.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    // `/Users/` (a collection with a trailing slash) is the collection.
    let second = segments.next().filter(|s| !s.is_empty());
    let resource = match first {
        "Users" => "Users",
        "Groups" => "Groups",
        "Bulk" => "Bulk",
        ".search" => ".search",
        "ServiceProviderConfig" => "ServiceProviderConfig",
        "ResourceTypes" => "ResourceTypes",
        "Schemas" => "Schemas",
        "Me" => "Me",
        "oauth" => "oauth",
        "audit" => "audit",
        "" => "root",
        _ => "other",
    };
    let operation = match (resource, second, method) {
        (".search", _, _) | (_, Some(".search"), _) => "search",
        ("Bulk", _, _) => "bulk",
        ("oauth", _, _) => "token",
        ("ServiceProviderConfig", _, &Method::GET) => "get",
        (_, None, &Method::GET) => "list",
        (_, Some(_), &Method::GET) => "get",
        (_, None, &Method::POST) => "create",
        (_, _, &Method::PUT) => "replace",
        (_, _, &Method::PATCH) => "patch",
        (_, _, &Method::DELETE) => "delete",
        _ => method_label(method),
    };
    (resource, operation)
}

/// A fixed label for a method: clients may send any token as a method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_fixed_resources_and_operations() {
        let cases = [
            (Method::GET, Some("/Users"), ("Users", "list")),
            (Method::GET, Some("/Users/"), ("Users", "list")),
            (Method::POST, Some("/Groups/"), ("Groups", "create")),
            (Method::POST, Some("/Users"), ("Users", "create")),
            (Method::GET, Some("/Users/{id}"), ("Users", "get")),
            (Method::PUT, Some("/Users/{id}"), ("Users", "replace")),
            (Method::PATCH, Some("/Groups/{id}"), ("Groups", "patch")),
            (Method::DELETE, Some("/Groups/{id}"), ("Groups", "delete")),
            (Method::POST, Some("/Groups/.search"), ("Groups", "search")),
            (Method::POST, Some("/.search"), (".search", "search")),
            (Method::POST, Some("/Bulk"), ("Bulk", "bulk")),
            (Method::POST, Some("/oauth/token"), ("oauth", "token")),
            (
                Method::GET,
                Some("/ServiceProviderConfig"),
                ("ServiceProviderConfig", "get"),
            ),
            (Method::GET, Some("/Schemas"), ("Schemas", "list")),
            (Method::GET, Some("/Schemas/{urn}"), ("Schemas", "get")),
            (Method::GET, Some("/audit"), ("audit", "list")),
            (Method::GET, Some("/Whatever/{x}"), ("other", "get")),
            (Method::DELETE, None, ("unmatched", "delete")),
        ];
        for (method, route, want) in cases {
            assert_eq!(classify(&method, route), want, "{method} {route:?}");
        }
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(classify(&odd, None), ("unmatched", "other"));
        assert_eq!(classify(&odd, Some("/Users")), ("Users", "other"));
    }
}
