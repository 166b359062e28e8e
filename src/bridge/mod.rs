//! Orchestration: the only layer that talks to both the store and the partner.
//!
//! - [`users`]: create (adopting existing partner users), replace, patch, deactivate and
//!   reactivate per the tenant's deprovisioning policy, email changes per its email-change
//!   policy, delete. Partner first: validate, call every site, then commit and answer.
//! - [`groups`]: create (adopting existing partner groups), rename, access level, delete, and
//!   membership changes, which go through the membership engine.
//! - [`engine`]: the membership engine (DESIGN.md section 4): `memberships` + `outbox` in one
//!   transaction, workers converging each (site, user), requests waiting up to a deadline.
//! - [`reads`]: list, filter, sort, page and project, from the store only.
//! - [`mapping`]: SCIM -> partner field mapping and group-name arithmetic.
//! - [`reconcile`]: drift between the store and the partner, found and repaired.
//! - [`retention`]: the periodic pruning of the audit log (`audit.retention_days`).
//! - [`credentials`]: each site's API key checked at start and periodically; the fast 503
//!   for writes to a site whose key is refused or whose circuit is open.
//! - [`operator`]: what the HTTP layer needs besides resources: readiness checks, the audit
//!   log, recording an IdP's partner calls.

pub mod credentials;
pub mod engine;
pub mod explain;
pub mod groups;
pub mod mapping;
pub mod operator;
pub mod partner_links;
pub mod reads;
pub mod reconcile;
pub mod retention;
pub mod users;
pub mod write_lock;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::config::{Config, TenantConfig};
use crate::partner::client::{ClientOptions, PartnerClient, SiteConnection};
use crate::partner::error::{PartnerError, PartnerErrorKind};
use crate::scim::ScimError;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// What the partner told of a site's API key (the console shows it).
pub use crate::partner::client::KeyState;
pub use engine::Engine;

pub use crate::config::BridgeOptions;

/// One partner site of a tenant.
#[derive(Clone)]
pub struct Site {
    pub name: String,
    pub client: PartnerClient,
    /// `allow_admin_grant`: whether SCIM groups may map to the site's privileged group.
    pub allow_admin_grant: bool,
}

impl Site {
    /// True when membership of the group `name` makes its members administrators of this
    /// site: `Administrators` on a v1 site, the `Admin` role (after `role_map`) on an RBAC one.
    pub fn privileged(&self, name: &str) -> bool {
        match self.client.role_site() {
            Some(rs) => rs
                .settings
                .role_name(name)
                .trim()
                .eq_ignore_ascii_case(crate::partner::rbac::ADMIN_ROLE),
            None => crate::partner::is_privileged_group(name),
        }
    }

    /// The partner name of the group every user holds, which SCIM cannot manage.
    pub fn everyones_group(&self) -> &'static str {
        match self.client.role_site() {
            Some(_) => crate::partner::rbac::EVERYONE_ROLE,
            None => crate::partner::ALL_USERS_GROUP,
        }
    }

    /// True when the group `name` maps to the group (or role) every user holds.
    pub fn is_everyones(&self, name: &str) -> bool {
        let partner = match self.client.role_site() {
            Some(rs) => rs.settings.role_name(name),
            None => name,
        };
        partner.trim().eq_ignore_ascii_case(self.everyones_group())
    }

    /// The lowercased names of `managed` (every name the bridge gives the tenant's groups)
    /// that SCIM manages at this site, given the tenant's groups' current names. A site that
    /// does not let SCIM grant admin rights leaves its privileged group to its own
    /// administrators, neither granted nor removed, unless a SCIM group still maps to it from
    /// before (such groups can no longer be made): that one stays managed, so the IdP can take
    /// the rights it gave away again.
    pub fn managed_here<'a>(
        &self,
        managed: impl IntoIterator<Item = String>,
        mut current: impl Iterator<Item = &'a str>,
    ) -> std::collections::HashSet<String> {
        let legacy = self.allow_admin_grant || current.any(|g| self.privileged(g));
        managed
            .into_iter()
            .filter(|g| legacy || !self.privileged(g))
            .map(|g| g.to_lowercase())
            .collect()
    }
}

/// A tenant at run time: its configuration and a client per site.
pub struct Tenant {
    pub config: TenantConfig,
    pub sites: Vec<Site>,
}

impl Tenant {
    /// Builds a client per site of the tenant, with the limits every partner client of the
    /// process shares (the bridge's, and the admin commands' that write to the partner).
    pub fn connect(config: &TenantConfig, options: &ClientOptions) -> Result<Tenant, String> {
        let mut sites = Vec::new();
        for s in &config.sites {
            let client = PartnerClient::new(
                SiteConnection {
                    base_url: s.base_url.clone(),
                    site_name: s.site_name.clone(),
                    api_key: s.api_key.clone().unwrap_or_default(),
                },
                options.clone(),
            )
            .map_err(|e| format!("tenant {} site {}: {e}", config.name, s.site_name))?;
            let client = match s.api {
                crate::partner::rbac::SiteApi::Groups => client,
                crate::partner::rbac::SiteApi::Roles => {
                    client.with_roles(crate::partner::client::RoleSite::new(
                        crate::partner::rbac::RoleSettings {
                            role_map: s.role_map.clone(),
                            template: s.role_template.clone(),
                            create_roles: s.create_roles,
                        },
                        Some(config.invited_by_email.clone()).filter(|e| !e.is_empty()),
                    ))
                }
            };
            sites.push(Site {
                name: s.site_name.clone(),
                client,
                allow_admin_grant: s.allow_admin_grant,
            });
        }
        Ok(Tenant {
            config: config.clone(),
            sites,
        })
    }

    /// Keeps the links of the tenant's RBAC sites (user and role ids) in `store`, shared by
    /// every replica and kept across restarts.
    pub fn keep_links_in(&self, store: &Store) {
        for site in &self.sites {
            if let Some(rs) = site.client.role_site() {
                rs.keep_links_in(partner_links::StoreLinks::new(
                    store.clone(),
                    self.name(),
                    &site.name,
                ));
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn site_names(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.name.clone()).collect()
    }

    pub fn dry_run(&self) -> bool {
        self.config.dry_run
    }

    /// Whether SCIM must leave this partner account's names and email as they are at the
    /// partner: a protected account, unless the tenant sets `allow_protected_changes`.
    pub fn keeps_profile(&self, email: &str) -> bool {
        self.protects(email) && !self.config.allow_protected_changes
    }

    /// Whether SCIM must never delete this partner account: the tenant's inviting user and its
    /// `protected_emails` (DESIGN.md section 4). Deprovisioning strips their managed groups.
    pub fn protects(&self, email: &str) -> bool {
        !email.is_empty()
            && (email.eq_ignore_ascii_case(&self.config.invited_by_email)
                || self
                    .config
                    .protected_emails
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(email)))
    }
}

/// The bridge: store, tenants, membership engine. Cheap to clone.
#[derive(Clone)]
pub struct Bridge {
    pub store: Store,
    pub tenants: Arc<HashMap<String, Arc<Tenant>>>,
    pub engine: Engine,
    pub options: Arc<BridgeOptions>,
    /// Where the partner clients and reconciliations report (off unless `metrics_listen`).
    pub metrics: Metrics,
    /// The last hour of partner calls per site (the console's chart).
    pub calls: crate::partner::client::CallHistory,
    /// Striped locks serializing writes to one resource in this process (read-modify-write of
    /// its row); across replicas the row version catches the rest.
    locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// The IdP's writes, each on a task of its own ([`Bridge::spawn_write`]): a shutdown waits
    /// for them, so a write whose client went away still ends its flow before the process
    /// exits.
    writes: tokio_util::task::TaskTracker,
}

impl Bridge {
    /// Builds the tenants' partner clients and starts the engine's workers.
    pub fn new(store: Store, config: &Config, options: BridgeOptions) -> Result<Bridge, String> {
        Self::build(store, config, options, Metrics::off())
    }

    /// [`Bridge::new`] with the partner clients and reconciliations reporting to `metrics`.
    pub fn build(
        store: Store,
        config: &Config,
        options: BridgeOptions,
        metrics: Metrics,
    ) -> Result<Bridge, String> {
        let mut tenants = HashMap::new();
        let calls = crate::partner::client::CallHistory::default();
        for t in &config.tenants {
            tenants.insert(
                t.name.clone(),
                Arc::new({
                    let mut tenant = Tenant::connect(t, &options.partner)?;
                    tenant.keep_links_in(&store);
                    for site in &mut tenant.sites {
                        metrics.site_info(&t.name, &site.name, site.client.api().as_str());
                        metrics.partner_circuit(&t.name, &site.name, false);
                        site.client = site.client.clone().with_observer(
                            calls.observer(&t.name, metrics.partner_observer(&t.name)),
                        );
                    }
                    tenant
                }),
            );
        }
        let tenants = Arc::new(tenants);
        let options = Arc::new(options);
        let engine = Engine::start(store.clone(), tenants.clone(), options.clone());
        Ok(Bridge {
            store,
            tenants,
            engine,
            options,
            metrics,
            calls,
            locks: Arc::new((0..1024).map(|_| tokio::sync::Mutex::new(())).collect()),
            writes: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Runs an IdP's write to its end on a task of its own (see `http::audit`), tracked so
    /// that [`Bridge::shutdown`] waits for it.
    pub fn spawn_write<F>(&self, write: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.writes.spawn(write)
    }

    /// Serializes writes to one resource in this process. Held only around the
    /// read-modify-write, never while waiting for the engine.
    pub async fn lock(&self, tenant: &str, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant, id).hash(&mut h);
        let i = (h.finish() as usize) % self.locks.len();
        self.locks[i].lock().await
    }

    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(name).cloned()
    }

    pub fn wait_deadline(&self) -> Duration {
        Duration::from_millis(self.options.wait_deadline_ms)
    }

    /// Starts the periodic reconciliation (when `reconcile_interval_s > 0`); the task ends
    /// when the returned handle is aborted.
    pub fn start_reconciler(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.options.reconcile_interval_s;
        if every == 0 {
            return None;
        }
        let bridge = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick fires at once: skip it
            loop {
                tick.tick().await;
                for tenant in bridge.tenants.values() {
                    match reconcile::run(&bridge, tenant, true, "reconciler").await {
                        Ok(reports) => {
                            for r in reports.iter().filter(|r| !r.in_sync()) {
                                if r.leavers() > 0 {
                                    tracing::warn!(
                                        tenant = %r.tenant,
                                        site = %r.site,
                                        users_not_removed = r.users_not_removed.len(),
                                        deleted_users_present = r.deleted_users_present.len(),
                                        "reconcile found leavers still at the partner; removing them"
                                    );
                                }
                                tracing::warn!(
                                    tenant = %r.tenant,
                                    site = %r.site,
                                    users_missing = r.users_missing.len(),
                                    memberships_drifted = r.memberships_drifted.len(),
                                    names_drifted = r.names_drifted.len(),
                                    groups_missing = r.groups_missing.len(),
                                    "reconcile found drift; repairing"
                                );
                            }
                        }
                        Err(e) => {
                            tracing::warn!(tenant = %tenant.name(), error = %e, "reconcile failed")
                        }
                    }
                }
            }
        }))
    }

    /// Starts the periodic pruning of the audit log past `retention_days` (0: keep forever,
    /// no task): first shortly after start, then hourly. The task ends when the returned
    /// handle is aborted.
    pub fn start_audit_pruner(&self, retention_days: u32) -> Option<tokio::task::JoinHandle<()>> {
        retention::start(
            self.store.clone(),
            self.metrics.clone(),
            retention_days,
            retention::FIRST_RUN_AFTER,
            retention::RUN_EVERY,
        )
    }

    /// Waits for the writes in flight, then stops the workers after their current item.
    pub async fn shutdown(&self) {
        // Writes first: their flows still mark and settle through the engine.
        self.writes.close();
        if !self.writes.is_empty() {
            tracing::info!(
                writes = self.writes.len(),
                "waiting for writes in flight to end"
            );
        }
        self.writes.wait().await;
        self.engine.shutdown().await;
    }
}

pub use crate::clock::now_ms;

/// Maps a store failure onto the SCIM error the client gets.
pub fn store_error(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict { what } => {
            ScimError::uniqueness(format!("{what} is already taken in this tenant"))
        }
        StoreError::NotFound => ScimError::not_found("The resource was not found."),
        StoreError::VersionMismatch => ScimError::new(
            409,
            None,
            "The resource was changed by another request at the same time; retry.",
        ),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "store unavailable");
            ScimError::new(503, None, "The store is unavailable; retry later.")
        }
        StoreError::Other(detail) => {
            tracing::error!(%detail, "store error");
            ScimError::internal("store error")
        }
    }
}

/// Maps a partner failure onto the SCIM error the client gets. Transient failures are 503
/// (the IdP retries); a partner that refuses the bridge's key is 503 too, since the IdP can do
/// nothing about it but wait for an operator; an invalid request is the client's 400.
pub fn partner_error(e: &PartnerError) -> ScimError {
    match e.kind {
        PartnerErrorKind::Transient | PartnerErrorKind::Unavailable => ScimError::new(
            503,
            None,
            format!(
                "The partner site '{}' is unavailable ({}); retry later.",
                e.site,
                e.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "no answer".into())
            ),
        ),
        PartnerErrorKind::Auth => {
            tracing::error!(site = %e.site, "the partner refused the bridge's API key");
            ScimError::new(
                503,
                None,
                format!(
                    "The partner site '{}' refused the bridge's credentials; an operator must fix the API key.",
                    e.site
                ),
            )
        }
        PartnerErrorKind::Invalid => ScimError::invalid_value(format!(
            "The partner site '{}' refused the change: {}",
            e.site, e.message
        )),
        PartnerErrorKind::Conflict => ScimError::uniqueness(format!(
            "The partner site '{}' reports a conflict: {}",
            e.site, e.message
        )),
        PartnerErrorKind::NotFound => ScimError::not_found(format!(
            "The partner site '{}' does not know the resource: {}",
            e.site, e.message
        )),
    }
}

/// Seconds the client should wait before retrying after a partner failure.
pub fn retry_after(e: &PartnerError) -> Option<u64> {
    e.retry_after.map(|d| d.as_secs().max(1))
}

/// Runs `f` for every site of the tenant concurrently; results in site order.
pub async fn for_each_site<'a, F, Fut, T>(tenant: &'a Tenant, f: F) -> Vec<(&'a Site, T)>
where
    F: Fn(&'a Site) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let futs = tenant.sites.iter().map(|s| {
        let fut = f(s);
        async move { (s, fut.await) }
    });
    join_all(futs).await
}

/// The one `Retry-After` policy, in seconds, for every 503 and 429 the bridge answers without a
/// wait of its own to pass on (a partner's own `Retry-After`, a rate limit's or failure
/// budget's refill time are passed on as they are).
pub mod retry_after {
    /// Contention that clears in moments: a lock another writer holds, the password-hashing
    /// lane, the connection cap, a store briefly unreachable.
    pub const CONTENDED: u64 = 1;
    /// Work that goes on after the answer and takes a while: a request past its deadline, a
    /// deletion still being carried out, a partner that is unavailable and said nothing.
    pub const IN_PROGRESS: u64 = 5;
    /// A partner site that refuses the bridge's API key: an operator must act.
    pub const KEY_REFUSED: u64 = 60;
}

/// A SCIM error plus the `Retry-After` the HTTP layer should send.
#[derive(Debug, Clone)]
pub struct BridgeError {
    pub error: ScimError,
    pub retry_after: Option<u64>,
}

impl BridgeError {
    /// 503: contention that clears in moments ([`retry_after::CONTENDED`]).
    pub fn contended(detail: impl Into<String>) -> Self {
        Self {
            error: ScimError::new(503, None, detail),
            retry_after: Some(retry_after::CONTENDED),
        }
    }

    /// 503: the work goes on after this answer ([`retry_after::IN_PROGRESS`]).
    pub fn in_progress(detail: impl Into<String>) -> Self {
        Self {
            error: ScimError::new(503, None, detail),
            retry_after: Some(retry_after::IN_PROGRESS),
        }
    }
}

impl From<ScimError> for BridgeError {
    fn from(error: ScimError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<StoreError> for BridgeError {
    fn from(e: StoreError) -> Self {
        let retry = matches!(e, StoreError::Unavailable(_)).then_some(retry_after::CONTENDED);
        Self {
            error: store_error(e),
            retry_after: retry,
        }
    }
}

impl From<&PartnerError> for BridgeError {
    fn from(e: &PartnerError) -> Self {
        let error = partner_error(e);
        let retry_after = if error.status == 503 {
            Some(retry_after(e).unwrap_or(retry_after::IN_PROGRESS))
        } else {
            None
        };
        Self { error, retry_after }
    }
}

impl From<PartnerError> for BridgeError {
    fn from(e: PartnerError) -> Self {
        BridgeError::from(&e)
    }
}

pub type BridgeResult<T> = Result<T, BridgeError>;
