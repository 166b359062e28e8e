//! Tenant authentication. A tenant accepts any mix of:
//! - static bearer tokens, stored only as SHA-256 hashes and compared in constant time against
//!   every configured hash (timing tells nothing about which one, or how much of one, matched);
//! - HTTP Basic user names with Argon2 password hashes ([`basic`]);
//! - bearer JWTs from an outside issuer, and the tenant's own OAuth tokens ([`jwt`], [`token`]).
//!
//! Failures answer 401 with a SCIM body and `WWW-Authenticate`, and say nothing about which
//! part of the credential was wrong; the reason goes to the log only. Authenticated requests
//! then pass the tenant's rate limit.
//!
//! Failed attempts are counted per (client address, tenant) ([`throttle`]). Past the budget
//! the credential is still checked: a valid one is let through, a wrong one is answered 429
//! with `Retry-After`. Refusing every request of a spent budget instead would let anyone who
//! can reach the bridge lock every IdP out (behind a proxy that is not in
//! `http.trusted_proxies`, all of them share the proxy's address). What the budget still
//! bounds is the work guessing costs: bearer tokens, JWTs and the bridge's own tokens are
//! checked by a hash compare or a signature, cheap and hopeless to guess (the configuration
//! asks for at least 16 characters; `token new` makes 256-bit ones), while a Basic password
//! over budget is hashed through one shared slot of the server's Argon2 lane ([`basic`]), so
//! guessers over their budget hold at most one hash at a time between them.

pub mod basic;
pub mod jwt;
pub mod throttle;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use self::throttle::Standing;
use super::forwarded::ClientAddr;
use super::metrics::Refusal;
use super::{ApiError, TenantState};
use crate::config::{credential_name, sha256, TenantConfig};
use crate::scim::ScimError;

/// Who made the request: the tenant and the name of the credential (never the secret).
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub credential: String,
}

/// Why authentication failed: for logs and metrics, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// A scheme the tenant does not accept, or a header that does not parse.
    Malformed,
    /// A bearer token that matches no static token and is not a JWT.
    UnknownToken,
    /// Basic credentials that match no user or password.
    BadPassword,
    /// A JWT refused for this reason.
    Jwt(jwt::JwtRejection),
    /// Not checked: the server's password hashing was saturated (retry after the duration).
    Busy(std::time::Duration),
}

impl Failure {
    /// A stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::UnknownToken => "unknown_token",
            Failure::BadPassword => "bad_password",
            Failure::Jwt(r) => r.as_str(),
            Failure::Busy(_) => "busy",
        }
    }
}

/// Tokens the tenant's own token endpoint issued: the validator and the configured clients.
struct IssuedTokens {
    validator: jwt::JwtValidator,
    /// `client_id` -> credential name. A client removed from the configuration loses its
    /// tokens at once.
    clients: HashMap<String, String>,
}

/// Every credential one tenant accepts.
pub struct Authenticator {
    tenant: String,
    tokens: Vec<(String, [u8; 32])>,
    basic: basic::BasicVerifier,
    jwt: Vec<jwt::JwtValidator>,
    issued: Option<IssuedTokens>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tenant", &self.tenant)
            .field("tokens", &self.tokens.len())
            .field("basic", &self.basic.len())
            .field("jwt", &self.jwt.len())
            .field("oauth", &self.issued.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Builds the tenant's credentials; `base_url` is the tenant's public SCIM base URL (the
    /// issuer and audience of the tokens its endpoint issues), `lane` bounds the server's
    /// password hashing. Fails when a key file cannot be read; the message names the setting,
    /// never key material.
    pub fn from_config(
        t: &TenantConfig,
        base_url: &str,
        lane: Arc<basic::HashLane>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let mut validators = Vec::new();
        for (i, j) in t.credentials.jwt.iter().enumerate() {
            let mut j = j.clone();
            j.name = credential_name(&j.name, "jwt", i);
            validators.push(
                jwt::JwtValidator::from_config(&j, http.clone())
                    .map_err(|e| format!("tenant {}: credentials.jwt[{i}]: {e}", t.name))?,
            );
        }
        let issued = t.credentials.oauth.as_ref().and_then(|o| {
            let key = o.signing_key.as_ref()?;
            Some(IssuedTokens {
                validator: jwt::JwtValidator::issued("oauth", base_url, key),
                clients: o
                    .clients
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.client_id.clone(), credential_name(&c.name, "oauth", i)))
                    .collect(),
            })
        });
        Ok(Self {
            tenant: t.name.clone(),
            tokens: t.token_hashes(),
            basic: basic::BasicVerifier::from_config(&t.credentials.basic, lane),
            jwt: validators,
            issued,
        })
    }

    /// An authenticator with static tokens only.
    pub fn with_tokens(tenant: &str, tokens: Vec<(String, [u8; 32])>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            tokens,
            basic: basic::BasicVerifier::default(),
            jwt: Vec::new(),
            issued: None,
        }
    }

    /// True when the tenant accepts HTTP Basic.
    pub fn accepts_basic(&self) -> bool {
        !self.basic.is_empty()
    }

    /// True when the tenant accepts JWTs (its own or an outside issuer's).
    pub fn accepts_jwt(&self) -> bool {
        !self.jwt.is_empty() || self.issued.is_some()
    }

    /// Checks an `Authorization` header value from a client of this `standing` (see the
    /// module documentation).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        standing: Standing,
    ) -> Result<Principal, Failure> {
        let header = authorization.ok_or(Failure::Missing)?.trim();
        let (scheme, credentials) = header.split_once(' ').ok_or(Failure::Malformed)?;
        let credentials = credentials.trim();
        let name = if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(credentials).await?
        } else if scheme.eq_ignore_ascii_case("basic") && !self.basic.is_empty() {
            let (user, password) = decode_basic(credentials).ok_or(Failure::Malformed)?;
            self.basic
                .verify(&user, &password, standing)
                .await
                .map_err(|basic::Busy(wait)| Failure::Busy(wait))?
                .ok_or(Failure::BadPassword)?
        } else {
            return Err(Failure::Malformed);
        };
        Ok(Principal {
            tenant: self.tenant.clone(),
            credential: name,
        })
    }

    async fn bearer(&self, token: &str) -> Result<String, Failure> {
        if token.is_empty() {
            return Err(Failure::Malformed);
        }
        if let Some(name) = self.static_token(token) {
            return Ok(name);
        }
        if !looks_like_jwt(token) {
            return Err(Failure::UnknownToken);
        }
        if let Some(issued) = &self.issued {
            if issued.validator.accepts_issuer(token) {
                let claims = issued
                    .validator
                    .validate(token)
                    .await
                    .map_err(Failure::Jwt)?;
                let client = claims.client_id.or(claims.subject).unwrap_or_default();
                return issued
                    .clients
                    .get(&client)
                    .cloned()
                    .ok_or(Failure::Jwt(jwt::JwtRejection::UnknownKey));
            }
        }
        let Some(validator) = self.jwt.iter().find(|v| v.accepts_issuer(token)) else {
            return Err(Failure::Jwt(jwt::JwtRejection::Issuer));
        };
        validator.validate(token).await.map_err(Failure::Jwt)?;
        Ok(validator.name().to_owned())
    }

    /// The name of the static token equal to `token`, comparing against every hash.
    fn static_token(&self, token: &str) -> Option<String> {
        // A configured token has at least MIN_TOKEN_CHARS characters (the configuration
        // refuses shorter ones); a shorter one presented against a configured SHA-256 is
        // refused the same.
        if token.chars().count() < crate::config::MIN_TOKEN_CHARS {
            return None;
        }
        let presented = sha256(token);
        let mut found: Option<&str> = None;
        for (name, hash) in &self.tokens {
            // Compare against every hash, whatever the outcome of the previous ones.
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(name);
            }
        }
        found.map(str::to_owned)
    }
}

/// A compact JWS: three base64url parts.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// `base64(user:password)` -> `(user, password)`.
pub fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A 401 for tenant `tenant`: SCIM body, a `WWW-Authenticate` challenge per accepted scheme.
pub fn unauthorized(auth: &Authenticator) -> Response {
    let mut res = ScimError::unauthorized(
        "Authentication failed: valid credentials for this endpoint are required.",
    )
    .into_response();
    if auth.accepts_basic() {
        res.headers_mut().append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"scim-bridge\", charset=\"UTF-8\""),
        );
    }
    res
}

/// Middleware: authenticates (answering a wrong credential 429 while the client's failure
/// budget at this tenant is spent), applies the tenant's rate limit, and records the principal
/// for handlers.
pub async fn require_auth(
    State(tenant): State<TenantState>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = ClientAddr::of(&request);
    let throttle = &tenant.guard.auth_failures;
    let standing = throttle.standing(client, &tenant.name);
    let over_budget = standing.over_budget();
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::http::server::Hold::verifying_request(&request);
    match tenant.auth.authenticate(header, standing).await {
        Ok(principal) => {
            if let Some(limiter) = &tenant.rate {
                if let Err(wait) = limiter.check() {
                    tracing::info!(tenant = %tenant.name, "tenant rate limit reached");
                    return Refusal::RateLimited.mark(too_many(&limiter.refusal_detail(), wait));
                }
            }
            tracing::Span::current().record("credential", principal.credential.as_str());
            if !crate::http::server::Hold::authenticated_request(&request) {
                // The connection was chosen to close for room while the credential was
                // checked: answer so, rather than start work the client will never hear of.
                return crate::http::server::closing();
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(Failure::Busy(retry)) => match over_budget {
            Some(wait) => throttled(&tenant.name, client, "busy", wait),
            None => {
                tracing::info!(
                    tenant = %tenant.name,
                    client = %client,
                    "password checks saturated; the Basic credential was not checked"
                );
                Refusal::HashingBusy.mark(busy(retry))
            }
        },
        Err(reason) => {
            throttle.failed(client, &tenant.name);
            if let Some(wait) = over_budget {
                return throttled(&tenant.name, client, reason.as_str(), wait);
            }
            tracing::info!(
                tenant = %tenant.name,
                client = %client,
                reason = reason.as_str(),
                "authentication failed"
            );
            Refusal::AuthFailed(reason.as_str()).mark(unauthorized(&tenant.auth))
        }
    }
}

/// The 429 of a wrong credential from a client over its failure budget.
fn throttled(
    tenant: &str,
    client: std::net::IpAddr,
    reason: &'static str,
    wait: std::time::Duration,
) -> Response {
    tracing::info!(
        tenant = %tenant,
        client = %client,
        reason,
        "too many failed authentications"
    );
    Refusal::AuthThrottled.mark(too_many(
        "Too many failed authentication attempts from this address; retry later.",
        wait,
    ))
}

/// 503 with a SCIM body and `Retry-After`: the server's password hashing is saturated and the
/// credential was not checked.
pub fn busy(retry: std::time::Duration) -> Response {
    ApiError {
        error: ScimError::new(
            503,
            None,
            "The server is busy checking passwords; retry shortly.",
        ),
        retry_after: Some(retry.as_secs_f64().ceil().max(1.0) as u64),
    }
    .into_response()
}

/// 429 with a SCIM body and `Retry-After` (whole seconds, at least 1).
pub fn too_many(detail: &str, wait: std::time::Duration) -> Response {
    ApiError {
        error: ScimError::new(429, None, detail),
        retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
    }
    .into_response()
}

/// Shared by the tenants of one server.
pub type SharedAuthenticator = Arc<Authenticator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let enc = base64::engine::general_purpose::STANDARD.encode("okta:pa:ss");
        assert_eq!(
            decode_basic(&enc),
            Some(("okta".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(decode_basic("%%%"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("okta");
        assert_eq!(decode_basic(&no_colon), None);
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }

    #[tokio::test]
    async fn static_tokens_match_by_hash() {
        let auth = Authenticator::with_tokens(
            "t",
            vec![
                ("old".into(), sha256("old-token-0123456789")),
                ("new".into(), sha256("new-token-0123456789")),
            ],
        );
        let p = auth
            .authenticate(Some("Bearer new-token-0123456789"), Standing::Clean)
            .await
            .unwrap();
        assert_eq!(p.credential, "new");
        let p = auth
            .authenticate(
                Some("bearer   old-token-0123456789 "),
                Standing::OverBudget(std::time::Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(p.credential, "old");
        assert_eq!(
            auth.authenticate(Some("Bearer nope"), Standing::Clean)
                .await
                .unwrap_err(),
            Failure::UnknownToken
        );
        assert_eq!(
            auth.authenticate(None, Standing::Clean).await.unwrap_err(),
            Failure::Missing
        );
        assert_eq!(
            auth.authenticate(Some("Basic b2s6b2s="), Standing::Clean)
                .await
                .unwrap_err(),
            Failure::Malformed
        );
    }
}
