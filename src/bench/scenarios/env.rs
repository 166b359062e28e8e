//! What a scenario runs on: an emulator, a store and a bridge serving one tenant, all in this
//! process; and what the scenarios read from them afterwards.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::super::load::Client;
use super::super::{BenchArgs, CONVERGE_LIMIT};
use super::{OWNER, SITE};
use crate::bridge::{Bridge, BridgeOptions};
use crate::config::{
    BearerTokenConfig, Config, CredentialsConfig, HttpConfig, RateLimitConfig, SiteConfig,
    TenantConfig,
};
use crate::http::{self, AppState};
use crate::partner::emulator::faults::{Faults, Latency, RateLimit};
use crate::partner::emulator::{Emulator, RunningEmulator, SiteKind, SiteSpec};
use crate::partner::rbac::SiteApi;
use crate::partner::CallKind;
use crate::secret::Secret;
use crate::store::Store;

/// An emulator, a store and a bridge serving one tenant, all in this process.
pub(super) struct Env {
    pub(super) emulator: Emulator,
    pub(super) bridge: Bridge,
    pub(super) client: Client,
    server: tokio::task::JoinHandle<()>,
    _running: RunningEmulator,
    dir: Option<PathBuf>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
        // The scenario's membership workers stop too: on a shared PostgreSQL store they would
        // otherwise keep polling beside the next scenario's.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let bridge = self.bridge.clone();
            rt.spawn(async move { bridge.shutdown().await });
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Env {
    /// Starts the emulator, opens the store and serves the bridge on a loopback port; the
    /// client has `connections` connections.
    pub(super) async fn start(args: &BenchArgs, connections: usize) -> anyhow::Result<Env> {
        let key = crate::secret::random_token();
        let emulator = partner(args, &key);
        let running = emulator.clone().spawn().await?;
        let (store, dir) = open_store(args).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let token = crate::secret::random_token();
        let config = config(addr, &token, &running.base_url, key, args.site_api)?;
        let bridge = Bridge::new(store, &config, options(args)).map_err(anyhow::Error::msg)?;
        let state = AppState::from_config(&config)
            .map_err(anyhow::Error::msg)?
            .with_bridge(bridge.clone());
        let server = tokio::spawn(async move {
            let _ = http::run(listener, state, std::future::pending()).await;
        });
        Ok(Env {
            client: Client::new(&format!("http://{addr}/scim/v2"), Some(&token), connections)?,
            emulator,
            bridge,
            server,
            _running: running,
            dir,
        })
    }

    /// (reads, writes) the partner has answered so far (test_mode writes excluded).
    pub(super) fn partner_calls(&self) -> (u64, u64) {
        let mut reads = 0;
        let mut writes = 0;
        for kind in CallKind::ALL {
            let n = self.emulator.count_executed(SITE, kind, false);
            if kind.is_write() {
                writes += n;
            } else {
                reads += n;
            }
        }
        (reads, writes)
    }

    /// Waits until the outbox is empty; returns the seconds it took.
    pub(super) async fn converge(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        loop {
            let stats = self
                .bridge
                .store
                .outbox_stats()
                .await
                .map_err(|e| anyhow::anyhow!("outbox: {e}"))?;
            if stats.depth == 0 {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > CONVERGE_LIMIT {
                anyhow::bail!("the outbox did not drain: {stats:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every user of the site with its groups (an RBAC site's: its roles by name).
    fn partner_users(&self) -> Vec<(String, Vec<String>)> {
        if self.emulator.site_kind(SITE) == Some(SiteKind::Rbac) {
            let roles: HashMap<String, String> = self
                .emulator
                .roles(SITE)
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect();
            return self
                .emulator
                .rbac_users(SITE)
                .into_iter()
                .map(|u| {
                    let names = u.roles.iter().filter_map(|id| roles.get(id).cloned());
                    (u.email, names.collect())
                })
                .collect();
        }
        self.emulator
            .users(SITE)
            .into_iter()
            .map(|u| (u.email, u.groups))
            .collect()
    }

    /// Compares every listed user's managed groups at the partner with `expected`.
    pub(super) fn check_partner(
        &self,
        prefix: &str,
        expected: &HashMap<String, BTreeSet<String>>,
    ) -> Vec<String> {
        let users: HashMap<String, BTreeSet<String>> = self
            .partner_users()
            .into_iter()
            .map(|(email, groups)| {
                (
                    email.to_lowercase(),
                    groups
                        .into_iter()
                        .filter(|g| g.starts_with(prefix))
                        .collect(),
                )
            })
            .collect();
        let mut wrong = 0usize;
        let mut first = None;
        for (email, groups) in expected {
            match users.get(&email.to_lowercase()) {
                Some(got) if got == groups => {}
                other => {
                    wrong += 1;
                    if first.is_none() {
                        first = Some(format!(
                            "{email}: expected {groups:?}, partner has {other:?}"
                        ));
                    }
                }
            }
        }
        match first {
            None => Vec::new(),
            Some(f) => vec![format!(
                "{wrong} of {} users differ at the partner, e.g. {f}",
                expected.len()
            )],
        }
    }
}

/// The emulated partner: one site with API key `key`, the latency and rate limit the options
/// ask for.
fn partner(args: &BenchArgs, key: &str) -> Emulator {
    let spec = SiteSpec {
        name: SITE.into(),
        api_key: Secret::new(key.to_owned()),
        owner_email: OWNER.into(),
    };
    let emulator = match args.site_api {
        SiteApi::Groups => Emulator::builder().site(spec),
        SiteApi::Roles => Emulator::builder().rbac_site(spec),
    }
    .call_log_capacity(1024)
    .build();
    emulator.set_faults(
        SITE,
        Faults {
            latency: (args.partner_latency_ms > 0)
                .then_some(Latency::FixedMs(args.partner_latency_ms)),
            rate_limit: args.partner_rate.map(|r| RateLimit {
                per_second: r,
                burst: (r.ceil() as u32).max(1),
                retry_after: true,
            }),
            ..Faults::default()
        },
    );
    emulator
}

/// The store the options name, or a fresh SQLite file in a folder of its own (returned, so
/// [`Env`] removes it), migrated.
async fn open_store(args: &BenchArgs) -> anyhow::Result<(Store, Option<PathBuf>)> {
    let (url, dir) = match &args.store_url {
        Some(u) => (u.clone(), None),
        None => {
            let base = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
            let dir = base.join(format!("scim-bridge-bench-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir)?;
            (
                format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
                Some(dir),
            )
        }
    };
    let store = Store::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("store: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrate: {e}"))?;
    Ok((store, dir))
}

/// The bridge's configuration: listening on `addr` without an inbound rate limit, one tenant
/// of its own with bearer `token` and the emulator's site at `partner`.
fn config(
    addr: SocketAddr,
    token: &str,
    partner: &str,
    key: String,
    api: SiteApi,
) -> anyhow::Result<Config> {
    Ok(Config {
        listen: addr,
        public_base_url: Some(url::Url::parse(&format!("http://{addr}"))?),
        http: HttpConfig {
            rate_limit: RateLimitConfig {
                per_second: 0.0,
                burst: 1,
            },
            ..HttpConfig::default()
        },
        tenants: vec![TenantConfig {
            // A tenant of its own per run: a shared PostgreSQL store keeps earlier runs.
            name: format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            base_path: "/scim/v2".into(),
            credentials: CredentialsConfig {
                bearer_tokens: vec![BearerTokenConfig {
                    name: "bench".into(),
                    token: Some(Secret::new(token.to_owned())),
                    ..BearerTokenConfig::default()
                }],
                ..CredentialsConfig::default()
            },
            sites: vec![SiteConfig {
                base_url: url::Url::parse(partner)?,
                site_name: SITE.into(),
                api_key: Some(Secret::new(key)),
                api_key_file: None,
                allow_admin_grant: false,
                api,
                ..SiteConfig::default()
            }],
            invited_by_email: OWNER.into(),
            ..TenantConfig::default()
        }],
        ..Config::default()
    })
}

/// The bridge's options: no periodic reconcile, and the partner rate, coalescing and wait
/// deadline the options set.
fn options(args: &BenchArgs) -> BridgeOptions {
    let mut options = BridgeOptions {
        reconcile_interval_s: 0,
        ..BridgeOptions::default()
    };
    options.partner.rate_per_second = args.bridge_partner_rate;
    if let Some(c) = args.coalesce_ms {
        options.coalesce_ms = c;
    }
    if let Some(c) = args.coalesce_max_ms {
        options.coalesce_max_ms = c;
    }
    if let Some(w) = args.wait_deadline_ms {
        options.wait_deadline_ms = w;
    }
    options
}
