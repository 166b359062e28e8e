//! The OAuth 2.0 client-credentials token endpoint of a tenant (RFC 6749 section 4.4):
//! `POST <base>/oauth/token`, form-encoded, client authentication by `client_id` and
//! `client_secret` in the body or by HTTP Basic (section 2.3.1). It answers a short-lived HS256
//! JWT whose issuer and audience are the tenant's base URL, which the tenant then accepts as a
//! bearer token. Errors follow section 5.2 (`invalid_request`, `invalid_client`,
//! `unsupported_grant_type`) and never tell whether the id or the secret was wrong.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::throttle::AuthFailureThrottle;
use super::{decode_basic, jwt};
use crate::config::{credential_name, parse_sha256_hex, sha256, OAuthConfig};
use crate::http::forwarded::ClientAddr;
use crate::http::metrics::Refusal;
use crate::secret::Secret;

/// Largest token request body.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// What the endpoint of one tenant needs.
#[derive(Clone)]
pub struct TokenEndpoint {
    tenant: String,
    /// The tenant's base URL: issuer and audience of issued tokens.
    issuer: String,
    signing_key: Secret,
    ttl_s: u64,
    /// `(client_id, SHA-256 of the secret)`.
    clients: Arc<[(String, [u8; 32], String)]>,
    throttle: Arc<AuthFailureThrottle>,
}

impl TokenEndpoint {
    /// `None` when the tenant has no OAuth configuration.
    pub fn new(
        tenant: &str,
        issuer: &str,
        config: Option<&OAuthConfig>,
        throttle: Arc<AuthFailureThrottle>,
    ) -> Option<Self> {
        let c = config?;
        Some(Self {
            tenant: tenant.to_owned(),
            issuer: issuer.to_owned(),
            signing_key: c.signing_key.clone()?,
            ttl_s: c.token_ttl_s,
            clients: c
                .clients
                .iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    let hash = match (&k.client_secret, &k.client_secret_sha256) {
                        (Some(s), _) => sha256(s.expose()),
                        (None, Some(h)) => parse_sha256_hex(h)?,
                        _ => return None,
                    };
                    Some((
                        k.client_id.clone(),
                        hash,
                        credential_name(&k.name, "oauth", i),
                    ))
                })
                .collect(),
            throttle,
        })
    }

    /// The client's id when `id` and `secret` match a configured client. Every client is
    /// compared, in constant time.
    fn check(&self, id: &str, secret: &str) -> Option<String> {
        let presented = sha256(secret);
        let mut found = None;
        for (cid, hash, _) in self.clients.iter() {
            let id_ok = cid.as_bytes().ct_eq(id.as_bytes());
            let secret_ok = hash.ct_eq(&presented);
            if bool::from(id_ok & secret_ok) && found.is_none() {
                found = Some(cid.clone());
            }
        }
        found
    }

    /// The route, to nest under the tenant's base path.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/oauth/token", post(issue))
            .with_state(self)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"scim-bridge\""),
        );
    }
    res
}

async fn issue(State(ep): State<TokenEndpoint>, request: Request) -> Response {
    let client = ClientAddr::of(&request);
    // Over the failure budget the client credentials are still checked (a valid client is
    // never locked out by someone else's failures); a wrong one is answered 429.
    let over_budget = ep.throttle.over_budget(client, &ep.tenant);
    let form_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        );
    }
    let basic = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, c)| decode_basic(c.trim()));
    let body = match axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body is too large or could not be read.",
            )
        }
    };
    let (id, secret) = match client_credentials(basic, &Form::parse(&body)) {
        Ok(pair) => pair,
        Err((error, text)) => return oauth_error(StatusCode::BAD_REQUEST, error, text),
    };
    let Some(client_id) = ep.check(&id, &secret) else {
        ep.throttle.failed(client, &ep.tenant);
        return wrong_client(&ep, client, over_budget);
    };
    token_answer(&ep, &client_id)
}

/// The client's id and secret of a `client_credentials` grant, from HTTP Basic or the form,
/// or the OAuth error (`error`, `error_description`) of the 400 that refuses the request.
fn client_credentials(
    basic: Option<(String, String)>,
    form: &Form,
) -> Result<(String, String), (&'static str, &'static str)> {
    const INVALID: &str = "invalid_request";
    match form.get("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err((
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            ))
        }
        None => return Err((INVALID, "grant_type is required.")),
    }
    if form.duplicated {
        return Err((INVALID, "A parameter is given more than once."));
    }
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(b), None, None) => Ok(b),
        (None, Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        (Some(_), _, _) => Err((
            INVALID,
            "Use one client authentication method: HTTP Basic or the body, not both.",
        )),
        _ => Err((INVALID, "client_id and client_secret are required.")),
    }
}

/// The answer to wrong client credentials: 401, or 429 with `Retry-After` while the client is
/// over its failure budget.
fn wrong_client(
    ep: &TokenEndpoint,
    client: std::net::IpAddr,
    over_budget: Option<std::time::Duration>,
) -> Response {
    if let Some(wait) = over_budget {
        tracing::info!(tenant = %ep.tenant, client = %client, reason = "invalid_client", "too many failed authentications");
        let mut res = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "Too many failed attempts from this address; retry later.",
        );
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        res.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        return Refusal::AuthThrottled.mark(res);
    }
    tracing::info!(tenant = %ep.tenant, client = %client, "token request with wrong client credentials");
    Refusal::AuthFailed("invalid_client").mark(oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed.",
    ))
}

/// The access token for `client_id`, or 500 when it cannot be signed.
fn token_answer(ep: &TokenEndpoint, client_id: &str) -> Response {
    match jwt::issue_hs256(&ep.signing_key, &ep.issuer, &ep.issuer, client_id, ep.ttl_s) {
        Ok(token) => {
            tracing::info!(tenant = %ep.tenant, client_id = %client_id, "issued an access token");
            let mut res = (
                StatusCode::OK,
                Json(json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": ep.ttl_s,
                })),
            )
                .into_response();
            let h = res.headers_mut();
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => {
            tracing::error!(tenant = %ep.tenant, error = %e, "cannot sign an access token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The token could not be issued.",
            )
        }
    }
}

/// A decoded form; a repeated parameter is an error (RFC 6749 section 3.2).
struct Form {
    pairs: Vec<(String, String)>,
    duplicated: bool,
}

impl Form {
    fn parse(body: &Bytes) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut duplicated = false;
        for (k, v) in url::form_urlencoded::parse(body) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                duplicated = true;
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Self { pairs, duplicated }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}
