//! Bearer JWT validation (HS256 secrets, RSA/EC public keys from PEM files or a JWKS URL) and
//! the signing of the tokens the tenant's own OAuth token endpoint issues.
// PLACEHOLDER until the jwt branch lands: same API, refuses everything.
use crate::config::JwtConfig;
use crate::secret::Secret;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    Malformed,
    TooLarge,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    MissingClaim,
    KeysUnavailable,
}
impl JwtRejection {
    pub fn as_str(&self) -> &'static str {
        "placeholder"
    }
}
#[derive(Debug, Clone)]
pub struct JwtClaims {
    pub subject: Option<String>,
    pub issuer: String,
    pub expires_at: i64,
    pub client_id: Option<String>,
}
#[derive(Clone)]
pub struct JwtValidator {
    name: String,
}
impl JwtValidator {
    pub fn from_config(config: &JwtConfig, _http: reqwest::Client) -> Result<Self, String> {
        Ok(Self {
            name: config.name.clone(),
        })
    }
    pub fn hs256(
        name: &str,
        _issuer: &str,
        _audience: &str,
        _secret: &Secret,
        _leeway_s: u64,
    ) -> Self {
        Self { name: name.into() }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn accepts_issuer(&self, _token: &str) -> bool {
        false
    }
    pub async fn validate(&self, _token: &str) -> Result<JwtClaims, JwtRejection> {
        Err(JwtRejection::Malformed)
    }
}
pub fn issue_hs256(
    _secret: &Secret,
    _issuer: &str,
    _audience: &str,
    _client_id: &str,
    _ttl_s: u64,
) -> Result<String, String> {
    Err("placeholder".into())
}
pub const MAX_TOKEN_BYTES: usize = 8192;
