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

        let mut algorithms = Vec::new();
        for a in &config.algorithms {
            let alg = Algorithm::from_str(a.trim())
                .map_err(|_| fail(format!("unknown algorithm `{a}`")))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }

        let sources = usize::from(config.hs256_secret.is_some())
            + usize::from(config.public_key_file.is_some())
            + usize::from(config.jwks_url.is_some());
        if sources != 1 {
            return Err(fail(
                "set exactly one key source: hs256_secret, public_key_file or jwks_url".into(),
            ));
        }

        let mut keys = if let Some(secret) = &config.hs256_secret {
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

        match &mut keys {
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
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    use axum::response::IntoResponse;
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.example.test/";
    const AUDIENCE: &str = "api://scim-bridge";
    const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";

    fn key_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
    }

    fn key_file(name: &str) -> Vec<u8> {
        std::fs::read(key_path(name)).unwrap()
    }

    fn jwks_file(name: &str) -> String {
        String::from_utf8(key_file(name)).unwrap()
    }

    /// The first key of a JWKS fixture.
    fn jwk_of(name: &str) -> Value {
        let set: Value = serde_json::from_str(&jwks_file(name)).unwrap();
        set["keys"][0].clone()
    }

    fn kid_of(name: &str) -> String {
        jwk_of(name)["kid"].as_str().unwrap().to_owned()
    }

    fn rsa_signer(name: &str) -> EncodingKey {
        EncodingKey::from_rsa_pem(&key_file(name)).unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "okta", "iat": now(), "exp": now() + 600})
    }

    fn set(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn unset(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            claims,
        )
    }

    fn rs256(claims: &Value) -> String {
        sign(
            Algorithm::RS256,
            &rsa_signer("rsa-private.pem"),
            Some(&kid_of("rsa-jwks.json")),
            claims,
        )
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn config() -> JwtConfig {
        JwtConfig {
            name: "idp".into(),
            issuer: ISSUER.into(),
            audience: vec![AUDIENCE.into()],
            ..JwtConfig::default()
        }
    }

    fn validator(config: JwtConfig) -> JwtValidator {
        JwtValidator::from_config(&config, http()).unwrap()
    }

    fn hs256_validator() -> JwtValidator {
        validator(JwtConfig {
            hs256_secret: Some(Secret::new(SECRET)),
            ..config()
        })
    }

    fn pem_validator(file: &str, algorithms: &[&str]) -> JwtValidator {
        validator(JwtConfig {
            public_key_file: Some(key_path(file)),
            algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
            ..config()
        })
    }

    fn jwks_validator(url: &Url, min_refresh_s: u64, max_age_s: u64) -> JwtValidator {
        validator(JwtConfig {
            jwks_url: Some(url.clone()),
            jwks_min_refresh_s: min_refresh_s,
            jwks_max_age_s: max_age_s,
            ..config()
        })
    }

    /// A JWKS endpoint on 127.0.0.1 that counts its requests; `None` answers 500.
    struct JwksServer {
        url: Url,
        fetches: Arc<AtomicUsize>,
        body: Arc<std::sync::Mutex<Option<String>>>,
    }

    impl JwksServer {
        async fn start(body: Option<String>, delay: Duration) -> Self {
            let fetches = Arc::new(AtomicUsize::new(0));
            let body = Arc::new(std::sync::Mutex::new(body));
            let (count, current) = (Arc::clone(&fetches), Arc::clone(&body));
            let app = axum::Router::new().route(
                "/keys",
                axum::routing::get(move || {
                    let (count, current) = (Arc::clone(&count), Arc::clone(&current));
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let body = current.lock().unwrap().clone();
                        match body {
                            Some(body) => (
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                body,
                            )
                                .into_response(),
                            None => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self {
                url: Url::parse(&format!("http://{addr}/keys")).unwrap(),
                fetches,
                body,
            }
        }

        fn serve(&self, body: Option<String>) {
            *self.body.lock().unwrap() = body;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn validator_is_cheap_to_share_and_its_future_is_send() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        fn send<T: Send>(_: &T) {}
        shareable::<JwtValidator>();
        let v = hs256_validator();
        send(&v.validate("x"));
    }

    #[tokio::test]
    async fn hs256_token_is_accepted() {
        let v = hs256_validator();
        let exp = now() + 600;
        let token = hs256(&set(claims(), "exp", json!(exp)));
        let claims = v.validate(&token).await.unwrap();
        assert_eq!(claims.issuer, ISSUER);
        assert_eq!(claims.subject.as_deref(), Some("okta"));
        assert_eq!(claims.expires_at, exp);
        assert_eq!(claims.client_id, None);
        assert_eq!(v.name(), "idp");
    }

    #[tokio::test]
    async fn rs256_token_with_pem_key_is_accepted() {
        let v = pem_validator("rsa-public.pem", &[]);
        let token = sign(
            Algorithm::RS256,
            &rsa_signer("rsa-private.pem"),
            None,
            &set(claims(), "azp", json!("okta-app")),
        );
        let claims = v.validate(&token).await.unwrap();
        assert_eq!(claims.client_id.as_deref(), Some("okta-app"));
    }

    #[tokio::test]
    async fn es256_token_with_pem_key_is_accepted() {
        let v = pem_validator("ec-public.pem", &[]);
        let signer = EncodingKey::from_ec_pem(&key_file("ec-private.pem")).unwrap();
        let token = sign(
            Algorithm::ES256,
            &signer,
            None,
            &set(claims(), "client_id", json!("c-1")),
        );
        let got = v.validate(&token).await.unwrap();
        assert_eq!(got.client_id.as_deref(), Some("c-1"));
        // An RSA token is not for an EC key.
        let rsa = sign(
            Algorithm::RS256,
            &rsa_signer("rsa-private.pem"),
            None,
            &claims(),
        );
        assert_eq!(v.validate(&rsa).await.unwrap_err(), JwtRejection::Algorithm);
    }

    #[tokio::test]
    async fn rs256_token_from_jwks_is_accepted_and_the_set_is_cached() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 60, 3600);
        v.validate(&rs256(&claims())).await.unwrap();
        v.validate(&rs256(&claims())).await.unwrap();
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn entra_id_token_is_accepted() {
        // Entra ID v1 access token: RS256, `kid` and `x5t` headers, `sts.windows.net` issuer,
        // the app's id as audience, `appid` for the calling client; keys without `alg`.
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let audience = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let mut config = JwtConfig {
            name: "entra".into(),
            audience: vec![audience.into()],
            entra_tenant_id: Some(tenant.into()),
            jwks_url: Some(server.url.clone()),
            ..JwtConfig::default()
        };
        config.apply_entra_defaults();
        assert_eq!(config.jwks_url.as_ref(), Some(&server.url));
        let v = validator(config);

        let issuer = format!("https://sts.windows.net/{tenant}/");
        let kid = kid_of("rsa-jwks.json");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        header.x5t = Some(kid);
        let claims = json!({
            "aud": audience,
            "iss": issuer,
            "iat": now() - 60,
            "nbf": now() - 60,
            "exp": now() + 3540,
            "aio": "E2ZgYJj+test",
            "appid": "a0e1c5d4-1111-2222-3333-444455556666",
            "appidacr": "2",
            "idp": issuer,
            "oid": "0b3ee2a4-7777-8888-9999-000011112222",
            "rh": "0.AAAA-test.",
            "roles": ["Provisioning"],
            "sub": "0b3ee2a4-7777-8888-9999-000011112222",
            "tid": tenant,
            "uti": "t3stUt1",
            "ver": "1.0"
        });
        let token = jsonwebtoken::encode(&header, &claims, &rsa_signer("rsa-private.pem")).unwrap();
        assert!(v.accepts_issuer(&token));
        let got = v.validate(&token).await.unwrap();
        assert_eq!(got.issuer, issuer);
        assert_eq!(
            got.client_id.as_deref(),
            Some("a0e1c5d4-1111-2222-3333-444455556666")
        );
        assert_eq!(
            got.subject.as_deref(),
            Some("0b3ee2a4-7777-8888-9999-000011112222")
        );
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn expired_token_is_rejected() {
        let token = hs256(&set(claims(), "exp", json!(now() - 120)));
        assert_eq!(
            hs256_validator().validate(&token).await.unwrap_err(),
            JwtRejection::Expired
        );
    }

    #[tokio::test]
    async fn expired_token_within_leeway_is_accepted() {
        let token = hs256(&set(claims(), "exp", json!(now() - 30)));
        hs256_validator().validate(&token).await.unwrap();
        let strict = validator(JwtConfig {
            hs256_secret: Some(Secret::new(SECRET)),
            leeway_s: 0,
            ..config()
        });
        assert_eq!(
            strict.validate(&token).await.unwrap_err(),
            JwtRejection::Expired
        );
    }

    #[tokio::test]
    async fn token_not_yet_valid_is_rejected() {
        let v = hs256_validator();
        let future = hs256(&set(claims(), "nbf", json!(now() + 300)));
        assert_eq!(
            v.validate(&future).await.unwrap_err(),
            JwtRejection::NotYetValid
        );
        let within_leeway = hs256(&set(claims(), "nbf", json!(now() + 30)));
        v.validate(&within_leeway).await.unwrap();
        let not_a_time = hs256(&set(claims(), "nbf", json!("tomorrow")));
        assert_eq!(
            v.validate(&not_a_time).await.unwrap_err(),
            JwtRejection::Malformed
        );
    }

    #[tokio::test]
    async fn wrong_issuer_is_rejected() {
        let v = hs256_validator();
        for iss in [
            json!("https://evil.example.test/"),
            json!("https://idp.example.test"),
            json!([ISSUER]),
        ] {
            let token = hs256(&set(claims(), "iss", iss.clone()));
            assert_eq!(
                v.validate(&token).await.unwrap_err(),
                JwtRejection::Issuer,
                "{iss}"
            );
        }
        let token = hs256(&unset(claims(), "iss"));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::MissingClaim
        );
    }

    #[tokio::test]
    async fn wrong_audience_is_rejected() {
        let v = hs256_validator();
        let token = hs256(&set(claims(), "aud", json!("api://other")));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Audience
        );
        let token = hs256(&unset(claims(), "aud"));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::MissingClaim
        );
    }

    #[tokio::test]
    async fn audience_array_must_contain_a_configured_audience() {
        let v = hs256_validator();
        let token = hs256(&set(claims(), "aud", json!(["api://other", AUDIENCE])));
        v.validate(&token).await.unwrap();
        let token = hs256(&set(claims(), "aud", json!(["api://other", "api://third"])));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Audience
        );
    }

    #[tokio::test]
    async fn token_without_exp_is_rejected() {
        let v = hs256_validator();
        let token = hs256(&unset(claims(), "exp"));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::MissingClaim
        );
        let token = hs256(&set(claims(), "exp", json!("never")));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::MissingClaim
        );
    }

    #[tokio::test]
    async fn alg_none_is_rejected() {
        let payload = b64(&claims());
        let hs = hs256_validator();
        let rs = pem_validator("rsa-public.pem", &[]);
        for alg in ["none", "None", "NONE"] {
            let header = b64(&json!({"alg": alg, "typ": "JWT"}));
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.c2lnbmF0dXJl"),
            ] {
                assert_eq!(
                    hs.validate(&token).await.unwrap_err(),
                    JwtRejection::Algorithm
                );
                assert_eq!(
                    rs.validate(&token).await.unwrap_err(),
                    JwtRejection::Algorithm
                );
            }
        }
    }

    #[tokio::test]
    async fn hs256_token_signed_with_the_rsa_public_key_is_rejected() {
        // The classic confusion: the attacker uses the public key's PEM as HMAC secret.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&key_file("rsa-public.pem")),
            None,
            &claims(),
        );
        let v = pem_validator("rsa-public.pem", &[]);
        assert_eq!(
            v.validate(&forged).await.unwrap_err(),
            JwtRejection::Algorithm
        );
        // Nor can configuration open the door: HMAC beside a public key is refused.
        let err = JwtValidator::from_config(
            &JwtConfig {
                public_key_file: Some(key_path("rsa-public.pem")),
                algorithms: vec!["RS256".into(), "HS256".into()],
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(err.contains("HS256"), "{err}");
    }

    #[tokio::test]
    async fn algorithm_outside_the_allow_list_is_rejected() {
        let token = sign(
            Algorithm::RS384,
            &rsa_signer("rsa-private.pem"),
            None,
            &claims(),
        );
        let rs256_only = pem_validator("rsa-public.pem", &[]);
        assert_eq!(
            rs256_only.validate(&token).await.unwrap_err(),
            JwtRejection::Algorithm
        );
        let both = pem_validator("rsa-public.pem", &["RS256", "RS384"]);
        both.validate(&token).await.unwrap();
    }

    #[tokio::test]
    async fn signature_of_another_key_is_rejected() {
        let v = pem_validator("rsa-public.pem", &[]);
        let other = sign(
            Algorithm::RS256,
            &rsa_signer("rsa2-private.pem"),
            None,
            &claims(),
        );
        assert_eq!(
            v.validate(&other).await.unwrap_err(),
            JwtRejection::Signature
        );
        // A valid signature over other claims.
        let good = rs256(&claims());
        let (header, _, signature) = split(&good).unwrap();
        let tampered = format!(
            "{header}.{}.{signature}",
            b64(&set(claims(), "sub", json!("admin")))
        );
        assert_eq!(
            v.validate(&tampered).await.unwrap_err(),
            JwtRejection::Signature
        );
        let hs = hs256_validator();
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!"),
            None,
            &claims(),
        );
        assert_eq!(
            hs.validate(&token).await.unwrap_err(),
            JwtRejection::Signature
        );
    }

    #[tokio::test]
    async fn oversized_and_garbage_tokens_are_rejected_without_fetching_keys() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 0, 3600);
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(v.validate(&huge).await.unwrap_err(), JwtRejection::TooLarge);
        let padded = rs256(&set(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES))));
        assert_eq!(
            v.validate(&padded).await.unwrap_err(),
            JwtRejection::TooLarge
        );
        for token in garbage() {
            assert_eq!(
                v.validate(&token).await.unwrap_err(),
                JwtRejection::Malformed,
                "{token}"
            );
        }
        assert_eq!(server.fetches(), 0);
    }

    /// Strings that are no JWS, or whose header is unusable.
    fn garbage() -> Vec<String> {
        let payload = b64(&claims());
        vec![
            String::new(),
            ".".into(),
            "..".into(),
            "not a token".into(),
            "a.b".into(),
            "a.b.c".into(),
            "🦀.🦀.🦀".into(),
            format!("{}..sig", b64(&json!({"alg": "RS256"}))),
            format!("{}.{payload}.sig", b64(&json!(["RS256"]))),
            format!("{}.{payload}.sig", b64(&json!({"typ": "JWT"}))),
            format!("{}.{payload}.sig", b64(&json!({"alg": 256}))),
            format!(
                "{}.{payload}.sig",
                b64(&json!({"alg": "RS256", "crit": ["exp"]}))
            ),
            format!("{}.{payload}.sig", b64(&json!({"alg": "RS256", "kid": 7}))),
            format!("{}.{payload}.sig.x", b64(&json!({"alg": "RS256"}))),
            format!("{}.{payload}.a.b.c", b64(&json!({"alg": "RSA-OAEP"}))),
        ]
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let v = hs256_validator();
        for token in garbage() {
            assert_eq!(
                v.validate(&token).await.unwrap_err(),
                JwtRejection::Malformed,
                "{token}"
            );
        }
        // Well signed, but the claims are no JSON object.
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            &json!(["iss", ISSUER]),
        );
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Malformed
        );
    }

    #[tokio::test]
    async fn unknown_kid_refetches_and_follows_key_rotation() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 0, 3600);
        let old = rs256(&claims());
        let new = sign(
            Algorithm::RS256,
            &rsa_signer("rsa2-private.pem"),
            Some(&kid_of("rsa2-jwks.json")),
            &claims(),
        );
        v.validate(&old).await.unwrap();
        assert_eq!(server.fetches(), 1);

        // The IdP rotates: it now publishes only the second key.
        server.serve(Some(jwks_file("rsa2-jwks.json")));
        v.validate(&new).await.unwrap();
        assert_eq!(server.fetches(), 2);
        v.validate(&new).await.unwrap();
        assert_eq!(server.fetches(), 2);

        // The old key is gone from the set now cached.
        assert_eq!(
            v.validate(&old).await.unwrap_err(),
            JwtRejection::UnknownKey
        );
    }

    #[tokio::test]
    async fn unknown_kid_flood_fetches_at_most_once_per_interval() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 60, 3600);
        v.validate(&rs256(&claims())).await.unwrap();
        assert_eq!(server.fetches(), 1);

        let signer = rsa_signer("rsa-private.pem");
        let tokens: Vec<String> = (0..100)
            .map(|_| {
                let kid = uuid::Uuid::new_v4().to_string();
                sign(Algorithm::RS256, &signer, Some(&kid), &claims())
            })
            .collect();
        // One after the other (only the interval bounds these), then all at once.
        let (one_by_one, at_once) = tokens.split_at(50);
        for token in one_by_one {
            assert_eq!(
                v.validate(token).await.unwrap_err(),
                JwtRejection::UnknownKey
            );
        }
        let results = futures::future::join_all(at_once.iter().map(|t| v.validate(t))).await;
        for result in results {
            assert_eq!(result.unwrap_err(), JwtRejection::UnknownKey);
        }
        assert!(server.fetches() <= 2, "{} fetches", server.fetches());
        // The known key still works from the cache.
        v.validate(&rs256(&claims())).await.unwrap();
        assert!(server.fetches() <= 2, "{} fetches", server.fetches());
    }

    #[tokio::test]
    async fn concurrent_validations_share_one_fetch() {
        // No refresh interval: only the single-flight lock keeps this to one request.
        let server =
            JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::from_millis(200)).await;
        let v = jwks_validator(&server.url, 0, 3600);
        let token = rs256(&claims());
        let results = futures::future::join_all((0..20).map(|_| v.validate(&token))).await;
        for result in results {
            result.unwrap();
        }
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn stale_key_set_is_refetched_and_kept_when_the_refetch_fails() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 0, 0);
        v.validate(&rs256(&claims())).await.unwrap();
        assert_eq!(server.fetches(), 1);
        server.serve(None);
        v.validate(&rs256(&claims())).await.unwrap();
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn keys_unavailable_when_the_first_fetch_fails() {
        let server = JwksServer::start(None, Duration::ZERO).await;
        let v = jwks_validator(&server.url, 60, 3600);
        let token = rs256(&claims());
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::KeysUnavailable
        );
        // Failed attempts count against the refresh interval too.
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::KeysUnavailable
        );
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn token_without_kid_uses_the_only_key_of_the_set() {
        let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
        let v = jwks_validator(&server.url, 0, 3600);
        let token = sign(
            Algorithm::RS256,
            &rsa_signer("rsa-private.pem"),
            None,
            &claims(),
        );
        v.validate(&token).await.unwrap();

        let both = json!({"keys": [jwk_of("rsa-jwks.json"), jwk_of("rsa2-jwks.json")]});
        server.serve(Some(both.to_string()));
        let v = jwks_validator(&server.url, 0, 3600);
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::UnknownKey
        );
        v.validate(&rs256(&claims())).await.unwrap();
    }

    #[test]
    fn jwks_keeps_only_usable_signing_keys() {
        let mut enc = jwk_of("rsa-jwks.json");
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let mut rs512 = jwk_of("rsa-jwks.json");
        rs512["alg"] = json!("RS512");
        rs512["kid"] = json!("rs512");
        let mut oaep = jwk_of("rsa-jwks.json");
        oaep["alg"] = json!("RSA-OAEP");
        oaep["kid"] = json!("oaep");
        let mut verify_only = jwk_of("rsa-jwks.json");
        verify_only["key_ops"] = json!(["encrypt"]);
        verify_only["kid"] = json!("encrypt-op");
        let oct = json!({"kty": "oct", "kid": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)});
        let unknown = json!({"kty": "XYZ", "kid": "xyz"});
        let mut rs256 = jwk_of("rsa2-jwks.json");
        rs256["alg"] = json!("RS256");
        let entra = jwk_of("rsa-jwks.json");
        let body = json!({"keys": [enc, rs512, oaep, verify_only, oct, unknown, rs256, entra]});

        let keys = parse_jwks(body.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
        let kids: Vec<String> = keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert_eq!(kids, [kid_of("rsa2-jwks.json"), kid_of("rsa-jwks.json")]);

        let none_usable = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(parse_jwks(none_usable.to_string().as_bytes(), &[Algorithm::RS256]).is_err());
        assert!(parse_jwks(b"{\"keys\": []}", &[Algorithm::RS256]).is_err());
        assert!(parse_jwks(b"<html>", &[Algorithm::RS256]).is_err());
    }

    #[tokio::test]
    async fn issued_token_round_trips() {
        let secret = Secret::new(SECRET);
        let issuer = "https://bridge.example.test/tenants/acme";
        let token = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();

        let v = JwtValidator::hs256("oauth", issuer, issuer, &secret, 0);
        let claims = v.validate(&token).await.unwrap();
        assert_eq!(claims.subject.as_deref(), Some("okta-client"));
        assert_eq!(claims.client_id.as_deref(), Some("okta-client"));
        assert!((claims.expires_at - (now() + 300)).abs() <= 2);

        let (header, payload, _) = split(&token).unwrap();
        assert_eq!(json_part(header).unwrap()["alg"], "HS256");
        let payload = json_part(payload).unwrap();
        for name in ["iss", "aud", "sub", "client_id", "iat", "nbf", "exp", "jti"] {
            assert!(payload.contains_key(name), "{name}");
        }
        let jti = uuid::Uuid::parse_str(payload["jti"].as_str().unwrap()).unwrap();
        assert_eq!(jti.get_version_num(), 4);
        let again = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();
        assert_ne!(
            json_part(split(&again).unwrap().1).unwrap()["jti"],
            payload["jti"]
        );
    }

    #[tokio::test]
    async fn issued_token_gets_no_leeway_on_exp() {
        let secret = Secret::new(SECRET);
        let issuer = "https://bridge.example.test/tenants/acme";
        let v = JwtValidator::issued("oauth", issuer, &secret);
        let signed = |exp: i64, nbf: i64| {
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                None,
                &json!({"iss": issuer, "aud": issuer, "client_id": "okta-client",
                        "iat": nbf, "nbf": nbf, "exp": exp}),
            )
        };
        v.validate(&signed(now() + 5, now())).await.unwrap();
        // Expired a second ago, or this very second: refused (an outside issuer's token would
        // get its configured leeway).
        for exp in [now() - 1, now()] {
            assert_eq!(
                v.validate(&signed(exp, now() - 60)).await.unwrap_err(),
                JwtRejection::Expired,
                "exp {exp}"
            );
        }
        // A token issued with a lifetime of 0 s never passes.
        let token = issue_hs256(&secret, issuer, issuer, "okta-client", 0).unwrap();
        assert_eq!(v.validate(&token).await.unwrap_err(), JwtRejection::Expired);
        // A replica whose clock is a few seconds behind the issuer's accepts a fresh token.
        v.validate(&signed(now() + 600, now() + 10)).await.unwrap();
        assert_eq!(
            v.validate(&signed(now() + 600, now() + 120))
                .await
                .unwrap_err(),
            JwtRejection::NotYetValid
        );
    }

    #[tokio::test]
    async fn issued_token_is_rejected_by_other_validators() {
        let secret = Secret::new(SECRET);
        let issuer = "https://bridge.example.test/tenants/acme";
        let other = "https://bridge.example.test/tenants/other";
        let token = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();

        let wrong_issuer = JwtValidator::hs256("o", other, issuer, &secret, 0);
        assert_eq!(
            wrong_issuer.validate(&token).await.unwrap_err(),
            JwtRejection::Issuer
        );
        let wrong_audience = JwtValidator::hs256("o", issuer, other, &secret, 0);
        assert_eq!(
            wrong_audience.validate(&token).await.unwrap_err(),
            JwtRejection::Audience
        );
        let other_secret = Secret::new("another-secret-of-at-least-32-bytes!");
        let wrong_secret = JwtValidator::hs256("o", issuer, issuer, &other_secret, 0);
        assert_eq!(
            wrong_secret.validate(&token).await.unwrap_err(),
            JwtRejection::Signature
        );
        assert!(issue_hs256(&Secret::new(""), issuer, issuer, "c", 300).is_err());
    }

    #[tokio::test]
    async fn hs256_validator_with_an_empty_secret_accepts_nothing() {
        let issuer = "https://bridge.example.test/tenants/acme";
        let empty = Secret::new("");
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b""),
            None,
            &json!({"iss": issuer, "aud": issuer, "exp": now() + 600}),
        );
        let v = JwtValidator::hs256("oauth", issuer, issuer, &empty, 0);
        assert_eq!(
            v.validate(&forged).await.unwrap_err(),
            JwtRejection::Algorithm
        );
    }

    #[test]
    fn accepts_issuer_reads_iss_without_verifying() {
        let v = hs256_validator();
        assert!(v.accepts_issuer(&hs256(&claims())));
        // Unverified: a bad signature does not matter here.
        let wrong_key = sign(
            Algorithm::RS256,
            &rsa_signer("rsa2-private.pem"),
            None,
            &claims(),
        );
        assert!(v.accepts_issuer(&wrong_key));
        let header = b64(&json!({"alg": "none"}));
        assert!(v.accepts_issuer(&format!("{header}.{}.", b64(&claims()))));

        assert!(!v.accepts_issuer(&hs256(&set(claims(), "iss", json!("https://other/")))));
        assert!(!v.accepts_issuer(&hs256(&set(claims(), "iss", json!([ISSUER])))));
        assert!(!v.accepts_issuer(&hs256(&unset(claims(), "iss"))));
        assert!(!v.accepts_issuer(&format!("bm90IGpzb24.{}.", b64(&claims()))));
        assert!(!v.accepts_issuer(&"a".repeat(MAX_TOKEN_BYTES + 1)));
        for token in ["", "a.b.c", "..", "x"] {
            assert!(!v.accepts_issuer(token), "{token}");
        }
    }

    #[test]
    fn from_config_errors_name_the_problem_not_the_key() {
        let private = JwtValidator::from_config(
            &JwtConfig {
                public_key_file: Some(key_path("rsa-private.pem")),
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(private.contains("private key"), "{private}");
        assert!(private.contains("rsa-private.pem"), "{private}");
        assert!(!private.contains("MII"), "{private}");

        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bogus.pem");
        std::fs::write(
            &bogus,
            "-----BEGIN PUBLIC KEY-----\nU0VLUklUU0VLUklU\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = JwtValidator::from_config(
            &JwtConfig {
                public_key_file: Some(bogus),
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(err.contains("not an RSA or EC public key"), "{err}");
        assert!(!err.contains("U0VLUklU"), "{err}");

        let missing = JwtValidator::from_config(
            &JwtConfig {
                public_key_file: Some(dir.path().join("missing.pem")),
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");

        let mismatch = JwtValidator::from_config(
            &JwtConfig {
                hs256_secret: Some(Secret::new(SECRET)),
                algorithms: vec!["RS256".into()],
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(mismatch.contains("RS256"), "{mismatch}");
        assert!(!mismatch.contains(SECRET), "{mismatch}");

        let unknown = JwtValidator::from_config(
            &JwtConfig {
                hs256_secret: Some(Secret::new(SECRET)),
                algorithms: vec!["none".into()],
                ..config()
            },
            http(),
        )
        .unwrap_err();
        assert!(unknown.contains("unknown algorithm"), "{unknown}");

        assert!(JwtValidator::from_config(&config(), http()).is_err());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let shown = format!("{:?}", hs256_validator());
        assert!(shown.contains("idp"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        let url = Url::parse("https://user:pw@idp.example.test/keys?sig=s3cr3t").unwrap();
        let shown = format!("{:?}", jwks_validator(&url, 60, 3600));
        assert!(shown.contains("https://idp.example.test/keys"), "{shown}");
        assert!(
            !shown.contains("pw") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn rejection_labels_are_distinct_snake_case() {
        let all = [
            JwtRejection::Malformed,
            JwtRejection::TooLarge,
            JwtRejection::Algorithm,
            JwtRejection::UnknownKey,
            JwtRejection::Signature,
            JwtRejection::Expired,
            JwtRejection::NotYetValid,
            JwtRejection::Issuer,
            JwtRejection::Audience,
            JwtRejection::MissingClaim,
            JwtRejection::KeysUnavailable,
        ];
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
        for label in labels {
            assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(JwtRejection::Expired.to_string(), "expired");
    }
}
