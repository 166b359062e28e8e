//! Security settings: the HTTP limits and proxies (`[http]`), optional TLS, the admin
//! credential (`[admin]`), and the credential types a tenant accepts besides static bearer
//! tokens: HTTP Basic, bearer JWTs, and the OAuth client-credentials token endpoint.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{lenient, parse_sha256_hex, resolve_secret, BearerTokenConfig, ConfigError};
use crate::secret::Secret;

/// Limits, rate limits, trusted proxies and TLS of the SCIM listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body outside `/Bulk` (413 above it).
    pub max_body_bytes: usize,
    /// Largest `/Bulk` body, advertised as `bulk.maxPayloadSize` (413 above it).
    pub bulk_max_payload_bytes: usize,
    /// Most operations in one `/Bulk` request, advertised as `bulk.maxOperations`.
    pub bulk_max_operations: usize,
    /// Largest total size of the request headers (431 above it).
    pub max_header_bytes: usize,
    /// Deadline of a whole request (503 with `Retry-After` past it).
    pub request_timeout_s: u64,
    /// Most resources in one page, advertised as `filter.maxResults`.
    pub max_results: usize,
    /// Page size when a list request gives no `count`.
    pub default_count: usize,
    /// Longest filter expression accepted (400 `invalidFilter` above it).
    pub filter_max_length: usize,
    /// Deepest nesting of a filter (parentheses, `not`, value paths).
    pub filter_max_depth: usize,
    /// Inbound requests per tenant (429 with `Retry-After` above it); 0 turns it off.
    pub rate_limit: RateLimitConfig,
    /// Failed authentications per (client address, tenant); once spent, a wrong credential
    /// from that address at that tenant gets 429 instead of 401 until the budget refills. A
    /// valid credential is still accepted.
    pub auth_failure_limit: RateLimitConfig,
    /// Most Argon2 verifications of Basic passwords running at once, for the whole server
    /// (0: half the CPUs, at least one). More wait briefly, then get 503 with `Retry-After`.
    pub basic_auth_max_concurrent: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed. From
    /// any other peer the header is ignored and the peer address is the client address.
    pub trusted_proxies: Vec<String>,
    /// Most connections open at once. At the cap a new connection closes the oldest one that
    /// has no request in flight (idle, or still sending its request head); when every one has
    /// a request in flight, the new one is closed at once. `serve` may lower it to fit the
    /// open-file limit (see the README).
    pub max_connections: usize,
    /// Time a client has to send a whole request head (request line and headers), counted from
    /// the connection's start, or on a kept-alive connection from the first byte of the head.
    pub header_read_timeout_s: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_s: u64,
    /// Serve HTTPS directly (deployments without a proxy).
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            bulk_max_payload_bytes: 4 * 1024 * 1024,
            bulk_max_operations: 1000,
            max_header_bytes: 32 * 1024,
            request_timeout_s: 55,
            max_results: 1000,
            default_count: 100,
            filter_max_length: 4096,
            filter_max_depth: 32,
            rate_limit: RateLimitConfig {
                per_second: 200.0,
                burst: 400,
            },
            auth_failure_limit: RateLimitConfig {
                per_second: 0.2,
                burst: 20,
            },
            basic_auth_max_concurrent: 0,
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            header_read_timeout_s: 10,
            idle_timeout_s: 75,
            tls: None,
        }
    }
}

/// A token bucket: `burst` at once, refilled at `per_second`. `per_second = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimitConfig {
    /// True when the limit applies.
    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }
}

/// Certificate and key of the bridge's own HTTPS listener (PEM files). Both are read again on
/// SIGHUP and whenever either file changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for changes (0: on SIGHUP only).
    #[serde(default = "default_tls_poll")]
    pub reload_check_s: u64,
    /// Time a client has to complete the TLS handshake, counted from the connection's start.
    #[serde(default = "default_tls_handshake_timeout")]
    pub handshake_timeout_s: u64,
}

fn default_tls_poll() -> u64 {
    30
}

fn default_tls_handshake_timeout() -> u64 {
    10
}

/// Largest accepted `http.max_connections`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Largest accepted `http.header_read_timeout_s` and `http.tls.handshake_timeout_s`: a client
/// that needs longer is indistinguishable from one holding the connection on purpose.
pub const MAX_HEAD_TIMEOUT_S: u64 = 300;
/// Largest accepted `http.idle_timeout_s`.
pub const MAX_IDLE_TIMEOUT_S: u64 = 3600;

/// The credential of the admin endpoints (`/admin/...`); they are off when none is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin bearer tokens (several allow rotation).
    pub bearer_tokens: Vec<BearerTokenConfig>,
    /// Shorthand for one admin token (`SCIM_BRIDGE_ADMIN__TOKEN`, `..._TOKEN_FILE`,
    /// `..._TOKEN_SHA256`).
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub token_sha256: Option<String>,
}

/// HTTP Basic credentials (Okta offers them): a user name and the password's SHA-256 (for a
/// generated password: `scim-bridge token new --basic USER` prints the password and its
/// hash) or an Argon2 hash (for a password somebody chose).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicCredentialConfig {
    /// Names the credential in logs and the audit log.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub username: String,
    /// Hex SHA-256 of a generated password (256 random bits, as `token new --basic` makes):
    /// checked at once, never behind anyone's guesses. Not for a chosen password.
    pub password_sha256: Option<String>,
    /// PHC string of an Argon2 hash (`$argon2id$v=19$...`), for a chosen password.
    pub password_hash: Option<Secret>,
    pub password_hash_file: Option<PathBuf>,
}

/// Bearer JWTs issued by someone else (an IdP's authorization server, Entra ID).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Required `iss`.
    #[serde(deserialize_with = "lenient::string")]
    pub issuer: String,
    /// Accepted `aud` values (one of them must be in the token).
    #[serde(deserialize_with = "lenient::string_list")]
    pub audience: Vec<String>,
    /// Allowed `alg` values; empty means the one family the key allows (HS256 for a shared
    /// secret, RS256 for an RSA key or a JWKS URL, ES256 for an EC key). HMAC and public-key
    /// algorithms cannot be mixed, and `none` is never accepted.
    #[serde(deserialize_with = "lenient::string_list")]
    pub algorithms: Vec<String>,
    /// HS256 shared secret (at least 32 bytes).
    pub hs256_secret: Option<Secret>,
    pub hs256_secret_file: Option<PathBuf>,
    /// RSA or EC public key (PEM).
    pub public_key_file: Option<PathBuf>,
    /// JWKS document with the signing keys, cached and fetched again for an unknown `kid`.
    pub jwks_url: Option<Url>,
    /// Microsoft Entra ID tenant id: sets `issuer` to `https://sts.windows.net/<id>/` and
    /// `jwks_url` to the tenant's published keys, unless they are given.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub entra_tenant_id: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Fewest seconds between two JWKS fetches (a flood of unknown `kid`s fetches once).
    pub jwks_min_refresh_s: u64,
    /// Longest a fetched JWKS is used before it is fetched again.
    pub jwks_max_age_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            issuer: String::new(),
            audience: Vec::new(),
            algorithms: Vec::new(),
            hs256_secret: None,
            hs256_secret_file: None,
            public_key_file: None,
            jwks_url: None,
            entra_tenant_id: None,
            leeway_s: 60,
            jwks_min_refresh_s: 60,
            jwks_max_age_s: 3600,
        }
    }
}

impl JwtConfig {
    /// Fills `issuer` and `jwks_url` from `entra_tenant_id` where they are not given.
    pub fn apply_entra_defaults(&mut self) {
        let Some(id) = self.entra_tenant_id.as_deref().map(str::trim) else {
            return;
        };
        if id.is_empty() {
            return;
        }
        if self.issuer.is_empty() {
            self.issuer = format!("https://sts.windows.net/{id}/");
        }
        if self.jwks_url.is_none() && self.public_key_file.is_none() && self.hs256_secret.is_none()
        {
            self.jwks_url = Url::parse(&format!(
                "https://login.microsoftonline.com/{id}/discovery/v2.0/keys"
            ))
            .ok();
        }
    }
}

/// The OAuth 2.0 client-credentials token endpoint of a tenant (`POST <base>/oauth/token`).
/// It issues short-lived HS256 JWTs signed with `signing_key`, with the tenant's base URL as
/// issuer and audience; the tenant accepts them as bearer tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    pub clients: Vec<OAuthClientConfig>,
    /// Signing key of issued tokens (at least 32 bytes; shared by all replicas).
    pub signing_key: Option<Secret>,
    pub signing_key_file: Option<PathBuf>,
    /// Lifetime of an issued token.
    pub token_ttl_s: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            signing_key: None,
            signing_key_file: None,
            token_ttl_s: 3600,
        }
    }
}

/// One OAuth client: its id and its secret (or the secret's SHA-256).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthClientConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub client_secret_sha256: Option<String>,
}

/// Smallest shared secret for HMAC signatures.
pub const MIN_HMAC_SECRET: usize = 32;

/// Fewest characters of a configured bearer token or client secret; a presented token
/// shorter than this never matches a configured SHA-256 either (`http/auth.rs`).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The name of entry `i` of a credential list: its own, or `<kind>-<i>`.
pub fn credential_name(name: &str, kind: &str, i: usize) -> String {
    if name.trim().is_empty() {
        format!("{kind}-{i}")
    } else {
        name.to_owned()
    }
}

pub(super) fn resolve_admin(admin: &mut AdminConfig, errors: &mut Vec<ConfigError>) {
    resolve_secret(&mut admin.token, &admin.token_file, "admin.token", errors);
    if admin.token.is_some() || admin.token_sha256.is_some() {
        admin.bearer_tokens.push(BearerTokenConfig {
            name: "admin".into(),
            token: admin.token.take(),
            token_file: None,
            sha256: admin.token_sha256.take(),
        });
        admin.token_file = None;
    }
    for (i, k) in admin.bearer_tokens.iter_mut().enumerate() {
        let name = format!("admin.bearer_tokens[{i}].token");
        resolve_secret(&mut k.token, &k.token_file, &name, errors);
    }
}

/// Reads the `*_file` secrets of the tenant's non-token credentials.
pub(super) fn resolve_credentials(
    at: &str,
    c: &mut super::CredentialsConfig,
    errors: &mut Vec<ConfigError>,
) {
    for (i, b) in c.basic.iter_mut().enumerate() {
        let name = format!("{at}.basic[{i}].password_hash");
        resolve_secret(&mut b.password_hash, &b.password_hash_file, &name, errors);
    }
    for (i, j) in c.jwt.iter_mut().enumerate() {
        let name = format!("{at}.jwt[{i}].hs256_secret");
        resolve_secret(&mut j.hs256_secret, &j.hs256_secret_file, &name, errors);
        j.apply_entra_defaults();
    }
    if let Some(o) = &mut c.oauth {
        let name = format!("{at}.oauth.signing_key");
        resolve_secret(&mut o.signing_key, &o.signing_key_file, &name, errors);
        for (i, k) in o.clients.iter_mut().enumerate() {
            let name = format!("{at}.oauth.clients[{i}].client_secret");
            resolve_secret(&mut k.client_secret, &k.client_secret_file, &name, errors);
        }
    }
}

/// Checks one list of bearer tokens.
pub(super) fn validate_tokens(
    at: &str,
    tokens: &[BearerTokenConfig],
    err: &mut impl FnMut(String, &str),
) {
    for (ki, k) in tokens.iter().enumerate() {
        let kat = |f: &str| format!("{at}[{ki}].{f}");
        match (&k.token, &k.sha256) {
            (None, None) => err(kat("token"), "set token, token_file or sha256"),
            (Some(_), Some(_)) => err(kat("token"), "set either token or sha256, not both"),
            (Some(tok), None) if tok.expose().len() < MIN_TOKEN_CHARS => err(
                kat("token"),
                "too short: use at least 16 characters (scim-bridge token new)",
            ),
            (None, Some(h)) if parse_sha256_hex(h).is_none() => {
                err(kat("sha256"), "must be 64 hexadecimal characters")
            }
            _ => {}
        }
    }
}

/// Checks the tenant's Basic, JWT and OAuth credentials.
pub(super) fn validate_credentials(
    at: &str,
    c: &super::CredentialsConfig,
    err: &mut impl FnMut(String, &str),
) {
    validate_basic(at, &c.basic, err);
    for (i, j) in c.jwt.iter().enumerate() {
        validate_jwt(at, i, j, err);
    }
    if let Some(o) = &c.oauth {
        validate_oauth(at, o, err);
    }
}

/// Checks the Basic credentials: user names usable and distinct, one password form each.
fn validate_basic(at: &str, basic: &[BasicCredentialConfig], err: &mut impl FnMut(String, &str)) {
    let mut usernames = std::collections::HashSet::new();
    for (i, b) in basic.iter().enumerate() {
        let bat = |f: &str| format!("{at}.basic[{i}].{f}");
        if b.username.is_empty()
            || b.username.contains(':')
            || b.username.chars().any(char::is_control)
        {
            err(
                bat("username"),
                "must be non-empty, without ':' or control characters",
            );
        } else if !usernames.insert(b.username.clone()) {
            err(
                bat("username"),
                "another Basic credential has the same user name",
            );
        }
        match (&b.password_sha256, &b.password_hash) {
            (Some(_), Some(_)) => err(
                bat("password_sha256"),
                "set password_sha256 or password_hash, not both",
            ),
            (Some(h), None) if parse_sha256_hex(h).is_none() => err(
                bat("password_sha256"),
                "must be 64 hex digits (scim-bridge token new --basic USER prints it)",
            ),
            (Some(_), None) => {}
            (None, None) => err(
                bat("password_sha256"),
                "set password_sha256 (scim-bridge token new --basic USER prints it), or password_hash or password_hash_file for a chosen password",
            ),
            (None, Some(h)) if !h.expose().starts_with("$argon2") => err(
                bat("password_hash"),
                "must be an Argon2 hash in PHC form ($argon2id$...); a generated password's SHA-256 goes in password_sha256",
            ),
            (None, Some(h)) if argon2::PasswordHash::new(h.expose()).is_err() => {
                err(bat("password_hash"), "is not a valid PHC hash string")
            }
            (None, Some(_)) => {}
        }
    }
}

/// Checks the `i`th JWT credential: issuer, audience, one key source and algorithms that
/// match it.
fn validate_jwt(at: &str, i: usize, j: &JwtConfig, err: &mut impl FnMut(String, &str)) {
    let jat = |f: &str| format!("{at}.jwt[{i}].{f}");
    if j.issuer.trim().is_empty() {
        err(jat("issuer"), "required (or set entra_tenant_id)");
    }
    if j.audience.iter().all(|a| a.trim().is_empty()) {
        err(
            jat("audience"),
            "required: the audience value your IdP puts in its tokens",
        );
    }
    let sources = usize::from(j.hs256_secret.is_some())
        + usize::from(j.public_key_file.is_some())
        + usize::from(j.jwks_url.is_some());
    if sources != 1 {
        err(
            jat("hs256_secret"),
            "set exactly one key source: hs256_secret, public_key_file or jwks_url",
        );
    }
    if let Some(s) = &j.hs256_secret {
        if s.expose().len() < MIN_HMAC_SECRET {
            err(jat("hs256_secret"), "too short: use at least 32 bytes");
        }
    }
    if let Some(u) = &j.jwks_url {
        if !matches!(u.scheme(), "http" | "https") {
            err(jat("jwks_url"), "must be an http:// or https:// URL");
        }
    }
    if let Some(p) = &j.public_key_file {
        if !p.exists() {
            err(jat("public_key_file"), "file does not exist");
        }
    }
    let mut hmac = false;
    let mut public = false;
    for a in &j.algorithms {
        match a.as_str() {
            "HS256" | "HS384" | "HS512" => hmac = true,
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" => {
                public = true
            }
            _ => err(
                jat("algorithms"),
                "unknown or unsafe algorithm: use HS256/384/512, RS256/384/512, PS256/384/512, ES256 or ES384",
            ),
        }
    }
    if hmac && public {
        err(
            jat("algorithms"),
            "HMAC (HS*) and public-key algorithms cannot be allowed together",
        );
    }
    if hmac && j.hs256_secret.is_none() || public && j.hs256_secret.is_some() {
        err(
            jat("algorithms"),
            "the algorithms do not match the key source",
        );
    }
}

/// Checks `oauth`: the signing key, the token lifetime and the clients.
fn validate_oauth(at: &str, o: &OAuthConfig, err: &mut impl FnMut(String, &str)) {
    match &o.signing_key {
        None => err(
            format!("{at}.oauth.signing_key"),
            "required: a random secret of at least 32 bytes shared by all replicas (scim-bridge token new)",
        ),
        Some(k) if k.expose().len() < MIN_HMAC_SECRET => err(
            format!("{at}.oauth.signing_key"),
            "too short: use at least 32 bytes",
        ),
        _ => {}
    }
    if o.token_ttl_s == 0 || o.token_ttl_s > 86_400 {
        err(
            format!("{at}.oauth.token_ttl_s"),
            "must be between 1 and 86400 seconds",
        );
    }
    if o.clients.is_empty() {
        err(
            format!("{at}.oauth.clients"),
            "at least one client is required",
        );
    }
    let mut ids = std::collections::HashSet::new();
    for (i, k) in o.clients.iter().enumerate() {
        let kat = |f: &str| format!("{at}.oauth.clients[{i}].{f}");
        if k.client_id.trim().is_empty() || k.client_id.chars().any(char::is_control) {
            err(
                kat("client_id"),
                "must be non-empty, without control characters",
            );
        } else if !ids.insert(k.client_id.clone()) {
            err(kat("client_id"), "another client has the same id");
        }
        match (&k.client_secret, &k.client_secret_sha256) {
            (None, None) => err(
                kat("client_secret"),
                "set client_secret, client_secret_file or client_secret_sha256",
            ),
            (Some(_), Some(_)) => err(
                kat("client_secret"),
                "set either client_secret or client_secret_sha256, not both",
            ),
            (Some(s), None) if s.expose().len() < MIN_TOKEN_CHARS => err(
                kat("client_secret"),
                "too short: use at least 16 characters",
            ),
            (None, Some(h)) if parse_sha256_hex(h).is_none() => err(
                kat("client_secret_sha256"),
                "must be 64 hexadecimal characters",
            ),
            _ => {}
        }
    }
}

/// Checks `[http]`.
pub(super) fn validate_http(h: &HttpConfig, err: &mut impl FnMut(String, &str)) {
    let positive = [
        ("http.max_body_bytes", h.max_body_bytes),
        ("http.bulk_max_payload_bytes", h.bulk_max_payload_bytes),
        ("http.bulk_max_operations", h.bulk_max_operations),
        ("http.max_header_bytes", h.max_header_bytes),
        ("http.max_results", h.max_results),
        ("http.default_count", h.default_count),
        ("http.filter_max_length", h.filter_max_length),
        ("http.filter_max_depth", h.filter_max_depth),
    ];
    for (name, v) in positive {
        if v == 0 {
            err(name.into(), "must be greater than 0");
        }
    }
    if h.request_timeout_s == 0 {
        err("http.request_timeout_s".into(), "must be greater than 0");
    }
    if h.max_connections == 0 || h.max_connections > MAX_CONNECTIONS_LIMIT {
        err(
            "http.max_connections".into(),
            &format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
        );
    }
    let mut seconds = vec![
        (
            "http.header_read_timeout_s",
            h.header_read_timeout_s,
            MAX_HEAD_TIMEOUT_S,
        ),
        ("http.idle_timeout_s", h.idle_timeout_s, MAX_IDLE_TIMEOUT_S),
    ];
    if let Some(t) = &h.tls {
        seconds.push((
            "http.tls.handshake_timeout_s",
            t.handshake_timeout_s,
            MAX_HEAD_TIMEOUT_S,
        ));
    }
    for (name, v, max) in seconds {
        if v == 0 || v > max {
            err(name.into(), &format!("must be between 1 and {max} seconds"));
        }
    }
    if h.basic_auth_max_concurrent > 1024 {
        err(
            "http.basic_auth_max_concurrent".into(),
            "must be at most 1024 (0: half the CPUs)",
        );
    }
    if h.default_count > h.max_results {
        err(
            "http.default_count".into(),
            "must not exceed http.max_results",
        );
    }
    validate_rate_limits(h, err);
    validate_proxies_and_tls(h, err);
}

/// Checks `http.rate_limit` and `http.auth_failure_limit`.
fn validate_rate_limits(h: &HttpConfig, err: &mut impl FnMut(String, &str)) {
    for (name, r) in [
        ("http.rate_limit", h.rate_limit),
        ("http.auth_failure_limit", h.auth_failure_limit),
    ] {
        if !r.per_second.is_finite() || r.per_second < 0.0 {
            err(
                format!("{name}.per_second"),
                "must be 0 (off) or a positive number",
            );
        } else if r.enabled() && r.burst == 0 {
            err(
                format!("{name}.burst"),
                "must be at least 1 when the limit is on",
            );
        }
    }
}

/// Checks the trusted proxies (addresses or CIDR ranges) and that the TLS files exist.
fn validate_proxies_and_tls(h: &HttpConfig, err: &mut impl FnMut(String, &str)) {
    for (i, p) in h.trusted_proxies.iter().enumerate() {
        if parse_proxy(p).is_none() {
            err(
                format!("http.trusted_proxies[{i}]"),
                "must be an IP address or a CIDR range (10.0.0.0/8, fd00::/8)",
            );
        }
    }
    if let Some(t) = &h.tls {
        for (name, p) in [
            ("http.tls.cert_file", &t.cert_file),
            ("http.tls.key_file", &t.key_file),
        ] {
            if !p.exists() {
                err(name.into(), "file does not exist");
            }
        }
    }
}

/// Parses a trusted proxy entry: an address or a CIDR range.
pub fn parse_proxy(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(h: &HttpConfig) -> Vec<(String, String)> {
        let mut out = Vec::new();
        validate_http(h, &mut |name, why| out.push((name, why.to_owned())));
        out
    }

    #[test]
    fn connection_limits_default_to_safe_values_and_refuse_zero_and_absurd_ones() {
        let d = HttpConfig::default();
        assert_eq!(
            (d.max_connections, d.header_read_timeout_s, d.idle_timeout_s),
            (1024, 10, 75)
        );
        assert!(problems(&d).is_empty(), "{:?}", problems(&d));

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let tls: TlsConfig = toml::from_str(&format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ))
        .unwrap();
        assert_eq!(tls.handshake_timeout_s, 10);

        // Zero, then one past the largest accepted value: every setting is named.
        for (connections, head, idle) in [
            (0, 0, 0),
            (
                MAX_CONNECTIONS_LIMIT + 1,
                MAX_HEAD_TIMEOUT_S + 1,
                MAX_IDLE_TIMEOUT_S + 1,
            ),
        ] {
            let h = HttpConfig {
                max_connections: connections,
                header_read_timeout_s: head,
                idle_timeout_s: idle,
                tls: Some(TlsConfig {
                    handshake_timeout_s: head,
                    ..tls.clone()
                }),
                ..HttpConfig::default()
            };
            let p = problems(&h);
            let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "http.max_connections",
                    "http.header_read_timeout_s",
                    "http.idle_timeout_s",
                    "http.tls.handshake_timeout_s",
                ],
            );
            assert!(p[0].1.contains("between 1 and 1000000"), "{p:?}");
            assert!(p[1].1.contains("between 1 and 300 seconds"), "{p:?}");
            assert!(p[2].1.contains("between 1 and 3600 seconds"), "{p:?}");
        }
    }

    #[test]
    fn connection_limits_come_from_the_environment_and_errors_name_them() {
        let load = |pairs: &[(&str, &str)]| {
            crate::config::Config::load(&crate::config::Sources {
                file: None,
                env: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            })
        };
        let c = load(&[
            ("SCIM_BRIDGE_HTTP__MAX_CONNECTIONS", "64"),
            ("SCIM_BRIDGE_HTTP__HEADER_READ_TIMEOUT_S", "5"),
            ("SCIM_BRIDGE_HTTP__IDLE_TIMEOUT_S", "30"),
        ])
        .unwrap();
        assert_eq!(
            (
                c.http.max_connections,
                c.http.header_read_timeout_s,
                c.http.idle_timeout_s
            ),
            (64, 5, 30)
        );
        let err = load(&[
            ("SCIM_BRIDGE_HTTP__MAX_CONNECTIONS", "0"),
            ("SCIM_BRIDGE_HTTP__IDLE_TIMEOUT_S", "0"),
        ])
        .unwrap_err()
        .to_string();
        for name in ["MAX_CONNECTIONS", "IDLE_TIMEOUT_S"] {
            assert!(err.to_ascii_uppercase().contains(name), "{name}: {err}");
        }
    }
}
