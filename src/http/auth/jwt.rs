//! Bearer JWT validation (HS256 secrets, RSA/EC public keys from PEM files or a JWKS URL) and
//! the signing of the tokens the tenant's own OAuth token endpoint issues.
//!
//! JWT per RFC 7519 (claims `iss`, `aud`, `exp`, `nbf`, section 4.1), JWS compact form per
//! RFC 7515 section 7.1, JWK sets per RFC 7517 section 5, following the JWT best current
//! practices of RFC 8725: the accepted `alg` comes from configuration, never from the token
//! alone (section 3.1), a key verifies only algorithms of its own family (no HS/RS confusion),
//! `none` is never accepted, and keys embedded in the token header (`jwk`, `jku`, `x5u`,
//! `x5c`) are ignored.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::config::JwtConfig;
use crate::secret::Secret;

/// Largest token accepted (bytes); longer ones are `TooLarge` without parsing.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Deadline of one JWKS request, body included.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document read (Entra's is about 10 KiB).
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// Largest clock-skew allowance used. `jsonwebtoken` subtracts the leeway from the current
/// time without checking, so an absurd setting must not reach it.
const MAX_LEEWAY_S: u64 = 86_400;

/// Clock skew allowed on the `nbf` of the bridge's own tokens (replicas' clocks differ a
/// little); their `exp` gets none.
pub const ISSUED_NBF_LEEWAY_S: u64 = 30;

/// Why a JWT was refused: for logs and metrics only, never told to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    /// Not a JWS compact string with JSON header and claims.
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// `alg` is `none`, unknown, not allowed, or not of the key's family.
    Algorithm,
    /// No key with the token's `kid` (or, without `kid`, no single key to use).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` holds none of the configured audiences.
    Audience,
    /// `exp`, `iss` or `aud` is missing.
    MissingClaim,
    /// The JWKS could not be fetched and no earlier copy is cached.
    KeysUnavailable,
}

impl JwtRejection {
    /// A stable snake_case label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::MissingClaim => "missing_claim",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl fmt::Display for JwtRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims the bridge uses.
#[derive(Debug, Clone)]
pub struct JwtClaims {
    pub subject: Option<String>,
    pub issuer: String,
    pub expires_at: i64,
    /// The `client_id` (RFC 9068), `azp` (OpenID Connect) or `appid` (Entra v1) claim.
    pub client_id: Option<String>,
}

/// Validates bearer JWTs of one configured credential. Cheap to clone.
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `nbf`.
    leeway_s: u64,
    /// Clock skew allowed on `exp`: `leeway_s` for outside issuers, 0 for the bridge's own
    /// tokens (they must not outlive the `expires_in` the token endpoint announced).
    exp_leeway_s: u64,
    keys: KeySource,
}

enum KeySource {
    /// A shared secret or a public key from a PEM file.
    Static {
        family: Family,
        key: Arc<DecodingKey>,
    },
    Jwks(Box<Jwks>),
}

/// Which keys verify an algorithm (`jsonwebtoken` keeps its own copy private).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
    }
}

/// The configured algorithms, parsed, without repeats.
fn parse_algorithms(
    config: &JwtConfig,
    fail: &impl Fn(String) -> String,
) -> Result<Vec<Algorithm>, String> {
    let mut algorithms = Vec::new();
    for a in &config.algorithms {
        let alg =
            Algorithm::from_str(a.trim()).map_err(|_| fail(format!("unknown algorithm `{a}`")))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

/// The one configured key source: a shared secret, a public key read from its PEM file now,
/// or a JWKS URL fetched later.
fn key_source(
    config: &JwtConfig,
    http: reqwest::Client,
    fail: &impl Fn(String) -> String,
) -> Result<KeySource, String> {
    let sources = usize::from(config.hs256_secret.is_some())
        + usize::from(config.public_key_file.is_some())
        + usize::from(config.jwks_url.is_some());
    if sources != 1 {
        return Err(fail(
            "set exactly one key source: hs256_secret, public_key_file or jwks_url".into(),
        ));
    }

    let keys = if let Some(secret) = &config.hs256_secret {
        if secret.is_empty() {
            return Err(fail("hs256_secret is empty".into()));
        }
        KeySource::Static {
            family: Family::Hmac,
            key: Arc::new(DecodingKey::from_secret(secret.expose().as_bytes())),
        }
    } else if let Some(path) = &config.public_key_file {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| fail(format!("cannot read public_key_file {shown}: {e}")))?;
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(fail(format!(
                "public_key_file {shown} holds a private key: give the public key"
            )));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            KeySource::Static {
                family: Family::Rsa,
                key: Arc::new(key),
            }
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            KeySource::Static {
                family: Family::Ec,
                key: Arc::new(key),
            }
        } else {
            return Err(fail(format!(
                "public_key_file {shown} is not an RSA or EC public key in PEM form"
            )));
        }
    } else if let Some(url) = &config.jwks_url {
        KeySource::Jwks(Box::new(Jwks {
            credential: config.name.clone(),
            url: url.clone(),
            http,
            allowed: Vec::new(),
            min_refresh: Duration::from_secs(config.jwks_min_refresh_s),
            max_age: Duration::from_secs(config.jwks_max_age_s),
            cache: RwLock::new(None),
            fetch: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }))
    } else {
        return Err(fail("no key source".into()));
    };
    Ok(keys)
}

/// Fills in the key's default algorithm when none is configured, refuses algorithms the key
/// cannot verify, and tells a JWKS which algorithms it may serve.
fn fit_algorithms(
    keys: &mut KeySource,
    algorithms: &mut Vec<Algorithm>,
    fail: &impl Fn(String) -> String,
) -> Result<(), String> {
    match keys {
        KeySource::Static { family: f, .. } => {
            if algorithms.is_empty() {
                algorithms.push(match f {
                    Family::Hmac => Algorithm::HS256,
                    Family::Rsa => Algorithm::RS256,
                    Family::Ec => Algorithm::ES256,
                    Family::Ed => Algorithm::EdDSA,
                });
            }
            if let Some(a) = algorithms.iter().find(|a| family(**a) != *f) {
                return Err(fail(format!(
                    "algorithm {a:?} does not fit the key (a {f:?} key)"
                )));
            }
        }
        KeySource::Jwks(jwks) => {
            if algorithms.is_empty() {
                algorithms.push(Algorithm::RS256);
            }
            if let Some(a) = algorithms.iter().find(|a| family(**a) == Family::Hmac) {
                return Err(fail(format!(
                    "algorithm {a:?} needs a shared secret, not a JWKS URL"
                )));
            }
            jwks.allowed = algorithms.clone();
        }
    }
    Ok(())
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let keys = match &inner.keys {
            KeySource::Static { family, .. } => format!("{family:?} key"),
            KeySource::Jwks(j) => format!("JWKS at {}", shown_url(&j.url)),
        };
        f.debug_struct("JwtValidator")
            .field("name", &inner.name)
            .field("issuer", &inner.issuer)
            .field("audience", &inner.audience)
            .field("algorithms", &inner.algorithms)
            .field("keys", &keys)
            .finish()
    }
}

impl JwtValidator {
    /// From configuration; reads `public_key_file` now (error text names the problem, not the key).
    pub fn from_config(config: &JwtConfig, http: reqwest::Client) -> Result<Self, String> {
        let name = config.name.as_str();
        let fail = |msg: String| format!("jwt credential `{name}`: {msg}");

        let mut algorithms = parse_algorithms(config, &fail)?;
        let mut keys = key_source(config, http, &fail)?;
        fit_algorithms(&mut keys, &mut algorithms, &fail)?;

        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                issuer: config.issuer.clone(),
                audience: audiences(config.audience.iter().map(String::as_str)),
                algorithms,
                leeway_s: config.leeway_s.min(MAX_LEEWAY_S),
                exp_leeway_s: config.leeway_s.min(MAX_LEEWAY_S),
                keys,
            }),
        })
    }

    /// An HS256 validator with `leeway_s` on both `exp` and `nbf`. With an empty secret (which
    /// anyone could sign with) it accepts no token at all.
    pub fn hs256(name: &str, issuer: &str, audience: &str, secret: &Secret, leeway_s: u64) -> Self {
        Self::hmac(name, issuer, audience, secret, leeway_s, leeway_s)
    }

    /// The validator of the tokens the tenant's own token endpoint issues (HS256, `issuer` as
    /// issuer and audience): no leeway on `exp`, so a token is refused from the second its
    /// `expires_in` ends, on every replica whose clock is not behind; [`ISSUED_NBF_LEEWAY_S`]
    /// on `nbf`, so a replica whose clock is a little behind the issuing one still accepts a
    /// fresh token (that adds nothing to its lifetime).
    pub fn issued(name: &str, issuer: &str, secret: &Secret) -> Self {
        Self::hmac(name, issuer, issuer, secret, ISSUED_NBF_LEEWAY_S, 0)
    }

    fn hmac(
        name: &str,
        issuer: &str,
        audience: &str,
        secret: &Secret,
        nbf_leeway_s: u64,
        exp_leeway_s: u64,
    ) -> Self {
        let algorithms = if secret.is_empty() {
            Vec::new()
        } else {
            vec![Algorithm::HS256]
        };
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                issuer: issuer.to_owned(),
                audience: audiences([audience]),
                algorithms,
                leeway_s: nbf_leeway_s.min(MAX_LEEWAY_S),
                exp_leeway_s: exp_leeway_s.min(MAX_LEEWAY_S),
                keys: KeySource::Static {
                    family: Family::Hmac,
                    key: Arc::new(DecodingKey::from_secret(secret.expose().as_bytes())),
                },
            }),
        }
    }

    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Cheap check: could this validator be the right one? True when the token is a JWS
    /// compact string whose header parses and whose `iss` claim, read WITHOUT verification,
    /// equals this validator's issuer. Tokens longer than [`MAX_TOKEN_BYTES`] are never
    /// accepted by anyone, so this answers false for them.
    pub fn accepts_issuer(&self, token: &str) -> bool {
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        let Some((header, payload, _)) = split(token) else {
            return false;
        };
        json_part(header).is_some()
            && json_part(payload)
                .and_then(|claims| match claims.get("iss") {
                    Some(Value::String(iss)) => Some(*iss == self.inner.issuer),
                    _ => None,
                })
                .unwrap_or(false)
    }

    /// Full validation: size, header, algorithm, key, signature, then the claims.
    pub async fn validate(&self, token: &str) -> Result<JwtClaims, JwtRejection> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtRejection::TooLarge);
        }
        let (alg, kid) = read_header(token)?;
        // The allow-list, not the token, decides which algorithm may be used.
        if !inner.algorithms.contains(&alg) {
            return Err(JwtRejection::Algorithm);
        }
        let key = match &inner.keys {
            KeySource::Static { family: f, key } => {
                if family(alg) != *f {
                    return Err(JwtRejection::Algorithm);
                }
                Arc::clone(key)
            }
            KeySource::Jwks(jwks) => jwks.key_for(kid.as_deref(), alg).await?,
        };

        let mut validation = Validation::new(alg);
        validation.leeway = inner.leeway_s;
        // `exp` is checked below, with its own leeway: `jsonwebtoken` has one for both.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[inner.issuer.as_str()]);
        validation.set_audience(&inner.audience);

        let data = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
            .map_err(|e| rejection(e.kind()))?;
        let claims = data.claims.into_claims(&inner.issuer)?;
        // RFC 7519 section 4.1.4: not accepted on or after `exp` (plus the leeway).
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let deadline = claims
            .expires_at
            .saturating_add(i64::try_from(inner.exp_leeway_s).unwrap_or(i64::MAX));
        if now >= deadline {
            return Err(JwtRejection::Expired);
        }
        Ok(claims)
    }
}

/// Non-empty audience values.
fn audiences<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .filter(|a| !a.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Header, payload and signature of a JWS compact string; `None` unless there are exactly
/// three parts and the first two are non-empty.
fn split(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    Some((header, payload, signature))
}

/// A base64url-encoded JSON object.
fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The token's `alg` and `kid`, read before anything is verified.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), JwtRejection> {
    let (header, _, _) = split(token).ok_or(JwtRejection::Malformed)?;
    let header = json_part(header).ok_or(JwtRejection::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(JwtRejection::Malformed),
    };
    // `none` (in any case) and every name `jsonwebtoken` does not know land here.
    let alg = Algorithm::from_str(alg).map_err(|_| JwtRejection::Algorithm)?;
    // RFC 7515 section 4.1.11: extensions we do not understand make the token invalid.
    if header.contains_key("crit") {
        return Err(JwtRejection::Malformed);
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtRejection::Malformed),
    };
    Ok((alg, kid))
}

/// Maps a `jsonwebtoken` failure to the reason logged.
fn rejection(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => JwtRejection::Signature,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidIssuer => JwtRejection::Issuer,
        ErrorKind::InvalidAudience => JwtRejection::Audience,
        ErrorKind::MissingRequiredClaim(_) => JwtRejection::MissingClaim,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtRejection::Algorithm,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            JwtRejection::UnknownKey
        }
        _ => JwtRejection::Malformed,
    }
}

/// The claims read after `jsonwebtoken` has checked the signature, `exp`, `nbf`, `iss` and
/// `aud`; kept loose so that a missing or odd claim is reported by name, not as bad JSON.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    client_id: Option<Value>,
    #[serde(default)]
    azp: Option<Value>,
    #[serde(default)]
    appid: Option<Value>,
}

impl RawClaims {
    fn into_claims(self, issuer: &str) -> Result<JwtClaims, JwtRejection> {
        // `jsonwebtoken` also accepts an array `iss` that contains the issuer.
        match &self.iss {
            Some(Value::String(iss)) if iss == issuer => {}
            _ => return Err(JwtRejection::Issuer),
        }
        // A non-numeric `nbf` is skipped by `jsonwebtoken`; refuse it rather than ignore it.
        if matches!(&self.nbf, Some(v) if !v.is_null() && !v.is_number()) {
            return Err(JwtRejection::Malformed);
        }
        let expires_at = match &self.exp {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or(JwtRejection::Malformed)?,
            _ => return Err(JwtRejection::MissingClaim),
        };
        let client_id = match string_claim(self.client_id)? {
            Some(id) => Some(id),
            None => match string_claim(self.azp)? {
                Some(id) => Some(id),
                None => string_claim(self.appid)?,
            },
        };
        Ok(JwtClaims {
            subject: string_claim(self.sub)?,
            issuer: issuer.to_owned(),
            expires_at,
            client_id,
        })
    }
}

fn string_claim(value: Option<Value>) -> Result<Option<String>, JwtRejection> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtRejection::Malformed),
    }
}

/// The signing keys published at a JWKS URL, cached.
///
/// Reads take the cache's read lock only long enough to clone an `Arc`. Fetches are serialised
/// by `fetch`, which also remembers when the last one started: the set is fetched again when it
/// is older than `max_age`, or when a token names a key it lacks, but never twice within
/// `min_refresh`, so a flood of made-up `kid`s costs one request per interval.
struct Jwks {
    /// The credential's name, for the log.
    credential: String,
    url: Url,
    http: reqwest::Client,
    /// Keys whose `alg` is outside this list are ignored.
    allowed: Vec<Algorithm>,
    min_refresh: Duration,
    max_age: Duration,
    cache: RwLock<Option<Arc<KeySet>>>,
    /// Start of the last fetch attempt (successful or not).
    fetch: Mutex<Option<Instant>>,
    /// Fetch attempts finished; a task that waited for the lock sees whether one happened
    /// meanwhile and then uses its result instead of fetching again.
    fetches: AtomicU64,
}

struct KeySet {
    keys: Vec<JwksKey>,
    fetched_at: Instant,
}

struct JwksKey {
    kid: Option<String>,
    /// The key's own `alg`, or the one its curve implies (EC and OKP keys).
    alg: Option<Algorithm>,
    family: Family,
    key: Arc<DecodingKey>,
}

impl KeySet {
    /// The key for a token: by `kid`, or the only key of a one-key set when the token has no
    /// `kid`. `Ok(None)` means the set lacks it (a fetch may help); an error means the key
    /// exists but does not verify the token's algorithm.
    fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<Arc<DecodingKey>>, JwtRejection> {
        let fits = |k: &&JwksKey| k.family == family(alg) && k.alg.is_none_or(|a| a == alg);
        let candidates: Vec<&JwksKey> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => Vec::new(),
        };
        if candidates.is_empty() {
            return Ok(None);
        }
        candidates
            .into_iter()
            .find(fits)
            .map(|k| Some(Arc::clone(&k.key)))
            .ok_or(JwtRejection::Algorithm)
    }
}

impl Jwks {
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, JwtRejection> {
        // Read the counter before the cache: a fetch that ends after this point is noticed.
        let seen = self.fetches.load(Ordering::Acquire);
        let cached = self.cache.read().await.clone();
        if let Some(set) = &cached {
            if set.fetched_at.elapsed() < self.max_age {
                if let Some(key) = set.find(kid, alg)? {
                    return Ok(key);
                }
            }
        }
        match self.refresh(seen).await {
            // A stale set is still used when it could not be replaced.
            Some(set) => set.find(kid, alg)?.ok_or(JwtRejection::UnknownKey),
            None => Err(JwtRejection::KeysUnavailable),
        }
    }

    /// Fetches the set unless another task did while this one waited, or the last attempt is
    /// younger than `min_refresh`; returns the set now cached.
    async fn refresh(&self, seen: u64) -> Option<Arc<KeySet>> {
        let mut last_attempt = self.fetch.lock().await;
        let someone_else_fetched = self.fetches.load(Ordering::Acquire) != seen;
        let due = last_attempt.is_none_or(|at| at.elapsed() >= self.min_refresh);
        if !someone_else_fetched && due {
            *last_attempt = Some(Instant::now());
            match self.download().await {
                Ok(keys) => {
                    tracing::debug!(credential = %self.credential, keys = keys.len(), "JWKS fetched");
                    *self.cache.write().await = Some(Arc::new(KeySet {
                        keys,
                        fetched_at: Instant::now(),
                    }));
                }
                Err(error) => tracing::warn!(
                    credential = %self.credential,
                    url = %shown_url(&self.url),
                    %error,
                    "cannot fetch the JWKS"
                ),
            }
            self.fetches.fetch_add(1, Ordering::Release);
        }
        drop(last_attempt);
        self.cache.read().await.clone()
    }

    async fn download(&self) -> Result<Vec<JwksKey>, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(JWKS_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body, &self.allowed)
    }
}

/// A URL without user info or query, which could hold credentials, for logs.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have them; there is nothing to hide then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The usable signing keys of a JWKS document. Keys are read one by one, so that one key of
/// an unknown type or algorithm does not hide the others; keys meant for encryption, of an
/// algorithm outside `allowed`, or symmetric are left out.
fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<Vec<JwksKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys: Vec<JwksKey> = document
        .keys
        .into_iter()
        .filter_map(|key| usable_key(key, allowed))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key".into());
    }
    Ok(keys)
}

fn usable_key(value: Value, allowed: &[Algorithm]) -> Option<JwksKey> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let common = &jwk.common;
    if !matches!(common.public_key_use, None | Some(PublicKeyUse::Signature)) {
        return None;
    }
    if let Some(ops) = &common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    // An `alg` that is no signature algorithm (RSA-OAEP...) fails to convert.
    let declared = match common.key_algorithm {
        Some(a) => Some(Algorithm::from_str(&a.to_string()).ok()?),
        None => None,
    };
    let (key_family, implied) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Family::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (Family::Ec, Some(Algorithm::ES256)),
            EllipticCurve::P384 => (Family::Ec, Some(Algorithm::ES384)),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Family::Ed, Some(Algorithm::EdDSA))
        }
        // A shared secret has no place in a published key set.
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match (declared, implied) {
        (Some(d), Some(i)) if d != i => return None,
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    match alg {
        Some(a) if family(a) != key_family || !allowed.contains(&a) => return None,
        None if !allowed.iter().any(|a| family(*a) == key_family) => return None,
        _ => {}
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(JwksKey {
        kid: common.key_id.clone(),
        alg,
        family: key_family,
        key: Arc::new(key),
    })
}

/// The claims of a token issued by the OAuth client-credentials endpoint.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    client_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// Signs a token for the OAuth client-credentials endpoint: HS256, claims iss, aud, sub
/// (= client_id), client_id, iat, nbf, exp (= now + ttl), jti (random uuid v4).
pub fn issue_hs256(
    secret: &Secret,
    issuer: &str,
    audience: &str,
    client_id: &str,
    ttl_s: u64,
) -> Result<String, String> {
    if secret.is_empty() {
        return Err("the signing key is empty".into());
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = IssuedClaims {
        iss: issuer,
        aud: audience,
        sub: client_id,
        client_id,
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl_s),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}

#[cfg(test)]
mod tests;
