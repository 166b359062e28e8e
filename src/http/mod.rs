//! The HTTP surface (axum): the router, the middleware stack, authentication, SCIM JSON in and
//! out, and thin handlers. Handlers hold no logic: they extract, call one function, respond.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod console;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod health;
pub mod metrics;
pub mod query;
pub mod resources;
pub mod search;
pub mod server;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use self::metrics::Endpoint;
use crate::config::{Config, HttpConfig, TenantConfig};
use crate::scim::filter::FilterLimits;
use crate::scim::ScimError;
use crate::telemetry::metrics::Metrics;

pub use error::{ApiError, ScimJson, SCIM_CONTENT_TYPE};

/// The request id header, accepted from the client or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Limits of the HTTP layer. `/ServiceProviderConfig` advertises them, so each one must be
/// enforced where it applies.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body outside `/Bulk`; larger ones are answered 413 while they are read.
    pub max_body_bytes: usize,
    /// Largest total size of the request headers (431 above it).
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    /// Most operations in one `/Bulk` request (`bulk.maxOperations`).
    pub bulk_max_operations: usize,
    /// Largest `/Bulk` body (`bulk.maxPayloadSize`).
    pub bulk_max_payload_bytes: usize,
    /// Most resources in one page (`filter.maxResults`); a larger `count` is cut to it.
    pub max_results: usize,
    /// Page size when a list request gives no `count`.
    pub default_count: usize,
    /// Length and depth limits of filters.
    pub filter: FilterLimits,
}

impl HttpLimits {
    /// The limits `[http]` configures.
    pub fn from_config(c: &HttpConfig) -> Self {
        Self {
            max_body_bytes: c.max_body_bytes,
            max_header_bytes: c.max_header_bytes,
            request_timeout: Duration::from_secs(c.request_timeout_s),
            bulk_max_operations: c.bulk_max_operations,
            bulk_max_payload_bytes: c.bulk_max_payload_bytes,
            max_results: c.max_results,
            default_count: c.default_count,
            filter: FilterLimits {
                max_len: c.filter_max_length,
                max_depth: c.filter_max_depth,
            },
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// Protections shared by every tenant of one server.
#[derive(Debug)]
pub struct Guard {
    /// Failed authentications per (client address, tenant) (tenant endpoints and token
    /// endpoints; the admin endpoints are a scope of their own).
    pub auth_failures: Arc<auth::throttle::AuthFailureThrottle>,
    /// Bounds the Argon2 checks of Basic passwords of every tenant.
    pub hash_lane: Arc<auth::basic::HashLane>,
    /// Whose `X-Forwarded-For` is believed.
    pub proxies: forwarded::TrustedProxies,
}

impl Guard {
    pub fn from_config(http: &HttpConfig) -> Self {
        Self {
            auth_failures: Arc::new(auth::throttle::AuthFailureThrottle::new(
                &http.auth_failure_limit,
            )),
            hash_lane: Arc::new(auth::basic::HashLane::new(http.basic_auth_max_concurrent)),
            proxies: forwarded::TrustedProxies::new(&http.trusted_proxies),
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
    /// Every credential the tenant accepts.
    pub auth: Arc<auth::Authenticator>,
    /// The tenant's inbound request budget (`None`: unlimited).
    pub rate: Option<Arc<auth::throttle::TenantLimiter>>,
    /// The OAuth token endpoint, when the tenant has one.
    pub token: Option<auth::token::TokenEndpoint>,
    pub guard: Arc<Guard>,
    /// The HTTP limits; [`app`] sets them to [`AppState::limits`].
    pub limits: Arc<HttpLimits>,
}

impl TenantState {
    /// Builds the tenant's state from its configuration and the public base URL, with the
    /// default `[http]` settings.
    pub fn new(config: &TenantConfig, public_base: &str) -> Result<Self, String> {
        let http = HttpConfig::default();
        Self::build(
            config,
            public_base,
            &http,
            Arc::new(Guard::from_config(&http)),
        )
    }

    /// Builds the tenant's state under the server's `[http]` settings and shared guard.
    pub fn build(
        config: &TenantConfig,
        public_base: &str,
        http: &HttpConfig,
        guard: Arc<Guard>,
    ) -> Result<Self, String> {
        let base_url = format!("{public_base}{}", config.base_path);
        Ok(Self {
            name: config.name.clone(),
            base_path: config.base_path.clone(),
            auth: Arc::new(auth::Authenticator::from_config(
                config,
                &base_url,
                guard.hash_lane.clone(),
            )?),
            rate: auth::throttle::TenantLimiter::new(&http.rate_limit).map(Arc::new),
            token: auth::token::TokenEndpoint::new(
                &config.name,
                &base_url,
                config.credentials.oauth.as_ref(),
                guard.auth_failures.clone(),
            ),
            guard,
            base_url,
            limits: Arc::new(HttpLimits::from_config(http)),
        })
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
    pub guard: Arc<Guard>,
    /// Admin bearer tokens `(name, SHA-256)`; the admin endpoints are off when empty.
    pub admin_tokens: Arc<[(String, [u8; 32])]>,
    /// The bridge serving `/Users` and `/Groups`; without it only discovery is served (tests
    /// of the HTTP layer alone).
    pub bridge: Option<crate::bridge::Bridge>,
    /// Request metrics (off unless `metrics_listen`).
    pub metrics: Metrics,
    /// Connection limits and timeouts of the listener ([`run`] and TLS).
    pub connections: server::ConnectionLimits,
}

impl AppState {
    /// Builds the state of every configured tenant. Fails when a credential's key file
    /// cannot be used (the message names the setting).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let base = config.public_base();
        let guard = Arc::new(Guard::from_config(&config.http));
        Ok(Self {
            tenants: config
                .tenants
                .iter()
                .map(|t| TenantState::build(t, &base, &config.http, guard.clone()))
                .collect::<Result<Vec<_>, _>>()?
                .into(),
            limits: HttpLimits::from_config(&config.http),
            guard,
            admin_tokens: crate::config::token_hashes(&config.admin.bearer_tokens).into(),
            bridge: None,
            metrics: Metrics::off(),
            connections: server::ConnectionLimits::from_config(&config.http),
        })
    }

    /// Tenants with the default `[http]` settings and no admin endpoint (tests of the HTTP
    /// layer alone).
    pub fn with_tenants(tenants: Vec<TenantState>, limits: HttpLimits) -> Self {
        let guard = tenants
            .first()
            .map(|t| t.guard.clone())
            .unwrap_or_else(|| Arc::new(Guard::from_config(&HttpConfig::default())));
        Self {
            tenants: tenants.into(),
            limits,
            guard,
            admin_tokens: Arc::from(Vec::new()),
            bridge: None,
            metrics: Metrics::off(),
            connections: server::ConnectionLimits::default(),
        }
    }

    /// Adds the bridge that serves the resources.
    pub fn with_bridge(mut self, bridge: crate::bridge::Bridge) -> Self {
        self.bridge = Some(bridge);
        self
    }

    /// Counts requests into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The whole router: health endpoints and one SCIM endpoint per tenant, with the middleware
/// stack. `state.limits` apply to every tenant (the body limit here, paging and the advertised
/// capabilities in the tenant's handlers), so what is advertised is what is enforced.
pub fn app(state: AppState) -> Router {
    let bases: Arc<[String]> = state.tenants.iter().map(|t| t.base_path.clone()).collect();
    let app = with_middleware(routes(&state), &state);
    // Before routing (a `Router::layer` runs after it): `/Users/` is the collection.
    Router::new().fallback_service(tower::ServiceExt::map_request(app, move |req| {
        resources::collection_with_trailing_slash(&bases, req)
    }))
}

/// The routes: health endpoints, each tenant's SCIM (and token) endpoints under its base path,
/// and the admin endpoints when admin tokens and a bridge are configured.
fn routes(state: &AppState) -> Router {
    let readiness = state.bridge.as_ref().map(|b| {
        Arc::new(health::Readiness::new(
            b.clone(),
            b.options.outbox_stuck_after_s,
            b.metrics.clone(),
        ))
    });
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz).with_state(readiness));
    let m = &state.metrics;
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
        let name = tenant.name.clone();
        if let Some(token) = tenant.token.clone() {
            let routes = metrics::track(token.routes(), m, &name, &path, Endpoint::Token);
            router = router.nest(&path, routes);
        }
        let routes = tenant_router(tenant, runtime);
        router = router.nest(
            &path,
            metrics::track(routes, m, &name, &path, Endpoint::Scim),
        );
    }
    if !state.admin_tokens.is_empty() {
        if let Some(bridge) = &state.bridge {
            let routes = admin::routes(admin::AdminState {
                tokens: state.admin_tokens.clone(),
                guard: state.guard.clone(),
                bridge: bridge.clone(),
            });
            router = router.nest(
                "/admin",
                metrics::track(routes, m, "", "/admin", Endpoint::Admin),
            );
            // The web console: on the admin surface, behind the same tokens. Whether the
            // public URL is https comes from `public_base_url` (each tenant's URL starts with it).
            let https_base = state
                .tenants
                .first()
                .is_some_and(|t| t.base_url.starts_with("https://"));
            let console = console::routes(
                state.admin_tokens.clone(),
                state.guard.clone(),
                bridge.clone(),
                https_base,
            );
            router = router.nest(
                "/console",
                metrics::track(console, m, "", "/console", Endpoint::Admin),
            );
        }
    }
    router
}

/// The fallback and the middleware stack around `router`.
fn with_middleware(router: Router, state: &AppState) -> Router {
    let limits = &state.limits;
    let max_header_bytes = limits.max_header_bytes;
    let request_timeout = limits.request_timeout;
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
            // 4. The client address (X-Forwarded-For from trusted proxies only).
            .layer(axum::middleware::from_fn_with_state(
                (state.guard.proxies.clone(), state.metrics.clone()),
                forwarded::record_client,
            ))
            // 5. Oversized headers are refused before anything reads them.
            .layer(axum::middleware::from_fn(
                move |req: Request, next: axum::middleware::Next| {
                    header_limit(max_header_bytes, req, next)
                },
            ))
            // 6. A deadline for the whole request.
            .layer(axum::middleware::from_fn(
                move |req: Request, next: axum::middleware::Next| {
                    deadline(request_timeout, req, next)
                },
            ))
            // 7. Bodies over the limit are refused while they are read (the SCIM body
            //    extractor answers 413 with a SCIM error).
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            // 8. A panic becomes a 500 SCIM error instead of a dropped connection.
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
            .merge(search::routes(&rs.http.limits))
            // Before any lookup: PostgreSQL cannot hold a NUL, so `%00` never reaches the store.
            .layer(axum::middleware::from_fn(extract::refuse_nul_in_url))
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

/// 503 with a SCIM body and `Retry-After` when the request takes longer than `limit`.
async fn deadline(
    limit: Duration,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::from(crate::bridge::BridgeError::in_progress(format!(
            "The request did not finish within {} s; retry it.",
            limit.as_secs()
        )))
        .into_response(),
    }
}

/// 431 with a SCIM body when the request headers together exceed `max` bytes.
async fn header_limit(
    max: usize,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if size > max {
        return ScimError::new(
            431,
            None,
            format!("The request line and headers are {size} bytes; the maximum is {max}."),
        )
        .into_response();
    }
    next.run(req).await
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

/// Serves `app(state)` on `listener` under `state.connections` until `shutdown` completes,
/// then drains in-flight requests ([`server::serve`]).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.connections;
    let metrics = state.metrics.clone();
    server::serve(
        listener,
        app(state),
        server::Transport::Plain,
        limits,
        metrics,
        shutdown,
    )
    .await
}
