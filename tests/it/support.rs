//! Shared test support: fresh databases of each back end, and a harness that runs the partner
//! emulator and a whole bridge (store, engine, HTTP) on loopback, with an HTTP client speaking
//! SCIM to it.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::StatusCode;
use scim_bridge::bridge::{Bridge, BridgeOptions};
use scim_bridge::config::{
    BearerTokenConfig, Config, CredentialsConfig, DeprovisionPolicy, EmailChangePolicy, SiteConfig,
    TenantConfig, UnknownMembersPolicy,
};
use scim_bridge::http::{self, AppState};
use scim_bridge::partner::client::ClientOptions;
use scim_bridge::partner::emulator::faults::{FaultAction, ScriptedFault};
use scim_bridge::partner::emulator::{Emulator, RunningEmulator, SiteKind, SiteSpec};
use scim_bridge::partner::rbac::SiteApi;
use scim_bridge::partner::{
    Access, CallKind, PartnerGroup, PartnerRole, PartnerUser, PartnerUserV2,
};
use scim_bridge::secret::Secret;
use scim_bridge::store::Store;
use scim_bridge::telemetry::metrics::Metrics;
use serde_json::Value;
use sqlx::Connection;

pub const PG_ENV: &str = "SCIM_BRIDGE_TEST_POSTGRES_URL";
/// Set to `1` (CI does): a PostgreSQL test without a reachable server fails instead of
/// skipping.
pub const PG_REQUIRED_ENV: &str = "SCIM_BRIDGE_TEST_POSTGRES_REQUIRED";
/// How long the reachability check waits for the server.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether [`PG_REQUIRED_ENV`] asks for PostgreSQL (`1`/`true`; unset, empty, `0`, `false`:
/// no). Any other value is a mistake worth failing on rather than guessing.
fn postgres_required() -> bool {
    match std::env::var(PG_REQUIRED_ENV) {
        Err(_) => false,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" => false,
            "1" | "true" => true,
            other => panic!("{PG_REQUIRED_ENV} must be 1 or 0, not {other:?}"),
        },
    }
}

/// The URL of the PostgreSQL server the tests may use, or `None` after printing that they
/// skip: locally, without [`PG_ENV`]. With [`PG_REQUIRED_ENV`]`=1` there is no skipping: a
/// missing variable or a server that does not accept a connection panics, naming both
/// variables (never the URL, which may hold a password).
pub async fn postgres_url() -> Option<String> {
    let required = postgres_required();
    let base = match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ if required => panic!(
            "{PG_REQUIRED_ENV}=1 but {PG_ENV} is not set: the PostgreSQL tests must run here, \
             not skip; set {PG_ENV} to a reachable server (or unset {PG_REQUIRED_ENV})"
        ),
        _ => {
            eprintln!("skipping PostgreSQL: {PG_ENV} not set");
            return None;
        }
    };
    if required {
        match tokio::time::timeout(PG_CONNECT_TIMEOUT, sqlx::PgConnection::connect(&base)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => panic!(
                "{PG_REQUIRED_ENV}=1 but the PostgreSQL server of {PG_ENV} is unreachable: {e}"
            ),
            Err(_) => panic!(
                "{PG_REQUIRED_ENV}=1 but the PostgreSQL server of {PG_ENV} did not accept a \
                 connection within {} s",
                PG_CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
    Some(base)
}

/// Runs `case` with the URL of a fresh, empty database: a SQLite file in a folder that does
/// not exist yet, then a PostgreSQL schema of its own when the environment names a server.
pub async fn for_each_backend_url<F, Fut>(case: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/scim-bridge.db", dir.path().display());
    case(url).await;
    with_postgres_url(case).await;
}

/// Runs `case` on a fresh PostgreSQL schema, or prints that it skips (see [`postgres_url`]).
pub async fn with_postgres_url<F, Fut>(case: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(base) = postgres_url().await else {
        return;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let outcome = AssertUnwindSafe(case(url)).catch_unwind().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub const TOKEN: &str = "test-bearer-token-0123456789";
pub const OWNER: &str = "owner@acme.example.com";

/// How to build a harness.
#[derive(Clone)]
pub struct Options {
    /// Site names; each gets its own key at the one emulator.
    pub sites: Vec<&'static str>,
    pub deprovision: DeprovisionPolicy,
    pub email_change: EmailChangePolicy,
    /// Group members that are not users: skipped (the default) or refused.
    pub unknown_members: UnknownMembersPolicy,
    pub dry_run: bool,
    /// Accounts SCIM must never delete, besides the inviting user (`protected_emails`).
    pub protected_emails: Vec<String>,
    /// `allow_protected_changes` of the tenant.
    pub allow_protected_changes: bool,
    /// `allow_admin_grant` of every site.
    pub allow_admin_grant: bool,
    /// Per-group access overrides (`group_access`).
    pub group_access: Vec<(String, scim_bridge::partner::Access)>,
    /// `None`: a fresh SQLite file.
    pub store_url: Option<String>,
    pub bridge: BridgeOptions,
    /// `[http]`: limits, rate limits, trusted proxies.
    pub http: scim_bridge::config::HttpConfig,
    /// Credentials besides the `idp` bearer token (Basic, JWT, OAuth, more tokens).
    pub credentials: CredentialsConfig,
    /// `[admin]`.
    pub admin: scim_bridge::config::AdminConfig,
    /// More tenants `(name, base path, credentials)`, each on an emulated site of its own
    /// name with the key `key-<name>`.
    pub extra_tenants: Vec<(String, String, CredentialsConfig)>,
    /// The API of the sites in `sites`: v1 groups by default, RBAC roles when the test says
    /// so or `SCIM_BRIDGE_TEST_SITE_API=roles` is set (the CI's second pass runs the IdP,
    /// membership, fault, crash and replica tests against RBAC sites that way).
    pub api: SiteApi,
    /// Sites among `sites` of the other API than `api` (a tenant fanning out to both).
    pub other_api_sites: Vec<&'static str>,
    /// `role_map` of RBAC sites.
    pub role_map: Vec<(String, String)>,
    /// `create_roles` of RBAC sites.
    pub create_roles: bool,
}

/// The site API the tests run against by default: `SCIM_BRIDGE_TEST_SITE_API=roles` runs them
/// against RBAC sites.
pub fn default_api() -> SiteApi {
    match std::env::var("SCIM_BRIDGE_TEST_SITE_API").as_deref() {
        Ok("roles") => SiteApi::Roles,
        _ => SiteApi::Groups,
    }
}

impl Options {
    /// The API of site `site`.
    pub fn api_of(&self, site: &str) -> SiteApi {
        match (self.api, self.other_api_sites.contains(&site)) {
            (a, false) => a,
            (SiteApi::Groups, true) => SiteApi::Roles,
            (SiteApi::Roles, true) => SiteApi::Groups,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        let bridge = BridgeOptions {
            wait_deadline_ms: 10_000,
            poll_ms: 20,
            partner: ClientOptions {
                request_timeout_ms: 2_000,
                call_deadline_ms: 5_000,
                backoff_base_ms: 10,
                backoff_max_ms: 100,
                ..ClientOptions::default()
            },
            ..BridgeOptions::default()
        };
        Self {
            sites: vec!["acme"],
            deprovision: DeprovisionPolicy::Remove,
            email_change: EmailChangePolicy::Update,
            unknown_members: UnknownMembersPolicy::Skip,
            dry_run: false,
            protected_emails: Vec::new(),
            allow_protected_changes: false,
            allow_admin_grant: false,
            group_access: Vec::new(),
            store_url: None,
            bridge,
            http: scim_bridge::config::HttpConfig::default(),
            credentials: CredentialsConfig::default(),
            admin: scim_bridge::config::AdminConfig::default(),
            extra_tenants: Vec::new(),
            api: default_api(),
            other_api_sites: Vec::new(),
            role_map: Vec::new(),
            create_roles: true,
        }
    }
}

/// The emulator plus a bridge serving one tenant at `/scim/v2`.
pub struct Harness {
    pub emulator: Emulator,
    pub bridge: Bridge,
    /// The bridge's own metrics recorder (no listener; see `tests/it/metrics.rs`).
    pub metrics: Metrics,
    /// `http://127.0.0.1:PORT/scim/v2`
    pub base: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub http: reqwest::Client,
    pub partner_base: String,
    server: tokio::task::JoinHandle<()>,
    _running: RunningEmulator,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The emulator a harness of `opts` runs against: each of its sites of the API `api_of` says,
/// plus a v1 site per extra tenant.
pub fn emulator_for(opts: &Options) -> Emulator {
    let spec = |s: &str| SiteSpec {
        api_key: Secret::new(format!("key-{s}")),
        name: s.to_owned(),
        owner_email: OWNER.into(),
    };
    let mut builder = Emulator::builder();
    for s in &opts.sites {
        builder = match opts.api_of(s) {
            SiteApi::Groups => builder.site(spec(s)),
            SiteApi::Roles => builder.rbac_site(spec(s)),
        };
    }
    for (t, _, _) in &opts.extra_tenants {
        builder = builder.site(spec(t));
    }
    builder.build()
}

/// A user of a v1 or RBAC site of `emulator`, seen as a v1 user (role names as groups).
pub fn partner_user_of(emulator: &Emulator, site: &str, email: &str) -> Option<PartnerUser> {
    if let Some(u) = emulator.user(site, email) {
        return Some(u);
    }
    let u = emulator.rbac_user_by_email(site, email)?;
    let roles = emulator.roles(site);
    Some(PartnerUser {
        email: u.email,
        first_name: u.first_name,
        last_name: u.last_name,
        groups: u
            .roles
            .iter()
            .filter_map(|id| roles.iter().find(|r| &r.id == id))
            .map(|r| r.name.clone())
            .collect(),
    })
}

/// The configuration of the harness's one tenant.
pub fn tenant_config(opts: &Options, partner_base: &str) -> TenantConfig {
    TenantConfig {
        name: "acme".into(),
        base_path: "/scim/v2".into(),
        credentials: {
            let mut c = opts.credentials.clone();
            c.bearer_tokens.insert(
                0,
                BearerTokenConfig {
                    name: "idp".into(),
                    token: Some(Secret::new(TOKEN)),
                    token_file: None,
                    sha256: None,
                },
            );
            c
        },
        sites: opts
            .sites
            .iter()
            .map(|s| SiteConfig {
                base_url: url::Url::parse(partner_base).unwrap(),
                site_name: (*s).to_owned(),
                api_key: Some(Secret::new(format!("key-{s}"))),
                api_key_file: None,
                allow_admin_grant: opts.allow_admin_grant,
                api: opts.api_of(s),
                role_map: opts.role_map.iter().cloned().collect(),
                create_roles: opts.create_roles,
                ..SiteConfig::default()
            })
            .collect(),
        invited_by_email: OWNER.into(),
        allow_protected_changes: opts.allow_protected_changes,
        deprovision: opts.deprovision,
        email_change: opts.email_change,
        unknown_members: opts.unknown_members,
        dry_run: opts.dry_run,
        protected_emails: opts.protected_emails.clone(),
        group_access: opts.group_access.iter().cloned().collect(),
        ..TenantConfig::default()
    }
}

impl Harness {
    pub async fn start(opts: Options) -> Harness {
        let emulator = emulator_for(&opts);
        let running = emulator.clone().spawn().await.unwrap();
        Self::start_with(opts, emulator, running).await
    }

    /// A bridge on an existing emulator (a restart on the same store, a second replica).
    pub async fn start_with(
        opts: Options,
        emulator: Emulator,
        running: RunningEmulator,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = opts
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/scim-bridge.db", dir.path().display()));
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // As `serve` does at start.
        store.release_stale_claims().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            listen: addr,
            public_base_url: Some(url::Url::parse(&format!("http://{addr}")).unwrap()),
            tenants: std::iter::once(tenant_config(&opts, &running.base_url))
                .chain(
                    opts.extra_tenants
                        .iter()
                        .map(|(name, path, creds)| TenantConfig {
                            name: name.clone(),
                            base_path: path.clone(),
                            credentials: creds.clone(),
                            sites: vec![SiteConfig {
                                base_url: url::Url::parse(&running.base_url).unwrap(),
                                site_name: name.clone(),
                                api_key: Some(Secret::new(format!("key-{name}"))),
                                api_key_file: None,
                                allow_admin_grant: false,
                                ..SiteConfig::default()
                            }],
                            invited_by_email: OWNER.into(),
                            ..TenantConfig::default()
                        }),
                )
                .collect(),
            http: opts.http.clone(),
            admin: opts.admin.clone(),
            ..Config::default()
        };
        let metrics = Metrics::new().unwrap();
        let bridge = Bridge::build(store, &config, opts.bridge.clone(), metrics.clone()).unwrap();
        let state = AppState::from_config(&config)
            .unwrap()
            .with_bridge(bridge.clone())
            .with_metrics(metrics.clone());
        let server = tokio::spawn(async move {
            let _ = http::run(listener, state, std::future::pending()).await;
        });
        Harness {
            emulator,
            bridge,
            metrics,
            base: format!("http://{addr}/scim/v2"),
            root: format!("http://{addr}"),
            http: reqwest::Client::new(),
            partner_base: running.base_url.clone(),
            server,
            _running: running,
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(TOKEN)
            .header("Accept", "application/scim+json");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let bytes = res.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// The emulator's base URL (to call the partner API directly, behind the bridge's back).
    pub fn partner_base(&self) -> &str {
        &self.partner_base
    }

    /// A user at a site of the emulator; on an RBAC site its roles are given by name as its
    /// groups.
    pub fn partner_user(&self, site: &str, email: &str) -> Option<PartnerUser> {
        partner_user_of(&self.emulator, site, email)
    }

    /// A partner user's groups, sorted, without `All Users`.
    pub fn partner_groups(&self, site: &str, email: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .partner_user(site, email)
            .map(|u| u.groups)
            .unwrap_or_default()
            .into_iter()
            .filter(|g| g != "All Users" && g != "Everyone")
            .collect();
        g.sort();
        g
    }

    /// Waits until the outbox is empty (or panics after `limit`).
    pub async fn settle(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let stats = self.bridge.store.outbox_stats().await.unwrap();
            if stats.depth == 0 {
                return;
            }
            assert!(Instant::now() < end, "outbox did not drain: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Creates a user by POST and returns its id.
pub async fn create_user(h: &Harness, email: &str, given: &str, family: &str) -> String {
    let (status, body) = h
        .post(
            "/Users",
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": email,
                "name": {"givenName": given, "familyName": family},
                "emails": [{"value": email, "type": "work", "primary": true}],
                "active": true,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// POSTs `body` to `path` as an IdP that lost the answer to an earlier attempt does: again
/// on 503 until answered; on 409 it finds the resource with `lookup` (a filtered GET), as
/// Okta and Entra do. Returns the resource's id.
pub async fn post_until_answered(h: &Harness, path: &str, body: &Value, lookup: &str) -> String {
    for _ in 0..100 {
        let (status, answer) = h.post(path, body.clone()).await;
        let id = match status {
            StatusCode::CREATED => answer["id"].as_str().map(str::to_owned),
            StatusCode::CONFLICT => {
                let (_, found) = h.get(lookup).await;
                found["Resources"][0]["id"].as_str().map(str::to_owned)
            }
            StatusCode::SERVICE_UNAVAILABLE => None,
            other => panic!("POST {path} answered {other}: {answer}"),
        };
        if let Some(id) = id {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("POST {path} was never answered");
}

/// Creates a group by POST and returns its id.
pub async fn create_group(h: &Harness, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members
        .iter()
        .map(|m| serde_json::json!({"value": m}))
        .collect();
    let (status, body) = h
        .post(
            "/Groups",
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": members,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Log lines of this thread (the tests' runtimes are current-thread, so the server's tasks run
/// here too).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        crate::ask_scoped_subscribers_every_time();
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Whether a line holds every one of `parts`.
    pub fn has_line(&self, parts: &[&str]) -> bool {
        self.text()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests that run against a v1 site or an RBAC site (`SCIM_BRIDGE_TEST_SITE_API=roles`)

/// True when the harness's sites are RBAC sites by default (`SCIM_BRIDGE_TEST_SITE_API=roles`).
pub fn under_roles() -> bool {
    default_api() == SiteApi::Roles
}

/// For a test that only means something on a v1 site: prints why it skips and returns true
/// under `SCIM_BRIDGE_TEST_SITE_API=roles`.
pub fn skip_under_roles(reason: &str) -> bool {
    if under_roles() {
        eprintln!("skipped under SCIM_BRIDGE_TEST_SITE_API=roles: {reason}");
        return true;
    }
    false
}

/// True when `site` of `emulator` is an RBAC site.
pub fn is_rbac_site(emulator: &Emulator, site: &str) -> bool {
    emulator.site_kind(site) == Some(SiteKind::Rbac)
}

/// The RBAC call that does the job of the v1 call `kind` (itself for an RBAC call). Reads of
/// one user map to `GetUserV2`, though the adapter reads the user list instead when it has no
/// id for the email yet (see [`same_job`]); reads of groups map to the role list, which is all
/// the adapter reads of roles.
pub fn rbac_kind(kind: CallKind) -> CallKind {
    match kind {
        CallKind::ListUsers => CallKind::ListUsersV2,
        CallKind::GetUser => CallKind::GetUserV2,
        CallKind::CreateUser => CallKind::CreateUserV2,
        CallKind::UpdateUser => CallKind::UpdateUserV2,
        CallKind::DeleteUser => CallKind::DeleteUserV2,
        CallKind::ListGroups | CallKind::GetGroup => CallKind::ListRoles,
        CallKind::CreateGroup => CallKind::CreateRole,
        CallKind::UpdateGroup => CallKind::UpdateRole,
        CallKind::DeleteGroup => CallKind::DeleteRole,
        other => other,
    }
}

/// The calls that do the job of the v1 call `kind` at a site of `emulator`: `[kind]` on a v1
/// site; on an RBAC site its RBAC calls (a user read is `GetUserV2` or `ListUsersV2`).
pub fn same_job(emulator: &Emulator, site: &str, kind: CallKind) -> Vec<CallKind> {
    if !is_rbac_site(emulator, site) {
        return vec![kind];
    }
    match kind {
        CallKind::GetUser => vec![CallKind::GetUserV2, CallKind::ListUsersV2],
        other => vec![rbac_kind(other)],
    }
}

/// [`rbac_kind`] at an RBAC site of `emulator`, `kind` itself at a v1 site: for fault plans
/// and counts of writes, which do the same job with one call of either API.
pub fn kind_at(emulator: &Emulator, site: &str, kind: CallKind) -> CallKind {
    if is_rbac_site(emulator, site) {
        rbac_kind(kind)
    } else {
        kind
    }
}

/// Calls of the v1 kind `kind` at `site` (the RBAC calls doing its job on an RBAC site), as
/// `Emulator::count` counts them.
pub fn count_job(emulator: &Emulator, site: &str, kind: CallKind, test_mode: bool) -> u64 {
    same_job(emulator, site, kind)
        .into_iter()
        .map(|k| emulator.count(site, k, test_mode))
        .sum()
}

/// A scripted fault on the call that does the job of the v1 call `kind` at `site`. A user read
/// on an RBAC site is either of two calls: the fault is scripted on each, so the next `count`
/// of either fail (up to `2 * count` in all when both are made).
pub fn scripted(
    emulator: &Emulator,
    site: &str,
    kind: CallKind,
    count: u32,
    action: FaultAction,
) -> Vec<ScriptedFault> {
    same_job(emulator, site, kind)
        .into_iter()
        .map(|k| ScriptedFault {
            call: Some(k),
            count,
            action: action.clone(),
        })
        .collect()
}

/// The group every user of a site holds (`All Users`, `Everyone` on an RBAC site).
pub fn all_users_group(emulator: &Emulator, site: &str) -> &'static str {
    if is_rbac_site(emulator, site) {
        scim_bridge::partner::rbac::EVERYONE_ROLE
    } else {
        "All Users"
    }
}

/// The site's privileged group (`Administrators`, `Admin` on an RBAC site).
pub fn admin_group(emulator: &Emulator, site: &str) -> &'static str {
    if is_rbac_site(emulator, site) {
        scim_bridge::partner::rbac::ADMIN_ROLE
    } else {
        "Administrators"
    }
}

/// The group names of a site (role names on an RBAC site), sorted.
pub fn partner_group_names(emulator: &Emulator, site: &str) -> Vec<String> {
    let mut names: Vec<String> = if is_rbac_site(emulator, site) {
        emulator.roles(site).into_iter().map(|r| r.name).collect()
    } else {
        emulator.groups(site).into_iter().map(|g| g.name).collect()
    };
    names.sort();
    names
}

/// The users of a site, seen as v1 users (role names as groups on an RBAC site).
pub fn partner_users_of(emulator: &Emulator, site: &str) -> Vec<PartnerUser> {
    if !is_rbac_site(emulator, site) {
        return emulator.users(site);
    }
    emulator
        .rbac_users(site)
        .into_iter()
        .filter_map(|u| partner_user_of(emulator, site, &u.email))
        .collect()
}

/// Seeds a group the bridge did not make (as one made in the vendor's UI): a v1 group, or on an
/// RBAC site a role without the bridge's mark. False when the site has one of that name.
pub fn seed_group(emulator: &Emulator, site: &str, name: &str) -> bool {
    if is_rbac_site(emulator, site) {
        emulator.insert_role(
            site,
            PartnerRole {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.to_owned(),
                description: "made in the vendor's UI".into(),
                privileges: Vec::new(),
                permissions: Vec::new(),
            },
        )
    } else {
        emulator.insert_group(
            site,
            PartnerGroup {
                name: name.to_owned(),
                access: Access::View,
            },
        )
    }
}

/// Seeds (or replaces) a partner user without a call, holding `groups` (by name; on an RBAC
/// site `All Users` and `Administrators` stand for `Everyone` and `Admin`, and every other name
/// must be a role already). The site's every-user group is added where missing.
pub fn seed_user(emulator: &Emulator, site: &str, user: PartnerUser) -> bool {
    if !is_rbac_site(emulator, site) {
        let mut user = user;
        if !user.groups.iter().any(|g| g == "All Users") {
            user.groups.insert(0, "All Users".into());
        }
        return emulator.insert_user(site, user);
    }
    let roles = emulator.roles(site);
    let ids = user
        .groups
        .iter()
        .map(|g| match g.as_str() {
            "All Users" => scim_bridge::partner::rbac::EVERYONE_ROLE,
            "Administrators" => scim_bridge::partner::rbac::ADMIN_ROLE,
            other => other,
        })
        .map(|name| {
            roles
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("seed_user: {site} has no role {name:?}"))
                .id
                .clone()
        })
        .collect();
    let id = emulator
        .rbac_user_by_email(site, &user.email)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |u| u.id);
    emulator.insert_rbac_user(
        site,
        PartnerUserV2 {
            id,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            roles: ids,
        },
    )
}

/// Calls counted since `before` (see `idp_okta::calls`), as `(kind, count)` in a fixed order.
fn counted_since(h: &Harness, before: &BTreeMap<CallKind, u64>) -> Vec<(CallKind, u64)> {
    let now = crate::idp_okta::calls(h);
    CallKind::ALL
        .into_iter()
        .filter_map(|k| {
            let d = now.get(&k).copied().unwrap_or(0) - before.get(&k).copied().unwrap_or(0);
            (d > 0).then_some((k, d))
        })
        .collect()
}

/// Asserts the partner calls since `before`, given as the v1 calls that do the job. On a v1
/// site: exactly those. On an RBAC site the writes are exactly the RBAC writes doing the same
/// job (the adapter adds no writes), every call is an RBAC call, and each v1 read is matched by
/// at least as many RBAC reads doing its job: the adapter legitimately reads more (the role
/// list to name roles, the user list to find a user's id by email, and a user again by id
/// before it writes it), so read counts are a floor there, not an exact number (and none for
/// `GetUser`: a user the site lacks may be answered from the last reading of the user list).
pub fn assert_calls_since(
    h: &Harness,
    site: &str,
    before: &BTreeMap<CallKind, u64>,
    expected: &[(CallKind, u64)],
) {
    let got = counted_since(h, before);
    if !is_rbac_site(&h.emulator, site) {
        assert_eq!(got, expected, "partner calls");
        return;
    }
    assert!(
        got.iter().all(|(k, _)| k.is_rbac()),
        "a v1 call to an RBAC site: {got:?}"
    );
    let mut want_writes: BTreeMap<CallKind, u64> = BTreeMap::new();
    for (k, n) in expected.iter().filter(|(k, _)| k.is_write()) {
        *want_writes.entry(rbac_kind(*k)).or_default() += n;
    }
    let got_writes: BTreeMap<CallKind, u64> =
        got.iter().copied().filter(|(k, _)| k.is_write()).collect();
    assert_eq!(
        got_writes, want_writes,
        "partner writes (expected as v1 calls: {expected:?}; all calls: {got:?})"
    );
    // A v1 GetUser of a user the site does not have may be answered from the RBAC client's
    // last complete reading of the user list, without a read: no floor for it.
    for (k, n) in expected
        .iter()
        .filter(|(k, _)| !k.is_write() && *k != CallKind::GetUser)
    {
        let reads: u64 = same_job(&h.emulator, site, *k)
            .iter()
            .map(|j| got.iter().find(|(g, _)| g == j).map_or(0, |(_, c)| *c))
            .sum();
        assert!(
            reads >= *n,
            "{n} {k:?} expected, {reads} RBAC reads doing its job: {got:?}"
        );
    }
}

/// The groups a new site has (`All Users`, `Administrators`; the five default roles of an RBAC
/// site).
pub fn builtin_groups(emulator: &Emulator, site: &str) -> Vec<&'static str> {
    if is_rbac_site(emulator, site) {
        scim_bridge::partner::rbac::DEFAULT_ROLES.to_vec()
    } else {
        vec!["All Users", "Administrators"]
    }
}

/// The group names of a site without those it started with (see [`builtin_groups`]), sorted.
pub fn partner_created_group_names(emulator: &Emulator, site: &str) -> Vec<String> {
    let builtin = builtin_groups(emulator, site);
    partner_group_names(emulator, site)
        .into_iter()
        .filter(|n| !builtin.contains(&n.as_str()))
        .collect()
}

/// Deletes a partner user behind the bridge's back, through the site's own API (v1 by
/// `HTTP-X-EMAIL`, RBAC by the user's id). Panics unless the partner accepts.
pub async fn delete_partner_user(h: &Harness, site: &str, email: &str) {
    let client = reqwest::Client::new();
    let auth = format!("{site}:key-{site}");
    let req = if is_rbac_site(&h.emulator, site) {
        let id = h
            .emulator
            .rbac_user_by_email(site, email)
            .unwrap_or_else(|| panic!("{site} has no user {email}"))
            .id;
        client.delete(format!(
            "{}/api/v2/users/{}?test_mode=false",
            h.partner_base(),
            urlencoding_path(&id)
        ))
    } else {
        client
            .delete(format!("{}/api/v1/users?test_mode=false", h.partner_base()))
            .header("HTTP-X-EMAIL", email)
    };
    let res = req
        .header("HTTP-X-PARTNER-AUTH", auth)
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "delete {email}: {}",
        res.status()
    );
}

fn urlencoding_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
