//! Bridge instances, each on a runtime of its own so a kill can drop every task at once; where
//! the IdP finds them; the store a run's instances share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bridge::{Bridge, BridgeOptions};
use crate::config::{
    BearerTokenConfig, Config, EmailChangePolicy, SiteConfig, TenantConfig, UnknownMembersPolicy,
};
use crate::secret::Secret;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

use super::plan::Plan;
use super::{StoreChoice, NO_BRIDGE_LIMIT, OWNER, TENANT, TOKEN};

/// How an instance dies.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kill {
    /// The runtime is dropped: every task stops at its next await, claims stay behind.
    Hard,
    /// The server task is aborted and the engine shut down.
    Graceful,
}

pub(super) struct Instance {
    pub(super) base: String,
    pub(super) kill: Option<tokio::sync::oneshot::Sender<Kill>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    pub(super) async fn start(
        store_url: String,
        tenant: TenantConfig,
        options: BridgeOptions,
        notes: Notes,
    ) -> anyhow::Result<Instance> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<Kill>();
        let thread = std::thread::Builder::new()
            .name("sim-bridge".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                let mode = rt.block_on(async move {
                    let started = serve(store_url, tenant, options).await;
                    let (bridge, server) = match started {
                        Ok((bridge, server, base)) => {
                            let _ = ready_tx.send(Ok(base));
                            (bridge, server)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Kill::Hard;
                        }
                    };
                    let mode = kill_rx.await.unwrap_or(Kill::Hard);
                    if let Kill::Graceful = mode {
                        server.abort();
                        let t = Instant::now();
                        if tokio::time::timeout(SHUTDOWN_LIMIT, bridge.shutdown())
                            .await
                            .is_err()
                        {
                            note(
                                &notes,
                                format!(
                                    "liveness: Bridge::shutdown did not return within \
                                     {SHUTDOWN_LIMIT:?} (the instance was then dropped)"
                                ),
                            );
                        } else if t.elapsed() > Duration::from_secs(3) {
                            note(
                                &notes,
                                format!("note: Bridge::shutdown took {:?}", t.elapsed()),
                            );
                        }
                        // In-flight requests may still hold connections: do not wait long.
                        let _ = tokio::time::timeout(Duration::from_secs(2), bridge.store.close())
                            .await;
                    }
                    mode
                });
                let _ = mode;
                rt.shutdown_background();
            })
            .context("spawning a bridge thread")?;
        let base = ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the bridge thread ended before it served"))?
            .map_err(|e| anyhow::anyhow!("starting a bridge: {e}"))?;
        Ok(Instance {
            base,
            kill: Some(kill_tx),
            thread: Some(thread),
        })
    }

    /// Kills the instance and waits for its thread to end.
    pub(super) async fn stop(mut self, mode: Kill) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(mode);
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Things the instances and the kill task noticed: `liveness:` lines are violations.
pub(super) type Notes = Arc<Mutex<Vec<String>>>;

pub(super) fn note(notes: &Notes, what: String) {
    if let Ok(mut n) = notes.lock() {
        n.push(what);
    }
}

/// How long a graceful shutdown of an instance may take (its workers finish their current
/// item: a partner call of at most `call_deadline_ms`).
pub(super) const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

impl Instance {
    /// Starts an instance, trying again (a store busy with the other instance may refuse a
    /// migration check for a moment).
    pub(super) async fn start_retrying(
        store_url: &str,
        tenant: &TenantConfig,
        options: &BridgeOptions,
        notes: &Notes,
    ) -> anyhow::Result<Instance> {
        let mut last = None;
        for _ in 0..3 {
            match Instance::start(
                store_url.to_owned(),
                tenant.clone(),
                options.clone(),
                notes.clone(),
            )
            .await
            {
                Ok(i) => return Ok(i),
                Err(e) => {
                    note(notes, format!("note: an instance did not start: {e:#}"));
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(Kill::Hard);
        }
    }
}

/// Store, bridge and SCIM server of one instance on `127.0.0.1:0`. No claims are released at
/// start: the other instance shares the store, and a dead one's claims must run out.
pub(super) async fn serve(
    store_url: String,
    tenant: TenantConfig,
    options: BridgeOptions,
) -> Result<(Bridge, tokio::task::JoinHandle<()>, String), String> {
    let store = Store::connect(&store_url)
        .await
        .map_err(|e| format!("store: {e}"))?;
    store.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = Config {
        listen: addr,
        public_base_url: url::Url::parse(&format!("http://{addr}")).ok(),
        tenants: vec![tenant],
        ..Config::default()
    };
    let bridge = Bridge::build(store, &config, options, Metrics::off())?;
    let state = crate::http::AppState::from_config(&config)?.with_bridge(bridge.clone());
    let server = tokio::spawn(async move {
        let _ = crate::http::run(listener, state, std::future::pending()).await;
    });
    Ok((bridge, server, format!("http://{addr}/scim/v2")))
}

pub(super) fn tenant_config(plan: &Plan, partner: &str) -> anyhow::Result<TenantConfig> {
    let base = url::Url::parse(partner)?;
    Ok(TenantConfig {
        name: TENANT.into(),
        base_path: "/scim/v2".into(),
        credentials: crate::config::CredentialsConfig {
            bearer_tokens: vec![BearerTokenConfig {
                name: "idp".into(),
                token: Some(Secret::new(TOKEN)),
                token_file: None,
                sha256: None,
            }],
            ..Default::default()
        },
        sites: plan
            .sites
            .iter()
            .map(|s| SiteConfig {
                base_url: base.clone(),
                site_name: s.clone(),
                api_key: Some(Secret::new(format!("key-{s}"))),
                api_key_file: None,
                allow_admin_grant: false,
                api: if plan.is_rbac(s) {
                    crate::partner::rbac::SiteApi::Roles
                } else {
                    crate::partner::rbac::SiteApi::Groups
                },
                ..SiteConfig::default()
            })
            .collect(),
        invited_by_email: OWNER.into(),
        deprovision: plan.policy,
        email_change: EmailChangePolicy::Update,
        unknown_members: UnknownMembersPolicy::Skip,
        ..TenantConfig::default()
    })
}

/// The IdP's view of where the bridges are: a base URL per slot, `None` while it is down.
pub(super) struct Targets {
    pub(super) slots: Mutex<Vec<Option<String>>>,
}

impl Targets {
    pub(super) fn set(&self, slot: usize, base: Option<String>) {
        if let Ok(mut s) = self.slots.lock() {
            s[slot] = base;
        }
    }

    /// Slot `k % n`, or the next live one; `None` when none is up for [`NO_BRIDGE_LIMIT`].
    pub(super) async fn pick(&self, k: usize) -> Option<String> {
        let end = Instant::now() + NO_BRIDGE_LIMIT;
        while Instant::now() < end {
            if let Ok(slots) = self.slots.lock() {
                let n = slots.len();
                if let Some(b) = (0..n).find_map(|i| slots[(k + i) % n].clone()) {
                    return Some(b);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

/// A fresh store for a run; dropped afterwards.
pub(super) struct RunStore {
    pub(super) url: String,
    /// A folder of its own, removed afterwards.
    pub(super) dir: Option<std::path::PathBuf>,
    pub(super) pg: Option<(String, String)>,
}

impl RunStore {
    pub(super) async fn new(choice: &StoreChoice) -> anyhow::Result<RunStore> {
        match choice {
            StoreChoice::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "scim-bridge-simulate-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::create_dir_all(&dir)?;
                Ok(RunStore {
                    url: format!("sqlite://{}/simulate.db", dir.display()),
                    dir: Some(dir),
                    pg: None,
                })
            }
            StoreChoice::Postgres(base) => {
                use sqlx::Connection;
                let schema = format!("sim_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(base).await?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut admin)
                    .await?;
                let _ = admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                Ok(RunStore {
                    url: format!("{base}{sep}options=-csearch_path%3D{schema}"),
                    dir: None,
                    pg: Some((base.clone(), schema)),
                })
            }
        }
    }

    pub(super) async fn drop_schema(&self) {
        use sqlx::Connection;
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((base, schema)) = &self.pg {
            if let Ok(mut admin) = sqlx::PgConnection::connect(base).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut admin)
                    .await;
                let _ = admin.close().await;
            }
        }
    }
}

/// Outbox rows under a live claim right now (any instance's), read on a connection of its own.
pub(super) async fn live_claims(store_url: &str) -> Option<i64> {
    use sqlx::Connection;
    let now = crate::bridge::now_ms();
    let sql = "SELECT COUNT(*) FROM outbox WHERE claimed_by IS NOT NULL AND claimed_until_ms > $1";
    if store_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(store_url).await.ok()?;
        let n = sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(&mut c)
            .await
            .ok();
        let _ = c.close().await;
        n
    } else {
        let mut c = sqlx::PgConnection::connect(store_url).await.ok()?;
        let n = sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(&mut c)
            .await
            .ok();
        let _ = c.close().await;
        n
    }
}
