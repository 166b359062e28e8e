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
use crate::partner::rbac::{RoleTemplate, SiteApi};
use crate::partner::Access;
use crate::secret::Secret;

mod naming;
mod security;
mod sources;
mod tuning;
mod validate;
use naming::Naming;
pub use security::{
    credential_name, parse_proxy, AdminConfig, BasicCredentialConfig, HttpConfig, JwtConfig,
    OAuthClientConfig, OAuthConfig, RateLimitConfig, TlsConfig, MIN_HMAC_SECRET, MIN_TOKEN_CHARS,
};
use sources::{env_provider, extract_all, file_layer, rate_limit_given, settings_given};
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
    "sandbox_site_api",
    "log_format",
    "test_postgres_url",
    "test_postgres_required",
    "test_site_api",
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
    "sandbox_site_api",
    "test_postgres_url",
    "test_postgres_required",
    "test_site_api",
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
    /// The name of the single tenant (`default` when not set): metrics, audit and the admin
    /// commands' `--tenant` use it.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub tenant_name: Option<String>,
    /// The name of the single tenant's bearer token (`default` when not set), as the audit log
    /// records the credential.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub bearer_token_name: Option<String>,
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
    /// `api` of the single site (`SCIM_BRIDGE_SITE_API=roles` for an RBAC site).
    pub site_api: Option<SiteApi>,
    /// `create_roles` of the single site (`SCIM_BRIDGE_SITE_CREATE_ROLES`).
    pub site_create_roles: Option<bool>,
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
    /// True when the file or the environment sets `http.rate_limit` (the sandbox keeps an
    /// inbound rate limit only then). Not a setting; filled by [`Config::load`].
    #[serde(skip)]
    pub rate_limit_given: bool,
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
            tenant_name: None,
            bearer_token_name: None,
            bearer_token: None,
            bearer_token_file: None,
            bearer_token_sha256: None,
            invited_by_email: None,
            protected_emails: None,
            allow_protected_changes: None,
            allow_admin_grant: None,
            site_api: None,
            site_create_roles: None,
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
            rate_limit_given: false,
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
    /// that names this setting, and the bridge neither grants nor removes that group. On an
    /// RBAC site the same holds of the `Admin` role.
    pub allow_admin_grant: bool,
    /// `groups` (v1 sites, the default) or `roles` (RBAC sites: SCIM groups become roles).
    pub api: SiteApi,
    /// RBAC sites: SCIM displayName -> the role it maps to (adopted, never renamed or deleted).
    pub role_map: std::collections::BTreeMap<String, String>,
    /// RBAC sites: what a role the bridge creates grants (nothing by default).
    pub role_template: RoleTemplate,
    /// RBAC sites: false leaves a group with no role of its name unmapped instead of creating
    /// a role for it.
    pub create_roles: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            base_url: default_partner_url(),
            site_name: String::new(),
            api_key: None,
            api_key_file: None,
            allow_admin_grant: false,
            api: SiteApi::Groups,
            role_map: std::collections::BTreeMap::new(),
            role_template: RoleTemplate::default(),
            create_roles: true,
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
    /// single-tenant shorthand into `tenants`; validates. Errors are all reported at once,
    /// each naming the setting as the operator wrote it (the variable or the file's key).
    pub fn load(sources: &Sources) -> Result<Config, ConfigErrors> {
        let env = match &sources.env {
            Some(vars) => vars.clone(),
            None => std::env::vars().collect(),
        };
        let mut naming = Naming::new(&env, sources.file.is_some());
        let mut layers = Vec::new();
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(ConfigErrors::one(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            layers.push(file_layer(path)?);
        }
        layers.push(env_provider(&env));
        let (config, mut errors) = extract_all(&Config::default(), layers.clone(), &naming);
        // The checks below run on what did load (defaults in place of the wrong values): a
        // check of a setting already reported is left out.
        let mut config = config.unwrap_or_default();
        config.settings_given = settings_given(sources.file.as_deref(), &env);
        config.rate_limit_given = rate_limit_given(&layers);
        let unreadable = config
            .resolve_files()
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        let folded = config.fold_shorthand();
        let invalid = config.validate().err().map(|e| e.0).unwrap_or_default();
        naming.learn(&config, folded);
        for e in &mut errors {
            e.setting = naming.with_tenant_names(&e.setting);
        }
        // A setting already reported (as loaded, or as its unreadable `*_file`) is not
        // reported again by the checks that found it missing.
        let key = |setting: &str| -> String {
            setting
                .split(" (")
                .next()
                .unwrap_or(setting)
                .to_ascii_lowercase()
        };
        let mut reported: std::collections::HashSet<String> =
            errors.iter().map(|e| key(&e.setting)).collect();
        for e in unreadable {
            let e = naming.rename(e);
            if reported.insert(key(&e.setting)) {
                errors.push(e);
            }
        }
        for e in invalid {
            let e = naming.rename(e);
            let k = key(&e.setting);
            if !reported.contains(&k) && !reported.contains(&format!("{k}_file")) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
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

    /// Turns the top-level single-tenant keys into one tenant when no `tenants` are given;
    /// true when it did.
    fn fold_shorthand(&mut self) -> bool {
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
            return false;
        }
        let mut tenant = TenantConfig {
            name: self.tenant_name.clone().unwrap_or_else(|| "default".into()),
            ..TenantConfig::default()
        };
        if let Some(p) = &self.base_path {
            tenant.base_path = p.clone();
        }
        self.fold_shorthand_credentials(&mut tenant.credentials);
        tenant.sites.push(SiteConfig {
            base_url: self
                .partner_base_url
                .clone()
                .unwrap_or_else(default_partner_url),
            site_name: self.site_name.clone().unwrap_or_default(),
            api_key: self.api_key.clone(),
            api_key_file: None,
            allow_admin_grant: self.allow_admin_grant.unwrap_or(false),
            api: self.site_api.unwrap_or_default(),
            create_roles: self.site_create_roles.unwrap_or(true),
            ..SiteConfig::default()
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
        true
    }

    /// Adds the single-tenant credential keys (bearer token, Basic, JWT, OAuth) to the folded
    /// tenant's credentials.
    fn fold_shorthand_credentials(&self, credentials: &mut CredentialsConfig) {
        if self.bearer_token.is_some() || self.bearer_token_sha256.is_some() {
            credentials.bearer_tokens.push(BearerTokenConfig {
                name: self
                    .bearer_token_name
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                token: self.bearer_token.clone(),
                token_file: None,
                sha256: self.bearer_token_sha256.clone(),
            });
        }
        if let Some(b) = &self.basic {
            let mut b = b.clone();
            b.password_hash_file = None;
            credentials.basic.push(b);
        }
        if let Some(j) = &self.jwt {
            let mut j = j.clone();
            j.hs256_secret_file = None;
            j.apply_entra_defaults();
            credentials.jwt.push(j);
        }
        if let Some(o) = &self.oauth {
            credentials.oauth = Some(OAuthConfig {
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

#[cfg(test)]
mod tests;
