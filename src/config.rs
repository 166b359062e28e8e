//! Typed configuration: defaults, then a TOML file (`--config PATH`), then `SCIM_BRIDGE_*`
//! environment variables (nested keys joined with `__`), then command-line flags.
//!
//! Every secret has a `*_file` sibling (`api_key_file`, `token_file`, ...; in the environment
//! `SCIM_BRIDGE_API_KEY_FILE`, ...) naming a file that holds it, for Docker and Kubernetes
//! secrets. Secrets are [`Secret`]s: they print as `***` in `Debug`, `Display` and
//! `check-config`. A single-tenant deployment needs no file: the top-level shorthand keys
//! (`SCIM_BRIDGE_SITE_NAME`, `SCIM_BRIDGE_API_KEY`, `SCIM_BRIDGE_BEARER_TOKEN`, ...) describe one
//! tenant with one site. Invalid configuration is reported with the name of every wrong setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::lenient;
use crate::partner::Access;
use crate::secret::Secret;

mod security;
mod tuning;
pub use security::{
    credential_name, parse_proxy, AdminConfig, BasicCredentialConfig, HttpConfig, JwtConfig,
    OAuthClientConfig, OAuthConfig, RateLimitConfig, TlsConfig, MIN_HMAC_SECRET,
};
pub use tuning::BridgeOptions;

/// The prefix of every environment variable the bridge reads.
pub const ENV_PREFIX: &str = "SCIM_BRIDGE_";

/// The partner's documented base URL.
pub const DEFAULT_PARTNER_BASE_URL: &str = "https://api.periscopedata.com";

/// Environment variables with the prefix that are not configuration keys (read elsewhere).
/// (`test_postgres_url` and `test_postgres_required` are read by the test suite.)
const NON_CONFIG_ENV: &[&str] = &[
    "config",
    "sandbox_token",
    "log_format",
    "test_postgres_url",
    "test_postgres_required",
];

/// The name of the environment provider in error messages.
const ENV_SOURCE: &str = "environment";

/// Variables (after the prefix, lowercased) that do not count as configuration when `serve`
/// decides whether nothing is configured: logging, the sandbox's own token, the test suite's.
const NOT_PRODUCTION_ENV: &[&str] = &[
    "log__level",
    "log__format",
    "log_format",
    "sandbox_token",
    "test_postgres_url",
    "test_postgres_required",
];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the SCIM API listener.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics listener (off when absent).
    pub metrics_listen: Option<SocketAddr>,
    /// The URL clients reach the bridge at (scheme, host, optional path prefix); `Location` and
    /// `meta.location` are built from it. Defaults to `http://<listen>`.
    pub public_base_url: Option<Url>,
    /// Folder for the default SQLite store.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub log: LogConfig,
    /// Limits, rate limits, trusted proxies and TLS of the SCIM listener.
    pub http: HttpConfig,
    /// The admin credential (admin endpoints are off without one).
    pub admin: AdminConfig,
    /// How long the audit log keeps its entries.
    pub audit: AuditConfig,
    /// Membership engine, request waits, partner client tunables.
    pub bridge: BridgeOptions,
    /// Tenants; when empty, the single-tenant shorthand below describes one.
    pub tenants: Vec<TenantConfig>,

    // ---- single-tenant shorthand (environment-only deployments) ----
    /// Partner base URL of the single site.
    pub partner_base_url: Option<Url>,
    /// `site_name` of the single site.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub site_name: Option<String>,
    /// Partner API key of the single site.
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    /// A static SCIM bearer token of the single tenant.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// SHA-256 (hex) of the SCIM bearer token, instead of the token itself.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub bearer_token_sha256: Option<String>,
    /// Existing partner user that invites new users.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub invited_by_email: Option<String>,
    /// Partner accounts SCIM never deletes, of the single tenant.
    pub protected_emails: Option<Vec<String>>,
    /// `allow_protected_changes` of the single tenant.
    pub allow_protected_changes: Option<bool>,
    /// `allow_admin_grant` of the single site.
    pub allow_admin_grant: Option<bool>,
    /// SCIM base path of the single tenant.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub base_path: Option<String>,
    pub default_access: Option<Access>,
    pub deprovision: Option<DeprovisionPolicy>,
    pub email_change: Option<EmailChangePolicy>,
    pub unknown_members: Option<UnknownMembersPolicy>,
    pub dry_run: Option<bool>,
    /// HTTP Basic credential of the single tenant (`SCIM_BRIDGE_BASIC__USERNAME`, ...).
    pub basic: Option<BasicCredentialConfig>,
    /// Bearer JWTs accepted by the single tenant (`SCIM_BRIDGE_JWT__ISSUER`, ...).
    pub jwt: Option<JwtConfig>,
    /// OAuth token endpoint of the single tenant (`SCIM_BRIDGE_OAUTH__SIGNING_KEY`, ...).
    pub oauth: Option<OAuthShorthand>,

    /// What configured this besides the defaults: `--config <path>` and the names of the
    /// `SCIM_BRIDGE_*` variables set, in order (logging variables, `SCIM_BRIDGE_SANDBOX_TOKEN`
    /// and the test suite's left out). Not a setting; filled by [`Config::load`].
    #[serde(skip)]
    pub settings_given: Vec<String>,
}

/// The single tenant's OAuth token endpoint with one client, for environment-only deployments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthShorthand {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub client_secret_sha256: Option<String>,
    pub signing_key: Option<Secret>,
    pub signing_key_file: Option<PathBuf>,
    pub token_ttl_s: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            public_base_url: None,
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            admin: AdminConfig::default(),
            audit: AuditConfig::default(),
            bridge: BridgeOptions::default(),
            tenants: Vec::new(),
            partner_base_url: None,
            site_name: None,
            api_key: None,
            api_key_file: None,
            bearer_token: None,
            bearer_token_file: None,
            bearer_token_sha256: None,
            invited_by_email: None,
            protected_emails: None,
            allow_protected_changes: None,
            allow_admin_grant: None,
            base_path: None,
            default_access: None,
            deprovision: None,
            email_change: None,
            unknown_members: None,
            dry_run: None,
            basic: None,
            jwt: None,
            oauth: None,
            settings_given: Vec::new(),
        }
    }
}

/// Where state lives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...`; default: `sqlite://<data_dir>/scim-bridge.db`.
    /// Secret because a PostgreSQL URL may carry a password.
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
}

/// Longest `audit.retention_days` accepted: a century. A larger number is a typo (milliseconds
/// or seconds meant as days), not a policy.
pub const MAX_AUDIT_RETENTION_DAYS: u32 = 36_500;

/// The audit log's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Entries older than this many days are deleted by `serve` (hourly, and shortly after
    /// start); 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `scim_bridge=debug,info`.
    #[serde(deserialize_with = "lenient::string")]
    pub level: String,
    /// `auto` (JSON unless the output is a terminal), `json` or `text`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Text,
}

/// What happens at the partner when a user becomes inactive (`active=false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeprovisionPolicy {
    /// Delete the partner user; reactivation re-creates it with its groups.
    #[default]
    Remove,
    /// Keep the partner user, remove its managed groups.
    Strip,
    /// Change nothing at the partner.
    Keep,
}

/// What happens at the partner when a user's `userName` (its partner email) changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailChangePolicy {
    /// Partner PUT with the new email.
    #[default]
    Update,
    /// Create the new partner user with the same names and groups, then delete the old one.
    Recreate,
    /// Refuse with 400 `mutability`.
    Reject,
}

/// What a group write does with member ids that are not users of the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMembersPolicy {
    /// Apply the known members, skip the unknown ones (logged, counted, audited): Okta does
    /// not retry a failed group push, so one bad id would lose the whole push.
    #[default]
    Skip,
    /// Refuse the whole write with 400 `invalidValue`; nothing changes.
    Reject,
}

/// One SCIM endpoint bound to one or more partner sites.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// A short name, used in logs, metrics and the audit log.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// SCIM base path, e.g. `/scim/v2` or `/t/acme/scim/v2`.
    #[serde(deserialize_with = "lenient::string")]
    pub base_path: String,
    pub credentials: CredentialsConfig,
    pub sites: Vec<SiteConfig>,
    /// An existing partner user that "invites" users the bridge creates.
    #[serde(deserialize_with = "lenient::string")]
    pub invited_by_email: String,
    /// Partner accounts SCIM never deletes (besides `invited_by_email`, always protected):
    /// deprovisioning strips their managed groups instead (DESIGN.md section 4).
    pub protected_emails: Vec<String>,
    /// Whether SCIM may change a protected account's names or email at the partner. Off by
    /// default: such changes are skipped (and noted in the audit log); only its managed
    /// groups follow SCIM.
    pub allow_protected_changes: bool,
    /// Access level of groups the bridge creates.
    pub default_access: Access,
    /// Per-group overrides of `default_access`, by SCIM displayName (case-insensitive).
    pub group_access: std::collections::BTreeMap<String, Access>,
    pub deprovision: DeprovisionPolicy,
    pub email_change: EmailChangePolicy,
    /// Group members that are not users of the tenant: `skip` (default) or `reject`.
    pub unknown_members: UnknownMembersPolicy,
    /// Keep the IdP's desired state but send every partner write with `test_mode=true`.
    pub dry_run: bool,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            base_path: "/scim/v2".into(),
            credentials: CredentialsConfig::default(),
            sites: Vec::new(),
            invited_by_email: String::new(),
            protected_emails: Vec::new(),
            allow_protected_changes: false,
            default_access: Access::View,
            group_access: std::collections::BTreeMap::new(),
            deprovision: DeprovisionPolicy::default(),
            email_change: EmailChangePolicy::default(),
            unknown_members: UnknownMembersPolicy::default(),
            dry_run: false,
        }
    }
}

/// The credentials a tenant accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Static bearer tokens; several at once allow rotation.
    pub bearer_tokens: Vec<BearerTokenConfig>,
    /// HTTP Basic user names with Argon2 password hashes.
    pub basic: Vec<BasicCredentialConfig>,
    /// Bearer JWTs from an outside issuer (an authorization server, Entra ID).
    pub jwt: Vec<JwtConfig>,
    /// The tenant's own client-credentials token endpoint.
    pub oauth: Option<OAuthConfig>,
}

impl CredentialsConfig {
    /// True when the tenant accepts no credential at all.
    pub fn is_empty(&self) -> bool {
        self.bearer_tokens.is_empty()
            && self.basic.is_empty()
            && self.jwt.is_empty()
            && self.oauth.is_none()
    }
}

/// One static bearer token: the token itself, a file holding it, or its SHA-256.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BearerTokenConfig {
    /// Names the credential in logs and the audit log (never the token).
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// Hex SHA-256 of the token (`scim-bridge token new` prints it).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sha256: Option<String>,
}

/// One partner site.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteConfig {
    pub base_url: Url,
    #[serde(deserialize_with = "lenient::string")]
    pub site_name: String,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    /// Whether a SCIM group may map to the site's privileged group (`Administrators`, whose
    /// members are site administrators). Off by default: such a group is refused with a 400
    /// that names this setting, and the bridge neither grants nor removes that group.
    pub allow_admin_grant: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            base_url: default_partner_url(),
            site_name: String::new(),
            api_key: None,
            api_key_file: None,
            allow_admin_grant: false,
        }
    }
}

fn default_partner_url() -> Url {
    // The constant is a valid URL; a test proves it.
    #[allow(clippy::expect_used)]
    Url::parse(DEFAULT_PARTNER_BASE_URL).expect("DEFAULT_PARTNER_BASE_URL parses")
}

/// A configuration error: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// All errors found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn one(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            setting: setting.into(),
            message: message.into(),
        }])
    }
}

/// Where configuration comes from; tests pass their own environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// `(name, value)` pairs; `None` means the process environment.
    pub env: Option<Vec<(String, String)>>,
}

impl Config {
    /// Loads defaults, the file, the environment; resolves `*_file` secrets; folds the
    /// single-tenant shorthand into `tenants`; validates. Errors name every wrong setting.
    pub fn load(sources: &Sources) -> Result<Config, ConfigErrors> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(ConfigErrors::one(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            fig = fig.merge(Toml::file(path));
        }
        let env = match &sources.env {
            Some(vars) => vars.clone(),
            None => std::env::vars().collect(),
        };
        fig = fig.merge(env_provider(&env));
        let mut config: Config = fig.extract().map_err(figment_errors)?;
        config.settings_given = settings_given(sources.file.as_deref(), &env);
        config.resolve_files()?;
        config.fold_shorthand();
        config.validate()?;
        Ok(config)
    }

    /// True when no tenant is configured.
    pub fn is_unconfigured(&self) -> bool {
        self.tenants.is_empty()
    }

    /// True when nothing at all is configured: no tenant, no file, no `SCIM_BRIDGE_*` variable
    /// but logging ones and the sandbox's token. Only then does `serve` start the sandbox by
    /// itself: a production setting without a tenant means a configuration that did not load
    /// completely (an environment file that was not read), not a newcomer trying the bridge.
    pub fn nothing_configured(&self) -> bool {
        self.tenants.is_empty() && self.settings_given.is_empty()
    }

    /// The store URL (secret: may hold a password).
    pub fn store_url(&self) -> Secret {
        match &self.store.url {
            Some(u) => u.clone(),
            None => Secret::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("scim-bridge.db").display()
            )),
        }
    }

    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_base_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None if self.http.tls.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The effective configuration as TOML, secrets shown as `***`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    fn resolve_files(&mut self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        resolve_secret(
            &mut self.api_key,
            &self.api_key_file,
            "api_key",
            &mut errors,
        );
        resolve_secret(
            &mut self.bearer_token,
            &self.bearer_token_file,
            "bearer_token",
            &mut errors,
        );
        resolve_secret(
            &mut self.store.url,
            &self.store.url_file,
            "store.url",
            &mut errors,
        );
        security::resolve_admin(&mut self.admin, &mut errors);
        if let Some(b) = &mut self.basic {
            resolve_secret(
                &mut b.password_hash,
                &b.password_hash_file,
                "basic.password_hash",
                &mut errors,
            );
        }
        if let Some(j) = &mut self.jwt {
            resolve_secret(
                &mut j.hs256_secret,
                &j.hs256_secret_file,
                "jwt.hs256_secret",
                &mut errors,
            );
        }
        if let Some(o) = &mut self.oauth {
            resolve_secret(
                &mut o.signing_key,
                &o.signing_key_file,
                "oauth.signing_key",
                &mut errors,
            );
            resolve_secret(
                &mut o.client_secret,
                &o.client_secret_file,
                "oauth.client_secret",
                &mut errors,
            );
        }
        for (ti, t) in self.tenants.iter_mut().enumerate() {
            let at = format!("tenants[{ti}].credentials");
            security::resolve_credentials(&at, &mut t.credentials, &mut errors);
            for (si, s) in t.sites.iter_mut().enumerate() {
                let name = format!("tenants[{ti}].sites[{si}].api_key");
                resolve_secret(&mut s.api_key, &s.api_key_file, &name, &mut errors);
            }
            for (ki, k) in t.credentials.bearer_tokens.iter_mut().enumerate() {
                let name = format!("tenants[{ti}].credentials.bearer_tokens[{ki}].token");
                resolve_secret(&mut k.token, &k.token_file, &name, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Turns the top-level single-tenant keys into one tenant when no `tenants` are given.
    fn fold_shorthand(&mut self) {
        let any = self.site_name.is_some()
            || self.api_key.is_some()
            || self.basic.is_some()
            || self.jwt.is_some()
            || self.oauth.is_some()
            || self.bearer_token.is_some()
            || self.bearer_token_sha256.is_some()
            || self.partner_base_url.is_some()
            || self.invited_by_email.is_some();
        if !any || !self.tenants.is_empty() {
            return;
        }
        let mut tenant = TenantConfig {
            name: "default".into(),
            ..TenantConfig::default()
        };
        if let Some(p) = &self.base_path {
            tenant.base_path = p.clone();
        }
        if self.bearer_token.is_some() || self.bearer_token_sha256.is_some() {
            tenant.credentials.bearer_tokens.push(BearerTokenConfig {
                name: "default".into(),
                token: self.bearer_token.clone(),
                token_file: None,
                sha256: self.bearer_token_sha256.clone(),
            });
        }
        if let Some(b) = &self.basic {
            let mut b = b.clone();
            b.password_hash_file = None;
            tenant.credentials.basic.push(b);
        }
        if let Some(j) = &self.jwt {
            let mut j = j.clone();
            j.hs256_secret_file = None;
            j.apply_entra_defaults();
            tenant.credentials.jwt.push(j);
        }
        if let Some(o) = &self.oauth {
            tenant.credentials.oauth = Some(OAuthConfig {
                clients: vec![OAuthClientConfig {
                    name: "oauth".into(),
                    client_id: o.client_id.clone().unwrap_or_default(),
                    client_secret: o.client_secret.clone(),
                    client_secret_file: None,
                    client_secret_sha256: o.client_secret_sha256.clone(),
                }],
                signing_key: o.signing_key.clone(),
                signing_key_file: None,
                token_ttl_s: o.token_ttl_s.unwrap_or(OAuthConfig::default().token_ttl_s),
            });
        }
        tenant.sites.push(SiteConfig {
            base_url: self
                .partner_base_url
                .clone()
                .unwrap_or_else(default_partner_url),
            site_name: self.site_name.clone().unwrap_or_default(),
            api_key: self.api_key.clone(),
            api_key_file: None,
            allow_admin_grant: self.allow_admin_grant.unwrap_or(false),
        });
        tenant.invited_by_email = self.invited_by_email.clone().unwrap_or_default();
        tenant.protected_emails = self.protected_emails.clone().unwrap_or_default();
        tenant.allow_protected_changes = self.allow_protected_changes.unwrap_or(false);
        if let Some(a) = self.default_access {
            tenant.default_access = a;
        }
        if let Some(d) = self.deprovision {
            tenant.deprovision = d;
        }
        if let Some(e) = self.email_change {
            tenant.email_change = e;
        }
        if let Some(u) = self.unknown_members {
            tenant.unknown_members = u;
        }
        if let Some(d) = self.dry_run {
            tenant.dry_run = d;
        }
        self.tenants.push(tenant);
    }

    /// Checks everything that deserialization cannot.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |setting: String, message: &str| {
            errors.push(ConfigError {
                setting,
                message: message.to_owned(),
            })
        };
        if let Some(u) = &self.public_base_url {
            if !matches!(u.scheme(), "http" | "https") {
                err(
                    "public_base_url".into(),
                    "must be an http:// or https:// URL",
                );
            }
        }
        if let Some(u) = &self.store.url {
            let u = u.expose();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                err(
                    "store.url".into(),
                    "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)",
                );
            }
        }
        if self.audit.retention_days > MAX_AUDIT_RETENTION_DAYS {
            err(
                "audit.retention_days".into(),
                &format!(
                    "must be at most {MAX_AUDIT_RETENTION_DAYS} days (0 keeps entries forever)"
                ),
            );
        }
        security::validate_http(&self.http, &mut err);
        security::validate_tokens("admin.bearer_tokens", &self.admin.bearer_tokens, &mut err);
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for (ti, t) in self.tenants.iter().enumerate() {
            let at = |field: &str| format!("tenants[{ti}].{field}");
            if t.name.trim().is_empty() {
                err(at("name"), "must not be empty");
            } else if !names.insert(t.name.to_ascii_lowercase()) {
                err(at("name"), "another tenant has the same name");
            }
            if !valid_base_path(&t.base_path) {
                err(
                    at("base_path"),
                    "must start with '/', not end with '/', and hold only letters, digits, '-', '_', '.' and '/'",
                );
            } else if !paths.insert(t.base_path.to_ascii_lowercase()) {
                err(at("base_path"), "another tenant has the same base path");
            }
            if t.credentials.is_empty() {
                err(
                    at("credentials"),
                    "no credential configured: set bearer_token (SCIM_BRIDGE_BEARER_TOKEN) or add a token, Basic, JWT or OAuth credential",
                );
            }
            security::validate_tokens(
                &at("credentials.bearer_tokens"),
                &t.credentials.bearer_tokens,
                &mut err,
            );
            security::validate_credentials(&at("credentials"), &t.credentials, &mut err);
            if t.sites.is_empty() {
                err(at("sites"), "at least one partner site is required");
            }
            let mut site_names = std::collections::HashSet::new();
            for (si, s) in t.sites.iter().enumerate() {
                let sat = |f: &str| at(&format!("sites[{si}].{f}"));
                if s.site_name.trim().is_empty() {
                    err(
                        sat("site_name"),
                        "must not be empty (SCIM_BRIDGE_SITE_NAME)",
                    );
                } else if s.site_name.contains(':') || s.site_name.chars().any(char::is_control) {
                    err(
                        sat("site_name"),
                        "must not contain ':' or control characters",
                    );
                } else if !site_names.insert(s.site_name.to_ascii_lowercase()) {
                    err(sat("site_name"), "the same site is listed twice");
                }
                match &s.api_key {
                    None => err(
                        sat("api_key"),
                        "missing (SCIM_BRIDGE_API_KEY or api_key_file)",
                    ),
                    Some(k) if k.is_empty() => err(sat("api_key"), "must not be empty"),
                    Some(k) if k.expose().chars().any(|c| c.is_control()) => {
                        err(sat("api_key"), "must not contain control characters")
                    }
                    _ => {}
                }
                if !matches!(s.base_url.scheme(), "http" | "https") {
                    err(sat("base_url"), "must be an http:// or https:// URL");
                }
            }
            if t.invited_by_email.trim().is_empty() {
                err(
                    at("invited_by_email"),
                    "required: an existing partner user that invites new users (SCIM_BRIDGE_INVITED_BY_EMAIL)",
                );
            } else if !t.invited_by_email.contains('@')
                || t.invited_by_email.chars().any(char::is_control)
            {
                err(at("invited_by_email"), "must be an email address");
            }
            for (i, e) in t.protected_emails.iter().enumerate() {
                if !e.contains('@') || e.trim() != e || e.chars().any(char::is_control) {
                    err(
                        at(&format!("protected_emails[{i}]")),
                        "must be an email address",
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl TenantConfig {
    /// The access level a group of this name gets at the partner.
    pub fn access_for(&self, display_name: &str) -> Access {
        self.group_access
            .iter()
            .find(|(k, _)| k.to_lowercase() == display_name.to_lowercase())
            .map(|(_, a)| *a)
            .unwrap_or(self.default_access)
    }

    /// The SHA-256 of every accepted bearer token, with the credential's name.
    pub fn token_hashes(&self) -> Vec<(String, [u8; 32])> {
        token_hashes(&self.credentials.bearer_tokens)
    }
}

/// The SHA-256 of every token of a list, with the credential's name.
pub fn token_hashes(tokens: &[BearerTokenConfig]) -> Vec<(String, [u8; 32])> {
    tokens
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let name = credential_name(&k.name, "token", i);
            match (&k.token, &k.sha256) {
                (Some(t), _) => Some((name, sha256(t.expose()))),
                (None, Some(h)) => parse_sha256_hex(h).map(|h| (name, h)),
                _ => None,
            }
        })
        .collect()
}

/// SHA-256 of a token.
pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Parses 64 hex characters.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim()).ok()?;
    bytes.try_into().ok()
}

fn valid_base_path(p: &str) -> bool {
    p.starts_with('/')
        && (p.len() == 1 || !p.ends_with('/'))
        && !p.contains("//")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !p.split('/').any(|seg| seg == "." || seg == "..")
}

fn resolve_secret(
    value: &mut Option<Secret>,
    file: &Option<PathBuf>,
    name: &str,
    errors: &mut Vec<ConfigError>,
) {
    let Some(path) = file else { return };
    if value.is_some() {
        errors.push(ConfigError {
            setting: format!("{name}_file"),
            message: format!("set either {name} or {name}_file, not both"),
        });
        return;
    }
    match read_secret_file(path) {
        Ok(s) => *value = Some(s),
        Err(message) => errors.push(ConfigError {
            setting: format!("{name}_file"),
            message,
        }),
    }
}

/// Reads a secret from a file, dropping one trailing newline (as `echo` and editors leave).
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = s.strip_suffix('\n').unwrap_or(&s);
            let s = s.strip_suffix('\r').unwrap_or(s);
            if s.is_empty() {
                Err(format!("file {} is empty", path.display()))
            } else {
                Ok(Secret::new(s))
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// `--config <path>` and the names of the configuring variables of `env`; see
/// [`Config::settings_given`].
fn settings_given(file: Option<&Path>, env: &[(String, String)]) -> Vec<String> {
    let file = file.map(|f| format!("--config {}", f.display()));
    let vars = env.iter().filter_map(|(k, _)| {
        let key = k.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
        (!key.is_empty() && key != "config" && !NOT_PRODUCTION_ENV.contains(&key.as_str()))
            .then(|| k.clone())
    });
    let mut out: Vec<String> = file.into_iter().chain(vars).collect();
    out.sort();
    out.dedup();
    out
}

/// `SCIM_BRIDGE_A__B` becomes key `a.b`.
fn env_provider(vars: &[(String, String)]) -> EnvProvider {
    use figment::value::{Dict, Value};
    let mut root = Dict::new();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        if key.is_empty() || NON_CONFIG_ENV.contains(&key.as_str()) {
            continue;
        }
        let parts: Vec<&str> = key.split("__").collect();
        // Parsed as figment's `Env` provider does ("true" is a boolean, "8080" a number,
        // "[a, b]" a list); string settings accept numbers through `lenient`.
        let value = if digits_that_must_stay_text(v) {
            Value::from(v.clone())
        } else {
            v.parse::<Value>()
                .unwrap_or_else(|_| Value::from(v.clone()))
        };
        insert_path(&mut root, &parts, value);
    }
    EnvProvider(root)
}

/// Digits that a number would change: a leading zero (`007`) or more digits than an integer
/// keeps exactly. Such values (site names, keys) stay text.
fn digits_that_must_stay_text(v: &str) -> bool {
    let d = v.trim().strip_prefix('-').unwrap_or(v.trim());
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && ((d.len() > 1 && d.starts_with('0')) || d.len() > 18)
}

/// `SCIM_BRIDGE_*` variables as a figment provider named [`ENV_SOURCE`], so errors can name
/// the variable.
struct EnvProvider(figment::value::Dict);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(ENV_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut map = figment::value::Map::new();
        map.insert(figment::Profile::Default, self.0.clone());
        Ok(map)
    }
}

fn insert_path(dict: &mut figment::value::Dict, parts: &[&str], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match parts {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}

fn figment_errors(e: figment::Error) -> ConfigErrors {
    ConfigErrors(
        e.into_iter()
            .map(|e| {
                let from_env = e.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE);
                let mut path = e.path.clone();
                if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                }
                let setting = if from_env {
                    // The variable the operator set.
                    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
                } else if path.is_empty() {
                    "configuration".to_owned()
                } else {
                    path.join(".")
                };
                let source = match &e.metadata {
                    Some(m) if m.name == ENV_SOURCE => String::new(),
                    Some(m) => match &m.source {
                        Some(src) => format!(" (in {src})"),
                        None => String::new(),
                    },
                    None => String::new(),
                };
                // The kind names the expected type; never print the offending value, which
                // may be a secret.
                ConfigError {
                    setting,
                    message: format!("{}{source}", describe_kind(&e.kind)),
                }
            })
            .collect(),
    )
}

fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        // Only the kind of the value found: figment's own text quotes it, and a secret put
        // where a table is expected (`SCIM_BRIDGE_ADMIN=<token>`) would be printed.
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", value_kind(actual))
        }
        Kind::InvalidValue(_, expected) => format!("invalid value: expected {expected}"),
        Kind::UnknownField(field, _) => format!("unknown setting '{field}'"),
        Kind::UnknownVariant(v, expected) => {
            format!(
                "unknown value '{v}': expected one of {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(f) => format!("missing setting '{f}'"),
        Kind::DuplicateField(f) => format!("setting '{f}' given twice"),
        Kind::InvalidLength(_, expected) => format!("invalid length: expected {expected}"),
        Kind::Message(m) => m.clone(),
        Kind::Unsupported(actual) => format!("unsupported type {}", value_kind(actual)),
        Kind::UnsupportedKey(actual, expected) => format!(
            "unsupported key type {}: must be {expected}",
            value_kind(actual)
        ),
        other => other.to_string(),
    }
}

/// What a wrong value is, without the value.
fn value_kind(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map | Actual::NewtypeStruct => "a table",
        Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant => "an enum",
        Actual::Other(_) => "another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        }
    }

    const SINGLE: &[(&str, &str)] = &[
        ("SCIM_BRIDGE_SITE_NAME", "acme"),
        ("SCIM_BRIDGE_API_KEY", "1234567890"),
        ("SCIM_BRIDGE_BEARER_TOKEN", "a-long-enough-token-value"),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example"),
        ("SCIM_BRIDGE_DRY_RUN", "true"),
        ("SCIM_BRIDGE_DEFAULT_ACCESS", "discovery"),
        ("SCIM_BRIDGE_LISTEN", "0.0.0.0:9000"),
        ("SCIM_BRIDGE_SANDBOX_TOKEN", "ignored"),
        ("UNRELATED", "x"),
    ];

    #[test]
    fn audit_retention_days_defaults_to_90_parses_and_refuses_invalid_values() {
        assert_eq!(Config::load(&env(&[])).unwrap().audit.retention_days, 90);
        let c = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "30")])).unwrap();
        assert_eq!(c.audit.retention_days, 30);
        // 0 keeps entries forever.
        let c = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "0")])).unwrap();
        assert_eq!(c.audit.retention_days, 0);
        assert!(c.redacted_toml().contains("[audit]\nretention_days = 0"));
        // From a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[audit]\nretention_days = 400\n").unwrap();
        let c = Config::load(&Sources {
            file: Some(file),
            env: Some(vec![]),
        })
        .unwrap();
        assert_eq!(c.audit.retention_days, 400);
        // Negative, not a number, or absurdly long: refused, naming the variable or setting.
        for bad in ["-1", "ninety", "1.5"] {
            let err = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("SCIM_BRIDGE_AUDIT__RETENTION_DAYS"),
                "{bad}: {err}"
            );
        }
        let err = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "36501")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audit.retention_days: must be at most 36500"),
            "{err}"
        );
    }

    #[test]
    fn default_partner_url_parses() {
        assert_eq!(
            default_partner_url().as_str(),
            "https://api.periscopedata.com/"
        );
    }

    #[test]
    fn single_tenant_from_environment_alone() {
        let c = Config::load(&env(SINGLE)).unwrap();
        assert_eq!(c.tenants.len(), 1);
        let t = &c.tenants[0];
        assert_eq!(t.base_path, "/scim/v2");
        assert_eq!(t.sites[0].site_name, "acme");
        assert_eq!(t.sites[0].api_key.as_ref().unwrap().expose(), "1234567890");
        assert_eq!(
            t.sites[0].base_url.as_str(),
            "https://api.periscopedata.com/"
        );
        assert!(t.dry_run);
        assert_eq!(t.default_access, Access::Discovery);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(t.token_hashes().len(), 1);
    }

    #[test]
    fn a_basic_password_by_its_sha256_from_the_environment_and_its_mistakes_named() {
        fn with(extra: &[(&str, &str)]) -> String {
            let mut vars = vec![
                ("SCIM_BRIDGE_SITE_NAME", "acme"),
                ("SCIM_BRIDGE_API_KEY", "1234567890"),
                ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
                ("SCIM_BRIDGE_BASIC__USERNAME", "okta-scim"),
            ];
            vars.extend_from_slice(extra);
            match Config::load(&env(&vars)) {
                Ok(c) => format!("{:?}", c.tenants[0].credentials.basic[0].password_sha256),
                Err(e) => format!("error: {e}"),
            }
        }
        let digest = hex::encode(sha256("generated"));
        assert_eq!(
            with(&[("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", &digest)]),
            format!("{:?}", Some(&digest))
        );
        let setting = "tenants[0].credentials.basic[0].password_sha256";
        let hash = crate::http::auth::basic::hash_password("pw").unwrap();
        for wrong in [
            vec![("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", "not-hex")],
            vec![
                ("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", digest.as_str()),
                ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", hash.as_str()),
            ],
            vec![],
        ] {
            let err = with(&wrong);
            assert!(
                err.starts_with("error: ") && err.contains(setting),
                "{wrong:?}: {err}"
            );
        }
        // A SHA-256 pasted where the Argon2 hash goes says where it belongs.
        let err = with(&[("SCIM_BRIDGE_BASIC__PASSWORD_HASH", &digest)]);
        assert!(
            err.starts_with("error: ") && err.contains("password_sha256"),
            "{err}"
        );
    }

    #[test]
    fn every_credential_type_from_environment_alone() {
        let hash = crate::http::auth::basic::hash_password("pw").unwrap();
        let c = Config::load(&env(&[
            ("SCIM_BRIDGE_SITE_NAME", "acme"),
            ("SCIM_BRIDGE_API_KEY", "1234567890"),
            ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
            ("SCIM_BRIDGE_BASIC__USERNAME", "okta-scim"),
            ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", &hash),
            (
                "SCIM_BRIDGE_JWT__ENTRA_TENANT_ID",
                "0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f",
            ),
            (
                "SCIM_BRIDGE_JWT__AUDIENCE",
                "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
            ),
            ("SCIM_BRIDGE_OAUTH__CLIENT_ID", "okta"),
            (
                "SCIM_BRIDGE_OAUTH__CLIENT_SECRET",
                "client-secret-0123456789",
            ),
            (
                "SCIM_BRIDGE_OAUTH__SIGNING_KEY",
                "signing-key-0123456789abcdef0123456789",
            ),
            ("SCIM_BRIDGE_ADMIN__TOKEN_SHA256", &"a".repeat(64)),
            (
                "SCIM_BRIDGE_HTTP__TRUSTED_PROXIES",
                "[10.0.0.0/8, 192.168.1.1]",
            ),
            ("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "0"),
            ("SCIM_BRIDGE_HTTP__BASIC_AUTH_MAX_CONCURRENT", "3"),
        ]))
        .unwrap();
        let cred = &c.tenants[0].credentials;
        assert!(cred.bearer_tokens.is_empty());
        assert_eq!(cred.basic[0].username, "okta-scim");
        assert_eq!(
            cred.jwt[0].issuer,
            "https://sts.windows.net/0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f/"
        );
        assert_eq!(
            cred.jwt[0].jwks_url.as_ref().unwrap().as_str(),
            "https://login.microsoftonline.com/0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f/discovery/v2.0/keys"
        );
        assert_eq!(
            cred.jwt[0].audience,
            ["8adf8e6e-67b2-4cf2-a259-e3dc5476c621"]
        );
        let oauth = cred.oauth.as_ref().unwrap();
        assert_eq!(oauth.clients[0].client_id, "okta");
        assert_eq!(oauth.token_ttl_s, 3600);
        assert_eq!(c.admin.bearer_tokens.len(), 1);
        assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "192.168.1.1"]);
        assert!(!c.http.rate_limit.enabled());
        assert_eq!(c.http.basic_auth_max_concurrent, 3);
        let text = c.redacted_toml();
        for secret in [
            hash.as_str(),
            "client-secret-0123456789",
            "signing-key-0123456789",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn wrong_security_settings_are_named() {
        let err = Config::load(&env(&[
            ("SCIM_BRIDGE_SITE_NAME", "acme"),
            ("SCIM_BRIDGE_API_KEY", "1234567890"),
            ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
            ("SCIM_BRIDGE_BASIC__USERNAME", "okta:scim"),
            ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", "plain-password"),
            ("SCIM_BRIDGE_JWT__ISSUER", "https://idp.example/"),
            ("SCIM_BRIDGE_JWT__HS256_SECRET", "short-secret"),
            ("SCIM_BRIDGE_JWT__ALGORITHMS", "[HS256, RS256, none]"),
            ("SCIM_BRIDGE_OAUTH__CLIENT_ID", "okta"),
            (
                "SCIM_BRIDGE_OAUTH__CLIENT_SECRET",
                "client-secret-0123456789",
            ),
            ("SCIM_BRIDGE_HTTP__TRUSTED_PROXIES", "[not-an-address]"),
            ("SCIM_BRIDGE_HTTP__AUTH_FAILURE_LIMIT__BURST", "0"),
            ("SCIM_BRIDGE_HTTP__MAX_BODY_BYTES", "0"),
            ("SCIM_BRIDGE_HTTP__BASIC_AUTH_MAX_CONCURRENT", "5000"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for setting in [
            "tenants[0].credentials.basic[0].username",
            "tenants[0].credentials.basic[0].password_hash",
            "tenants[0].credentials.jwt[0].audience",
            "tenants[0].credentials.jwt[0].hs256_secret",
            "tenants[0].credentials.jwt[0].algorithms",
            "tenants[0].credentials.oauth.signing_key",
            "http.trusted_proxies[0]",
            "http.auth_failure_limit.burst",
            "http.max_body_bytes",
            "http.basic_auth_max_concurrent",
        ] {
            assert!(text.contains(setting), "{setting} not named in:\n{text}");
        }
        for secret in ["plain-password", "short-secret", "client-secret-0123456789"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn digits_keep_their_leading_zeros_and_length() {
        let long = "123456789012345678901234567890";
        let c = Config::load(&env(&[
            ("SCIM_BRIDGE_SITE_NAME", "007"),
            ("SCIM_BRIDGE_API_KEY", long),
            ("SCIM_BRIDGE_BEARER_TOKEN", "0123456789012345"),
            ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
            ("SCIM_BRIDGE_LISTEN", "127.0.0.1:9000"),
            ("SCIM_BRIDGE_BRIDGE__WORKERS", "8"),
        ]))
        .unwrap();
        let t = &c.tenants[0];
        assert_eq!(t.sites[0].site_name, "007");
        assert_eq!(t.sites[0].api_key.as_ref().unwrap().expose(), long);
        assert_eq!(
            t.credentials.bearer_tokens[0]
                .token
                .as_ref()
                .unwrap()
                .expose(),
            "0123456789012345"
        );
        assert_eq!(c.bridge.workers, 8);
    }

    #[test]
    fn an_unknown_variable_is_named_once() {
        let err = Config::load(&env(&[("SCIM_BRIDGE_METRIC_LISTEN", "1")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SCIM_BRIDGE_METRIC_LISTEN:"), "{text}");
        assert!(!text.contains("METRIC_LISTEN__"), "{text}");
    }

    #[test]
    fn nothing_configured_means_sandbox() {
        let c = Config::load(&env(&[])).unwrap();
        assert!(c.is_unconfigured());
        assert!(c.nothing_configured());
        // Logging, the sandbox's token and the test suite's variables configure nothing.
        let c = Config::load(&env(&[
            ("SCIM_BRIDGE_LOG__LEVEL", "debug"),
            ("SCIM_BRIDGE_LOG__FORMAT", "json"),
            ("SCIM_BRIDGE_LOG_FORMAT", "text"),
            (
                "SCIM_BRIDGE_SANDBOX_TOKEN",
                "a-sandbox-token-of-some-length",
            ),
            ("SCIM_BRIDGE_TEST_POSTGRES_URL", "postgres://x"),
            ("SCIM_BRIDGE_TEST_POSTGRES_REQUIRED", "1"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert!(c.nothing_configured(), "{:?}", c.settings_given);
    }

    #[test]
    fn a_production_setting_without_a_tenant_is_not_nothing() {
        for vars in [
            vec![("SCIM_BRIDGE_PUBLIC_BASE_URL", "https://scim.example.com")],
            vec![("SCIM_BRIDGE_LISTEN", "0.0.0.0:8080")],
            vec![("SCIM_BRIDGE_LISTEN", "127.0.0.1:8080")],
            vec![
                ("SCIM_BRIDGE_DATA_DIR", "/data"),
                ("SCIM_BRIDGE_LOG__LEVEL", "info"),
            ],
            vec![("SCIM_BRIDGE_STORE__URL", "postgres://db/scim")],
            vec![("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "0")],
            vec![("SCIM_BRIDGE_DEPROVISION", "strip")],
        ] {
            let c = Config::load(&env(&vars)).unwrap();
            assert!(c.is_unconfigured(), "{vars:?}");
            assert!(!c.nothing_configured(), "{vars:?}");
            let named: Vec<&str> = vars
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| !k.starts_with("SCIM_BRIDGE_LOG"))
                .collect();
            assert_eq!(c.settings_given, named, "{vars:?}");
        }
        // A file is a setting too, even one without a tenant.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").unwrap();
        let c = Config::load(&Sources {
            file: Some(path.clone()),
            env: Some(Vec::new()),
        })
        .unwrap();
        assert!(!c.nothing_configured());
        assert_eq!(c.settings_given, [format!("--config {}", path.display())]);
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load(&env(SINGLE)).unwrap();
        for text in [format!("{c:?}"), c.redacted_toml()] {
            assert!(!text.contains("1234567890"), "{text}");
            assert!(!text.contains("a-long-enough-token-value"), "{text}");
            assert!(text.contains("***"));
        }
    }

    #[test]
    fn file_variants_read_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "from-file-key\n").unwrap();
        let mut vars: Vec<(&str, &str)> = SINGLE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "SCIM_BRIDGE_API_KEY")
            .collect();
        let key_path = key.display().to_string();
        vars.push(("SCIM_BRIDGE_API_KEY_FILE", &key_path));
        let c = Config::load(&env(&vars)).unwrap();
        assert_eq!(
            c.tenants[0].sites[0].api_key.as_ref().unwrap().expose(),
            "from-file-key"
        );
    }

    #[test]
    fn missing_settings_are_named() {
        let err = Config::load(&env(&[("SCIM_BRIDGE_SITE_NAME", "acme")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tenants[0].sites[0].api_key"), "{text}");
        assert!(text.contains("tenants[0].invited_by_email"), "{text}");
        assert!(
            text.contains("tenants[0].credentials: no credential"),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_mistyped_settings_are_named() {
        // Errors from the environment name the variable the operator set.
        let err = Config::load(&env(&[("SCIM_BRIDGE_LISTEN_ADRESS", "x")])).unwrap_err();
        assert!(
            err.to_string().contains("SCIM_BRIDGE_LISTEN_ADRESS"),
            "{err}"
        );
        let err = Config::load(&env(&[("SCIM_BRIDGE_LISTEN", "not an address")])).unwrap_err();
        assert!(err.to_string().contains("SCIM_BRIDGE_LISTEN:"), "{err}");
        let mut vars = SINGLE.to_vec();
        vars.push(("SCIM_BRIDGE_DEPROVISION", "shred"));
        let err = Config::load(&env(&vars)).unwrap_err();
        assert!(err.to_string().contains("SCIM_BRIDGE_DEPROVISION"), "{err}");
        let mut vars = SINGLE.to_vec();
        vars.push(("SCIM_BRIDGE_UNKNOWN_MEMBERS", "ignore"));
        let err = Config::load(&env(&vars)).unwrap_err();
        assert!(
            err.to_string().contains("SCIM_BRIDGE_UNKNOWN_MEMBERS"),
            "{err}"
        );
        let mut vars = SINGLE.to_vec();
        vars.push(("SCIM_BRIDGE_UNKNOWN_MEMBERS", "reject"));
        let c = Config::load(&env(&vars)).unwrap();
        assert_eq!(c.tenants[0].unknown_members, UnknownMembersPolicy::Reject);
        let c = Config::load(&env(SINGLE)).unwrap();
        assert_eq!(c.tenants[0].unknown_members, UnknownMembersPolicy::Skip);
        // The test suite's own variable is not configuration.
        let ok = Config::load(&env(&[("SCIM_BRIDGE_TEST_POSTGRES_URL", "postgres://x")]));
        assert!(ok.is_ok());
        let ok = Config::load(&env(&[("SCIM_BRIDGE_TEST_POSTGRES_REQUIRED", "1")]));
        assert!(ok.is_ok(), "{:?}", ok.err());
        // A file's errors name the setting and the file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = 5\n").unwrap();
        let err = Config::load(&Sources {
            file: Some(file.clone()),
            env: Some(vec![]),
        })
        .unwrap_err()
        .to_string();
        // (figment may print the path relative to the working directory)
        assert!(err.contains("listen:") && err.contains("c.toml)"), "{err}");
    }

    #[test]
    fn toml_file_with_tenants_overlaid_by_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:7000"
[[tenants]]
name = "acme"
base_path = "/t/acme/scim/v2"
invited_by_email = "admin@acme.example"
deprovision = "strip"
email_change = "recreate"
unknown_members = "reject"
[[tenants.credentials.bearer_tokens]]
name = "okta"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
[[tenants.sites]]
base_url = "http://127.0.0.1:9999"
site_name = "acme"
api_key = "k"
[[tenants.sites]]
site_name = "acme-eu"
api_key = "k2"
"#,
        )
        .unwrap();
        let c = Config::load(&Sources {
            file: Some(file),
            env: Some(vec![("SCIM_BRIDGE_LISTEN".into(), "127.0.0.1:7001".into())]),
        })
        .unwrap();
        assert_eq!(c.listen.port(), 7001);
        let t = &c.tenants[0];
        assert_eq!(t.sites.len(), 2);
        assert_eq!(t.deprovision, DeprovisionPolicy::Strip);
        assert_eq!(t.email_change, EmailChangePolicy::Recreate);
        assert_eq!(t.unknown_members, UnknownMembersPolicy::Reject);
        assert!(
            c.redacted_toml().contains("unknown_members = \"reject\""),
            "check-config shows the policy"
        );
        assert_eq!(t.token_hashes()[0].1, sha256("test"));
    }

    #[test]
    fn bad_base_path_and_short_token_are_rejected() {
        let mut vars = SINGLE.to_vec();
        vars.retain(|(k, _)| *k != "SCIM_BRIDGE_BEARER_TOKEN");
        vars.push(("SCIM_BRIDGE_BEARER_TOKEN", "short"));
        vars.push(("SCIM_BRIDGE_BASE_PATH", "scim/../v2/"));
        let text = Config::load(&env(&vars)).unwrap_err().to_string();
        assert!(text.contains("base_path"), "{text}");
        assert!(text.contains("too short"), "{text}");
        assert!(!text.contains("short\""), "{text}");
    }
}
