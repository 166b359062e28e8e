//! The soak's set-up: the temporary folder, the partner emulator, the bridge as a child
//! process, the IdP's client, and the groups the workload spreads memberships over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::partner::emulator::{Emulator, RunningEmulator, SiteSpec};
use crate::secret::Secret;

use super::child::{redact_url, start_bridge, write_config, Child, RemoveDir};
use super::client::{call, status_is, Log, Scim};
use super::worker::{Names, Op};
use super::{SoakArgs, GROUPS, GROUP_SCHEMA, OWNER, SITE};

/// Everything a soak run starts before its workload; the fields drop in the order the run
/// started them in reverse (bridge first, folder last), as the run's locals did.
pub(super) struct Env {
    /// The bridge; killed when dropped.
    pub(super) child: Child,
    pub(super) pid: u32,
    /// The bridge's base URL.
    pub(super) root: String,
    pub(super) scim: Scim,
    pub(super) log: Log,
    pub(super) connections: usize,
    pub(super) store: StoreSite,
    pub(super) running: RunningEmulator,
    pub(super) emulator: Emulator,
    pub(super) names: Names,
    pub(super) dir: PathBuf,
    /// Removes the folder when dropped; forgotten when a failed run keeps it.
    pub(super) dir_guard: RemoveDir,
}

/// Where the bridge keeps its store, and how the report names it.
pub(super) struct StoreSite {
    pub(super) url: String,
    pub(super) label: String,
    /// A SQLite file of this run's own, so its whole outbox is this run's to read.
    pub(super) own_sqlite: bool,
}

impl Env {
    /// Creates the folder, starts the emulator and the bridge, and builds the IdP's client.
    pub(super) async fn start(args: &SoakArgs) -> anyhow::Result<Env> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let names = Names { tag: tag.clone() };
        let dir = std::env::temp_dir().join(format!("scim-bridge-soak-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let dir_guard = RemoveDir(dir.clone());

        let key = crate::secret::random_token();
        // A short call log: the soak never reads it, and a long one would grow for 30 minutes.
        let emulator = Emulator::with_call_log_capacity(
            vec![SiteSpec {
                name: SITE.into(),
                api_key: Secret::new(key.clone()),
                owner_email: OWNER.into(),
            }],
            64,
        );
        let running = emulator.clone().spawn().await?;
        let store = StoreSite::choose(args, &dir);
        let token = crate::secret::random_token();
        let tenant = format!("soak-{tag}");
        let config = write_config(&dir, &store.url, &tenant, &token, &running.base_url, &key)?;
        let (child, root) = start_bridge(&config, &dir).await?;
        let pid = child.child.id();

        let connections = args.connections.max(1);
        let scim = client(connections, &root, &token)?;
        Ok(Env {
            child,
            pid,
            root,
            scim,
            log: Log::default(),
            connections,
            store,
            running,
            emulator,
            names,
            dir,
            dir_guard,
        })
    }

    /// Waits until the bridge answers `/readyz`, for 30 s at most.
    pub(super) async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .scim
                .http
                .get(format!("{}/readyz", self.root))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the bridge never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the workload's groups (before any fault); returns their ids in order.
    pub(super) async fn create_groups(&self) -> anyhow::Result<Arc<Vec<String>>> {
        let mut group_ids = Vec::new();
        for g in 0..GROUPS {
            let body = json!({"schemas": [GROUP_SCHEMA], "displayName": self.names.group(g), "members": []});
            let reply = call(
                &self.scim,
                &self.log,
                Op::Setup,
                reqwest::Method::POST,
                "/Groups",
                Some(&body),
                status_is(&[201]),
            )
            .await
            .context("a set-up group could not be created")?;
            group_ids.push(
                reply.body["id"]
                    .as_str()
                    .context("a created group has no id")?
                    .to_owned(),
            );
        }
        Ok(Arc::new(group_ids))
    }
}

impl StoreSite {
    /// The store the options name, or a fresh SQLite file in the run's folder.
    fn choose(args: &SoakArgs, dir: &std::path::Path) -> StoreSite {
        match &args.store_url {
            Some(u) => StoreSite {
                url: u.clone(),
                label: redact_url(u),
                own_sqlite: false,
            },
            None => StoreSite {
                url: format!("sqlite://{}/soak.db?mode=rwc", dir.display()),
                label: "sqlite (temporary file)".to_owned(),
                own_sqlite: true,
            },
        }
    }
}

/// The IdP's HTTP client for the bridge at `root`: one idle connection per workload
/// connection, a 60 s timeout, no proxy.
fn client(connections: usize, root: &str, token: &str) -> anyhow::Result<Scim> {
    Ok(Scim {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?,
        base: format!("{root}/scim/v2"),
        auth: format!("Bearer {token}"),
        epoch: Instant::now(),
    })
}
