//! The HTTP surface (axum): the router, the middleware stack, authentication, SCIM JSON in and
//! out, and thin handlers. Handlers hold no logic: they extract, call one function, respond.

pub mod audit;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod query;
pub mod resources;
pub mod search;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::{Config, TenantConfig};
use crate::scim::ScimError;

pub use error::{ApiError, ScimJson, SCIM_CONTENT_TYPE};

/// The request id header, accepted from the client or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Limits of the HTTP layer. `/ServiceProviderConfig` advertises them, so each one must be
/// enforced where it applies.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body; larger ones are answered 413 while they are read.
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Most operations in one `/Bulk` request (`bulk.maxOperations`).
    pub bulk_max_operations: usize,
    /// Largest `/Bulk` body (`bulk.maxPayloadSize`); advertised as at most `max_body_bytes`.
    pub bulk_max_payload_bytes: usize,
    /// Most resources in one page (`filter.maxResults`); a larger `count` is cut to it.
    pub max_results: usize,
    /// Page size when a list request gives no `count`.
    pub default_count: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(55),
            bulk_max_operations: 1000,
            bulk_max_payload_bytes: 1024 * 1024,
            max_results: 1000,
            default_count: 100,
        }
    }
}

/// What the handlers of one tenant need.
#[derive(Clone)]
pub struct TenantState {
    pub name: String,
    pub base_path: String,
    /// Public base URL of the tenant's SCIM endpoint (no trailing slash).
    pub base_url: String,
    /// `(credential name, SHA-256 of the token)`.
    pub tokens: Arc<[(String, [u8; 32])]>,
    /// The HTTP limits; [`app`] sets them to [`AppState::limits`].
    pub limits: Arc<HttpLimits>,
}

impl TenantState {
    /// Builds the tenant's state from its configuration and the public base URL.
    pub fn new(config: &TenantConfig, public_base: &str) -> Self {
        Self {
            name: config.name.clone(),
            base_path: config.base_path.clone(),
            base_url: format!("{public_base}{}", config.base_path),
            tokens: config.token_hashes().into(),
            limits: Arc::new(HttpLimits::default()),
        }
    }

    /// The same tenant under other limits.
    pub fn with_limits(mut self, limits: Arc<HttpLimits>) -> Self {
        self.limits = limits;
        self
    }
}

/// The application state: cheap handles.
#[derive(Clone)]
pub struct AppState {
    pub tenants: Arc<[TenantState]>,
    pub limits: HttpLimits,
    /// The bridge serving `/Users` and `/Groups`; without it only discovery is served (tests
    /// of the HTTP layer alone).
    pub bridge: Option<crate::bridge::Bridge>,
}

impl AppState {
    /// Builds the state of every configured tenant.
    pub fn from_config(config: &Config) -> Self {
        let base = config.public_base();
        Self {
            tenants: config
                .tenants
                .iter()
                .map(|t| TenantState::new(t, &base))
                .collect(),
            limits: HttpLimits::default(),
            bridge: None,
        }
    }

    /// Adds the bridge that serves the resources.
    pub fn with_bridge(mut self, bridge: crate::bridge::Bridge) -> Self {
        self.bridge = Some(bridge);
        self
    }
}

/// The whole router: health endpoints and one SCIM endpoint per tenant, with the middleware
/// stack. `state.limits` apply to every tenant (the body limit here, paging and the advertised
/// capabilities in the tenant's handlers), so what is advertised is what is enforced.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let shared_limits = Arc::new(state.limits.clone());
    for tenant in state.tenants.iter() {
        let tenant = tenant.clone().with_limits(shared_limits.clone());
        let path = tenant.base_path.clone();
        let runtime = state.bridge.as_ref().and_then(|b| {
            b.tenant(&tenant.name).map(|t| resources::ResourceState {
                http: tenant.clone(),
                tenant: t,
                bridge: b.clone(),
            })
        });
        router = router.nest(&path, tenant_router(tenant, runtime));
    }
    let limits = &state.limits;
    // The middleware stack, outermost first.
    router.fallback(not_found).layer(
        ServiceBuilder::new()
            // 1. Secrets in headers are never printed by the layers below.
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
            ]))
            // 2. A request id: the client's X-Request-Id or a new UUID, echoed in the response.
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            // 3. One span per request, carrying the request id.
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                    credential = tracing::field::Empty,
                )
            }))
            // 4. A deadline for the whole request.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                limits.request_timeout,
            ))
            // 5. Bodies over the limit are refused while they are read (the SCIM body
            //    extractor answers 413 with a SCIM error).
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            // 6. A panic becomes a 500 SCIM error instead of a dropped connection.
            .layer(CatchPanicLayer::custom(|_| {
                ScimError::internal("internal error").into_response()
            })),
    )
}

/// The SCIM routes of one tenant, behind its authentication.
fn tenant_router(tenant: TenantState, resources: Option<resources::ResourceState>) -> Router {
    let mut router: Router = discovery::routes().with_state(tenant.clone());
    if let Some(rs) = resources {
        let writes: Router = resources::routes()
            .merge(search::routes())
            .layer(axum::middleware::from_fn_with_state(
                rs.clone(),
                audit::record,
            ))
            .with_state(rs);
        router = router.merge(writes);
    }
    router
        // After every route: a known path with another method gets a SCIM 405, not an empty one.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            tenant,
            auth::require_auth,
        ))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz() -> impl IntoResponse {
    Json(json!({"status": "ready"}))
}

async fn not_found() -> ApiError {
    ScimError::not_found("No such endpoint.").into()
}

async fn method_not_allowed() -> ApiError {
    ScimError::new(
        405,
        None,
        "This endpoint does not support this HTTP method.",
    )
    .into()
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
