//! `scim-bridge simulate`: a seeded simulation of IdP traffic against two bridges on one store
//! ("simulation before trust", STYLE.md; DESIGN.md section 4 is what it checks).
//!
//! Each run has a seed. The seed fixes the run's shape (sites, deprovisioning policy, IdP
//! request shapes, deadlines and leases, partner faults, how many users, groups and IdP
//! connections) and every random choice of the workload, the cancellations and the kills. The
//! interleaving itself is the operating system's, so a seed replays the same schedule, not
//! necessarily the same interleaving: run a failing seed a few times.
//!
//! A run: one partner emulator (faults: a share of 5xx answers, answers dropped mid-body,
//! latency) and two bridges sharing one store (a SQLite file, or a fresh PostgreSQL schema),
//! each on a runtime of its own, serving SCIM on loopback. Several IdP connections send Okta-
//! and Entra-shaped requests: user creates, name updates (Okta `PUT`, Entra `PATCH`), email
//! (`userName`) changes, deactivations (`active: false`, and Entra's string `"False"`),
//! reactivations, deletes, group creates and renames, and membership PATCHes that overlap in
//! time on the same groups and users. Each (group, user) pair, each user and each group is
//! changed by one connection only, one request at a time, so the IdP's intent is well defined
//! whatever the interleaving. Meanwhile requests are cancelled at random points (the request
//! future dropped, as an IdP's timeout does), and bridge instances are killed (their runtime
//! dropped: every task stops where it is, claims and all; or a graceful shutdown) and
//! restarted on the same store.
//!
//! The IdP model applies a request's change once it is answered 2xx; a 429, 5xx, timeout,
//! cancel or refused connection is sent again later (as Okta and Entra retry) until a
//! definitive answer. A 409 to a create that may have landed before, and a 404 to a delete
//! that may have, are looked up / accepted as an IdP does; any other 4xx is a violation.
//!
//! After the run the faults stop and the bridges converge (no reconcile is run). The checks:
//! 1. every site holds exactly the users the IdP intends (active users, and inactive ones under
//!    `strip`/`keep`), with their names, email and managed groups, and the unmanaged groups
//!    they had (`All Users`, vendor groups) untouched;
//! 2. no user the IdP deleted, or deactivated under `remove`, and no old email, exists at any
//!    site; the inviting account always does;
//! 3. the emulator's call log shows no two overlapping user writes for one (site, email);
//! 4. the outbox is drained (rows left failing are reported as a violation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::bridge::{Bridge, BridgeOptions};
use crate::config::{
    BearerTokenConfig, Config, DeprovisionPolicy, EmailChangePolicy, SiteConfig, TenantConfig,
    UnknownMembersPolicy,
};
use crate::partner::client::ClientOptions;
use crate::partner::emulator::faults::{Faults, Latency};
use crate::partner::emulator::{CallRecord, Emulator, SiteSpec};
use crate::partner::{Access, CallKind, PartnerGroup, PartnerUser};
use crate::secret::Secret;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

const TOKEN: &str = "simulation-bearer-token-0123456789";
const OWNER: &str = "owner@sim.example.com";
const TENANT: &str = "sim";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Unmanaged groups: every partner user has the first; the owner has `Administrators`, the
/// pre-existing vendor user the last.
const ALL_USERS: &str = "All Users";
const VENDOR_GROUP: &str = "Vendor UI";
/// How long one IdP request may go without a definitive answer before it is a violation.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How long the IdP waits for a bridge instance to be up.
const NO_BRIDGE_LIMIT: Duration = Duration::from_secs(30);
/// How long the bridges may take to converge once the faults stop.
const CONVERGE_LIMIT: Duration = Duration::from_secs(45);

/// `scim-bridge simulate` options.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// How many seeds to run, from --first-seed on.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Run this one seed only (to replay a failure).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The first seed of a --seeds run.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// A PostgreSQL server URL (`postgres://...`): each seed runs on a fresh schema of its
    /// own, dropped afterwards. Default: a fresh SQLite file per seed.
    #[arg(long)]
    pub store: Option<String>,
    /// Leave out name and email (userName) changes (the CI workload; see
    /// `tests/it/simulation.rs`).
    #[arg(long)]
    pub no_attribute_updates: bool,
    /// Print each seed's plan, and the history of the users a violation names.
    #[arg(long)]
    pub verbose: bool,
}

/// Runs the seeds and prints a line per seed and a summary; non-zero when any seed found a
/// violation (or could not run).
pub async fn run(args: SimulateArgs) -> ExitCode {
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect(),
    };
    let store = match args.store.as_deref() {
        None => StoreChoice::Sqlite,
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreChoice::Postgres(url.to_owned())
        }
        Some(_) => {
            eprintln!("error: --store must be a postgres:// URL (SQLite is the default)");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in &seeds {
        let workload = Workload {
            attribute_updates: !args.no_attribute_updates,
        };
        match run_seed(*seed, &store, workload).await {
            Ok(outcome) => {
                println!("{}", outcome.line());
                if args.verbose {
                    println!("  plan: {}", outcome.plan);
                }
                for v in &outcome.violations {
                    println!("  violation: {v}");
                }
                if args.verbose {
                    for d in &outcome.details {
                        println!("  {d}");
                    }
                }
                if !outcome.passed() {
                    failed.push(*seed);
                }
            }
            Err(e) => {
                println!("seed {seed}: could not run: {e:#}");
                failed.push(*seed);
            }
        }
    }
    println!(
        "simulate: {} seed(s) in {:.1} s, {} passed, {} failed{}",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        seeds.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(
                "; replay with `scim-bridge simulate --seed N`: {}",
                failed
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the IdP sends besides the fixed mix.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Name updates and email (`userName`) changes; off in the CI test's workload (see
    /// `tests/it/simulation.rs`).
    pub attribute_updates: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            attribute_updates: true,
        }
    }
}

/// Where a run keeps its store.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// A fresh SQLite file in a temporary folder, shared by the two bridges.
    Sqlite,
    /// A fresh schema on this PostgreSQL server.
    Postgres(String),
}

/// What one seed found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// The run's shape, for the report.
    pub plan: String,
    pub violations: Vec<String>,
    /// Acknowledged IdP changes, attempts sent again, requests cancelled, instances killed.
    pub acknowledged: usize,
    pub retried: usize,
    pub cancelled: usize,
    pub kills: usize,
    /// Outbox rows under a live claim when an instance was killed hard (the killed one's,
    /// which the other must take over once their lease runs out, and the survivor's).
    pub claims_at_kills: i64,
    pub user_writes: usize,
    pub took: Duration,
    /// The IdP's history of the users a violation names, and their partner writes.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line: the seed, the verdict and the counts.
    pub fn line(&self) -> String {
        format!(
            "seed {}: {} ({} changes acknowledged, {} attempts retried, {} cancelled, {} \
             kills ({} live claims at hard kills), {} partner user writes, {:.1} s)",
            self.seed,
            if self.passed() {
                "ok".to_owned()
            } else {
                format!("{} VIOLATION(S)", self.violations.len())
            },
            self.acknowledged,
            self.retried,
            self.cancelled,
            self.kills,
            self.claims_at_kills,
            self.user_writes,
            self.took.as_secs_f64()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The plan of a seed.

/// Which IdP's request shapes a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Okta,
    Entra,
    Mixed,
}

#[derive(Debug, Clone)]
struct Plan {
    sites: Vec<String>,
    policy: DeprovisionPolicy,
    shape: Shape,
    users: usize,
    groups: usize,
    connections: usize,
    ops_per_connection: usize,
    /// Small `wait_deadline_ms` and `lease_ms`.
    short: bool,
    wait_deadline_ms: u64,
    lease_ms: u64,
    error_share: f64,
    drop_share: f64,
    latency_max_ms: u64,
    cancel_share: f64,
    kills: usize,
    /// Slot 0 is the tenant's inviting account (adopted, protected).
    owner_slot: bool,
    /// Slot 1 exists at the partner before the run, in an unmanaged group (adopted).
    vendor_slot: bool,
    /// Name and email (`userName`) changes are sent (see [`Workload`]).
    attribute_updates: bool,
}

impl Plan {
    fn new(seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x51a1_7e55);
        let sites = if rng.random_bool(0.4) {
            vec!["alpha".to_owned(), "beta".to_owned()]
        } else {
            vec!["alpha".to_owned()]
        };
        let policy = match rng.random_range(0..10) {
            0 => DeprovisionPolicy::Strip,
            1 => DeprovisionPolicy::Keep,
            _ => DeprovisionPolicy::Remove,
        };
        let shape = match rng.random_range(0..3) {
            0 => Shape::Okta,
            1 => Shape::Entra,
            _ => Shape::Mixed,
        };
        let short = rng.random_bool(0.3);
        Plan {
            sites,
            policy,
            shape,
            users: rng.random_range(6..=10),
            groups: rng.random_range(3..=4),
            connections: rng.random_range(3..=4),
            ops_per_connection: rng.random_range(10..=18),
            short,
            wait_deadline_ms: if short {
                rng.random_range(20..=300)
            } else {
                2_000
            },
            // A fence stops a claim's partner writes half a lease before it ends at the
            // latest, and the guarantee that no two writers overlap holds while a write sent
            // before that reaches the partner within that half. With leases from 300 ms, a
            // loaded CI machine's scheduling stalls (the emulator runs in this process) broke
            // it: a create sent by a worker whose claim then lapsed landed after the next
            // worker's delete (seed 11, a 441 ms lease).
            lease_ms: if short {
                rng.random_range(1_200..=2_000)
            } else {
                2_500
            },
            error_share: rng.random_range(0.0..0.12),
            drop_share: rng.random_range(0.0..0.04),
            latency_max_ms: rng.random_range(2..=30),
            cancel_share: rng.random_range(0.03..0.12),
            kills: rng.random_range(1..=3),
            owner_slot: rng.random_bool(0.25),
            vendor_slot: rng.random_bool(0.5),
            attribute_updates: true,
        }
    }

    fn describe(&self) -> String {
        format!(
            "sites {:?}, deprovision {:?}, {:?} shapes, {} users, {} groups, {} connections x {} \
             ops, wait_deadline {} ms, lease {} ms, partner errors {:.0}% drops {:.0}% latency \
             <= {} ms, cancels {:.0}%, {} kills{}{}{}{}",
            self.sites,
            self.policy,
            self.shape,
            self.users,
            self.groups,
            self.connections,
            self.ops_per_connection,
            self.wait_deadline_ms,
            self.lease_ms,
            self.error_share * 100.0,
            self.drop_share * 100.0,
            self.latency_max_ms,
            self.cancel_share * 100.0,
            self.kills,
            if self.short { " (short deadlines)" } else { "" },
            if self.owner_slot {
                ", the owner is a SCIM user"
            } else {
                ""
            },
            if self.vendor_slot {
                ", a vendor user is adopted"
            } else {
                ""
            },
            if self.attribute_updates {
                ""
            } else {
                ", no name or email changes"
            },
        )
    }

    fn bridge_options(&self) -> BridgeOptions {
        BridgeOptions {
            wait_deadline_ms: self.wait_deadline_ms,
            workers: 2,
            lease_ms: self.lease_ms,
            poll_ms: 30,
            retry_base_ms: 30,
            retry_max_ms: 400,
            coalesce_ms: 10,
            coalesce_max_ms: 200,
            reconcile_interval_s: 0,
            // A rename flow here ends within a few seconds (2 s call deadlines): the engine
            // finishes or undoes a half-done one after that, within the run's quiescence wait.
            rename_settle_ms: 6_000,
            partner: ClientOptions {
                request_timeout_ms: 1_000,
                call_deadline_ms: 2_000,
                max_attempts: 3,
                backoff_base_ms: 10,
                backoff_max_ms: 80,
                circuit_failure_threshold: 0,
                ..ClientOptions::default()
            },
            ..BridgeOptions::default()
        }
    }

    fn faults(&self, seed: u64) -> Faults {
        Faults {
            latency: Some(Latency::UniformMs {
                min: 0,
                max: self.latency_max_ms,
            }),
            error_share: self.error_share,
            error_statuses: vec![500, 502, 503],
            drop_share: self.drop_share,
            seed,
            ..Faults::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bridge instances: each on a runtime of its own, so a kill can drop every task at once.

/// How an instance dies.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The runtime is dropped: every task stops at its next await, claims stay behind.
    Hard,
    /// The server task is aborted and the engine shut down.
    Graceful,
}

struct Instance {
    base: String,
    kill: Option<tokio::sync::oneshot::Sender<Kill>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    async fn start(
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
    async fn stop(mut self, mode: Kill) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(mode);
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Things the instances and the kill task noticed: `liveness:` lines are violations.
type Notes = Arc<Mutex<Vec<String>>>;

fn note(notes: &Notes, what: String) {
    if let Ok(mut n) = notes.lock() {
        n.push(what);
    }
}

/// How long a graceful shutdown of an instance may take (its workers finish their current
/// item: a partner call of at most `call_deadline_ms`).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

impl Instance {
    /// Starts an instance, trying again (a store busy with the other instance may refuse a
    /// migration check for a moment).
    async fn start_retrying(
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
async fn serve(
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

fn tenant_config(plan: &Plan, partner: &str) -> anyhow::Result<TenantConfig> {
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
struct Targets {
    slots: Mutex<Vec<Option<String>>>,
}

impl Targets {
    fn set(&self, slot: usize, base: Option<String>) {
        if let Ok(mut s) = self.slots.lock() {
            s[slot] = base;
        }
    }

    /// Slot `k % n`, or the next live one; `None` when none is up for [`NO_BRIDGE_LIMIT`].
    async fn pick(&self, k: usize) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// The IdP model.

#[derive(Debug, Clone)]
struct Slot {
    /// SCIM id of the current incarnation; `None`: never created or deleted.
    id: Option<String>,
    email: String,
    given: String,
    family: String,
    active: bool,
    /// Emails this slot's users have had (the current one included).
    emails_used: BTreeSet<String>,
    /// Its partner account carries the unmanaged vendor group (until the account is deleted).
    vendor: bool,
    /// The owner slot: protected, never renamed.
    protected: bool,
    /// Bumped at each email change and re-create, for fresh emails.
    version: u32,
    /// What the IdP did to this slot, with answers, for a failure's report.
    history: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct GroupM {
    id: Option<String>,
    name: String,
    /// Names it had before renames.
    old_names: BTreeSet<String>,
    /// SCIM ids of its members (ids of deleted users may stay; they do not matter).
    members: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Model {
    users: Vec<Slot>,
    groups: Vec<GroupM>,
    acknowledged: usize,
    violations: Vec<String>,
}

/// Shared by the IdP connections.
struct Idp {
    http: reqwest::Client,
    targets: Arc<Targets>,
    next: AtomicUsize,
    retried: AtomicUsize,
    cancelled: AtomicUsize,
    cancel_share: f64,
    model: Mutex<Model>,
    epoch: Instant,
}

/// A definitive answer, and whether an earlier attempt may have landed.
struct Answer {
    status: u16,
    body: Value,
    ambiguous: bool,
}

impl Idp {
    /// Appends to slot `u`'s history.
    fn note(&self, u: usize, what: String) {
        let t = self.epoch.elapsed().as_millis();
        if let Ok(mut m) = self.model.lock() {
            m.users[u].history.push(format!("{t} ms: {what}"));
        }
    }

    fn violation(&self, v: String) {
        if let Ok(mut m) = self.model.lock() {
            m.violations.push(v);
        }
    }

    /// Sends until a definitive answer (2xx or 4xx other than 429); `None` after
    /// [`GIVE_UP_AFTER`] (a violation is recorded).
    async fn send(
        &self,
        rng: &mut SmallRng,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<Answer> {
        let end = Instant::now() + GIVE_UP_AFTER;
        let mut ambiguous = false;
        loop {
            if Instant::now() > end {
                self.violation(format!(
                    "{method} {path}: no definitive answer within {GIVE_UP_AFTER:?}"
                ));
                return None;
            }
            let Some(base) = self
                .targets
                .pick(self.next.fetch_add(1, Ordering::Relaxed))
                .await
            else {
                self.violation(format!(
                    "liveness: {method} {path}: no bridge instance up for {NO_BRIDGE_LIMIT:?}"
                ));
                return None;
            };
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .header("Accept", "application/scim+json");
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/scim+json")
                    .body(serde_json::to_vec(b).unwrap_or_default());
            }
            let attempt = async move {
                let res = req.send().await.ok()?;
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let bytes = res.bytes().await.ok()?;
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    })
                };
                Some((status, retry_after, body))
            };
            // Some attempts are cancelled: the future is dropped after a random time, as an
            // IdP's own timeout does.
            let result = if rng.random_bool(self.cancel_share) {
                let after = Duration::from_millis(rng.random_range(1..=150));
                match tokio::time::timeout(after, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.cancelled.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            } else {
                attempt.await
            };
            match result {
                Some((status, _, body)) if status != 429 && status < 500 => {
                    return Some(Answer {
                        status,
                        body,
                        ambiguous,
                    })
                }
                other => {
                    ambiguous = true;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = match other {
                        Some((_, Some(secs), _)) => (secs * 1000).min(300),
                        _ => rng.random_range(10..=120),
                    };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }

    /// The one resource a filter finds (after a 409 to a create that may have landed).
    async fn find(
        &self,
        rng: &mut SmallRng,
        resource: &str,
        attr: &str,
        value: &str,
    ) -> Option<String> {
        let filter = format!("{attr} eq \"{value}\"");
        let path = format!(
            "/{resource}?filter={}",
            percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
        );
        let a = self.send(rng, reqwest::Method::GET, &path, None).await?;
        if a.status != 200 || a.body["totalResults"] != 1 {
            self.violation(format!(
                "GET /{resource}?filter={filter} after a 409: {} {}",
                a.status, a.body
            ));
            return None;
        }
        a.body["Resources"][0]["id"].as_str().map(str::to_owned)
    }

    /// A create: `Some(id)` once it exists.
    async fn create(
        &self,
        rng: &mut SmallRng,
        resource: &str,
        body: &Value,
        attr: &str,
        value: &str,
    ) -> Option<String> {
        let path = format!("/{resource}");
        let a = self
            .send(rng, reqwest::Method::POST, &path, Some(body))
            .await?;
        match a.status {
            201 => match a.body["id"].as_str() {
                Some(id) => Some(id.to_owned()),
                None => {
                    self.violation(format!(
                        "POST {path} {value}: 201 without an id: {}",
                        a.body
                    ));
                    None
                }
            },
            409 if a.ambiguous => self.find(rng, resource, attr, value).await,
            s => {
                self.violation(format!("POST {path} {value}: unexpected {s}: {}", a.body));
                None
            }
        }
    }

    /// A change that must answer 2xx.
    async fn change(
        &self,
        rng: &mut SmallRng,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Option<(u16, bool)> {
        let a = self.send(rng, method.clone(), path, body).await?;
        if (200..300).contains(&a.status)
            || (method == reqwest::Method::DELETE && a.status == 404 && a.ambiguous)
        {
            return Some((a.status, a.ambiguous));
        }
        self.violation(format!(
            "{what} ({method} {path}): unexpected {} (after {} attempt): {}",
            a.status,
            if a.ambiguous { "a retried" } else { "one" },
            a.body
        ));
        None
    }
}

fn user_body(email: &str, given: &str, family: &str, active: bool, entra: bool) -> Value {
    if entra {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": email.split('@').next().unwrap_or_default(),
            "userName": email,
            "active": active,
            "displayName": format!("{given} {family}"),
            "emails": [{"primary": true, "type": "work", "value": email}],
            "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
            ENTERPRISE: {"department": "Simulation"},
        })
    } else {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": email,
            "name": {"givenName": given, "familyName": family},
            "emails": [{"primary": true, "value": email, "type": "work"}],
            "displayName": format!("{given} {family}"),
            "locale": "en-US",
            "groups": [],
            "active": active,
        })
    }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn slot_email(seed: u64, slot: usize, version: u32) -> String {
    format!("sim{seed}-u{slot}-v{version}@sim.example.com")
}

fn group_name(g: usize, version: u32) -> String {
    if version == 0 {
        format!("Sim Team {g}")
    } else {
        format!("Sim Team {g} r{version}")
    }
}

/// One IdP connection: owns users `u % connections == c`, groups `g % connections == c` and
/// pairs `(g + u) % connections == c`; sends one request at a time.
async fn connection(idp: Arc<Idp>, plan: Arc<Plan>, c: usize, seed: u64) {
    let mut rng =
        SmallRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(c as u64 + 1)));
    let cn = plan.connections;
    let entra_of = |rng: &mut SmallRng| match plan.shape {
        Shape::Okta => false,
        Shape::Entra => true,
        Shape::Mixed => rng.random_bool(0.5),
    };
    let my_users: Vec<usize> = (c..plan.users).step_by(cn).collect();
    let my_groups: Vec<usize> = (c..plan.groups).step_by(cn).collect();

    // Set-up: this connection's groups, then its users.
    for &g in &my_groups {
        let name = group_name(g, 0);
        let entra = entra_of(&mut rng);
        let body = if entra {
            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": format!("g{g}")})
        } else {
            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})
        };
        if let Some(id) = idp
            .create(&mut rng, "Groups", &body, "displayName", &name)
            .await
        {
            if let Ok(mut m) = idp.model.lock() {
                m.groups[g].id = Some(id);
                m.acknowledged += 1;
            }
        }
    }
    for &u in &my_users {
        let entra = entra_of(&mut rng);
        create_user(&idp, &mut rng, u, entra, seed).await;
    }

    for _ in 0..plan.ops_per_connection {
        let entra = entra_of(&mut rng);
        let roll = rng.random_range(0..100);
        if roll < 45 {
            membership(&idp, &plan, &mut rng, c, entra).await;
            continue;
        }
        if roll < 52 && !my_groups.is_empty() {
            let g = my_groups[rng.random_range(0..my_groups.len())];
            rename_group(&idp, &mut rng, g, entra).await;
            continue;
        }
        if my_users.is_empty() {
            continue;
        }
        let u = my_users[rng.random_range(0..my_users.len())];
        let slot = match idp.model.lock() {
            Ok(m) => m.users[u].clone(),
            Err(_) => return,
        };
        let Some(id) = slot.id.clone() else {
            // Deleted (or its create failed): create it again, half the time under its old
            // email (a rehire; the tombstone must not take the new user with it).
            let reuse = rng.random_bool(0.5);
            if !reuse {
                if let Ok(mut m) = idp.model.lock() {
                    let s = &mut m.users[u];
                    if !s.protected {
                        s.version += 1;
                        s.email = slot_email(seed, u, s.version);
                    }
                }
            }
            create_user(&idp, &mut rng, u, entra, seed).await;
            continue;
        };
        let path = format!("/Users/{id}");
        // Without attribute updates: deactivations, reactivations and deletes only.
        let low = if plan.attribute_updates { 0 } else { 45 };
        match rng.random_range(low..100) {
            // Names.
            0..=29 => {
                let given = format!("Given{}", rng.random_range(0..1000));
                let family = format!("Family{}", rng.random_range(0..1000));
                let (method, body) = if entra {
                    (
                        reqwest::Method::PATCH,
                        patch(json!([
                            {"op": "Replace", "path": "displayName", "value": format!("{given} {family}")},
                            {"op": "Replace", "path": "name.givenName", "value": given},
                            {"op": "Replace", "path": "name.familyName", "value": family},
                        ])),
                    )
                } else {
                    (
                        reqwest::Method::PUT,
                        user_body(&slot.email, &given, &family, slot.active, false),
                    )
                };
                if let Some((st, amb)) = idp
                    .change(&mut rng, method, &path, Some(&body), "name update")
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} names {given} {family} -> {st} retried {amb} ({})",
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        m.users[u].given = given;
                        m.users[u].family = family;
                        m.acknowledged += 1;
                    }
                }
            }
            // Email (userName) change.
            30..=44 if !slot.protected => {
                // A fresh email for every attempt, kept even when the change is refused (the
                // partner may hold it anyway): a later re-create never reuses it by accident.
                let email = slot_email(seed, u, slot.version + 1);
                if let Ok(mut m) = idp.model.lock() {
                    m.users[u].version += 1;
                }
                let (method, body) = if entra {
                    (
                        reqwest::Method::PATCH,
                        patch(json!([
                            {"op": "Replace", "path": "userName", "value": email},
                            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": email},
                        ])),
                    )
                } else {
                    (
                        reqwest::Method::PUT,
                        user_body(&email, &slot.given, &slot.family, slot.active, false),
                    )
                };
                if let Some((st, amb)) = idp
                    .change(&mut rng, method, &path, Some(&body), "email change")
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} email {} -> {email} -> {st} retried {amb} ({})",
                            slot.email,
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.email = email.clone();
                        s.emails_used.insert(email);
                        m.acknowledged += 1;
                    }
                }
            }
            // Deactivate / reactivate.
            45..=79 => {
                let to = !slot.active;
                let body = if entra {
                    patch(json!([{"op": "Replace", "path": "active",
                                  "value": if to { "True" } else { "False" }}]))
                } else {
                    patch(json!([{"op": "replace", "value": {"active": to}}]))
                };
                let what = if to { "reactivation" } else { "deactivation" };
                if let Some((st, amb)) = idp
                    .change(&mut rng, reqwest::Method::PATCH, &path, Some(&body), what)
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} {what} of {} -> {st} retried {amb} ({})",
                            slot.email,
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.active = to;
                        if !to && plan.policy == DeprovisionPolicy::Remove && !s.protected {
                            s.vendor = false;
                        }
                        m.acknowledged += 1;
                    }
                }
            }
            // Delete.
            _ => {
                if let Some((st, amb)) = idp
                    .change(&mut rng, reqwest::Method::DELETE, &path, None, "delete")
                    .await
                {
                    idp.note(
                        u,
                        format!("c{c} delete {id} ({}) -> {st} retried {amb}", slot.email),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.id = None;
                        if !s.protected {
                            s.vendor = false;
                        }
                        m.acknowledged += 1;
                    }
                }
            }
        }
    }
}

async fn create_user(idp: &Idp, rng: &mut SmallRng, u: usize, entra: bool, _seed: u64) {
    let slot = match idp.model.lock() {
        Ok(m) => m.users[u].clone(),
        Err(_) => return,
    };
    let body = user_body(&slot.email, &slot.given, &slot.family, true, entra);
    if let Some(id) = idp
        .create(rng, "Users", &body, "userName", &slot.email)
        .await
    {
        idp.note(u, format!("create {} -> {id}", slot.email));
        if let Ok(mut m) = idp.model.lock() {
            let s = &mut m.users[u];
            s.id = Some(id);
            s.active = true;
            s.emails_used.insert(slot.email.clone());
            m.acknowledged += 1;
        }
    }
}

async fn rename_group(idp: &Idp, rng: &mut SmallRng, g: usize, entra: bool) {
    let (id, old, version) = match idp.model.lock() {
        Ok(m) => {
            let gm = &m.groups[g];
            (
                gm.id.clone(),
                gm.name.clone(),
                gm.old_names.len() as u32 + 1,
            )
        }
        Err(_) => return,
    };
    let Some(id) = id else { return };
    let name = group_name(g, version);
    let body = if entra {
        patch(json!([{"op": "Replace", "path": "displayName", "value": name}]))
    } else {
        patch(json!([{"op": "replace", "value": {"id": id, "displayName": name}}]))
    };
    if idp
        .change(
            rng,
            reqwest::Method::PATCH,
            &format!("/Groups/{id}"),
            Some(&body),
            "group rename",
        )
        .await
        .is_some()
    {
        if let Ok(mut m) = idp.model.lock() {
            let gm = &mut m.groups[g];
            gm.old_names.insert(old);
            gm.name = name;
            m.acknowledged += 1;
        }
    }
}

/// A membership PATCH on a random group: adds and removes among this connection's pairs.
async fn membership(idp: &Idp, plan: &Plan, rng: &mut SmallRng, c: usize, entra: bool) {
    let g = rng.random_range(0..plan.groups);
    let cn = plan.connections;
    let (gid, add, remove) = {
        let Ok(m) = idp.model.lock() else { return };
        let Some(gid) = m.groups[g].id.clone() else {
            return;
        };
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for u in (0..plan.users).filter(|u| (g + u) % cn == c) {
            let Some(id) = m.users[u].id.clone() else {
                continue;
            };
            let member = m.groups[g].members.contains(&id);
            if !member && rng.random_bool(0.5) {
                add.push(id);
            } else if member && rng.random_bool(0.35) {
                remove.push(id);
            }
        }
        (gid, add, remove)
    };
    if add.is_empty() && remove.is_empty() {
        return;
    }
    let mut ops = Vec::new();
    if !add.is_empty() {
        let values: Vec<Value> = add.iter().map(|i| json!({"value": i})).collect();
        ops.push(
            json!({"op": if entra { "Add" } else { "add" }, "path": "members", "value": values}),
        );
    }
    if entra {
        if !remove.is_empty() {
            let values: Vec<Value> = remove.iter().map(|i| json!({"value": i})).collect();
            ops.push(json!({"op": "Remove", "path": "members", "value": values}));
        }
    } else {
        for i in &remove {
            ops.push(json!({"op": "remove", "path": format!("members[value eq \"{i}\"]")}));
        }
    }
    if idp
        .change(
            rng,
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(&patch(Value::Array(ops))),
            "membership change",
        )
        .await
        .is_some()
    {
        if let Ok(mut m) = idp.model.lock() {
            let gm = &mut m.groups[g];
            gm.members.extend(add);
            for r in remove {
                gm.members.remove(&r);
            }
            m.acknowledged += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// A fresh store for a run; dropped afterwards.
struct RunStore {
    url: String,
    /// A folder of its own, removed afterwards.
    dir: Option<std::path::PathBuf>,
    pg: Option<(String, String)>,
}

impl RunStore {
    async fn new(choice: &StoreChoice) -> anyhow::Result<RunStore> {
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

    async fn drop_schema(&self) {
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
async fn live_claims(store_url: &str) -> Option<i64> {
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

/// Where a run is, for the report of one that hangs.
type Phase = Arc<Mutex<String>>;

fn set_phase(phase: &Phase, what: String) {
    if let Ok(mut p) = phase.lock() {
        *p = what;
    }
}

/// The longest one seed may run.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs one seed and checks the invariants.
pub async fn run_seed(
    seed: u64,
    store: &StoreChoice,
    workload: Workload,
) -> anyhow::Result<Outcome> {
    let run_store = RunStore::new(store).await?;
    let phase: Phase = Arc::new(Mutex::new("start".into()));
    let outcome = match tokio::time::timeout(
        RUN_LIMIT,
        run_on(seed, &run_store.url, workload, phase.clone()),
    )
    .await
    {
        Ok(o) => o,
        Err(_) => Ok(Outcome {
            seed,
            plan: Plan::new(seed).describe(),
            violations: vec![format!(
                "liveness: the run did not finish within {RUN_LIMIT:?}; it was at: {}",
                phase.lock().map(|p| p.clone()).unwrap_or_default()
            )],
            acknowledged: 0,
            retried: 0,
            cancelled: 0,
            kills: 0,
            claims_at_kills: 0,
            user_writes: 0,
            took: RUN_LIMIT,
            details: Vec::new(),
        }),
    };
    run_store.drop_schema().await;
    outcome
}

async fn run_on(
    seed: u64,
    store_url: &str,
    workload: Workload,
    phase: Phase,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let plan = Arc::new(Plan {
        attribute_updates: workload.attribute_updates,
        ..Plan::new(seed)
    });
    let emulator = Emulator::new(
        plan.sites
            .iter()
            .map(|s| SiteSpec {
                name: s.clone(),
                api_key: Secret::new(format!("key-{s}")),
                owner_email: OWNER.into(),
            })
            .collect(),
    );
    let running = emulator.clone().spawn().await?;
    if plan.vendor_slot {
        for s in &plan.sites {
            emulator.insert_group(
                s,
                PartnerGroup {
                    name: VENDOR_GROUP.into(),
                    access: Access::Sql,
                },
            );
            emulator.insert_user(
                s,
                PartnerUser {
                    email: slot_email(seed, 1, 0),
                    first_name: "Vendor".into(),
                    last_name: "Made".into(),
                    groups: vec![VENDOR_GROUP.into(), ALL_USERS.into()],
                },
            );
        }
    }
    let tenant = tenant_config(&plan, &running.base_url)?;
    let options = plan.bridge_options();

    // The model: users and groups as the IdP starts them.
    let mut model = Model::default();
    for u in 0..plan.users {
        let protected = plan.owner_slot && u == 0;
        let email = if protected {
            OWNER.to_owned()
        } else {
            slot_email(seed, u, 0)
        };
        model.users.push(Slot {
            id: None,
            email: email.clone(),
            given: format!("Given{u}"),
            family: format!("Family{u}"),
            active: true,
            emails_used: BTreeSet::new(),
            vendor: plan.vendor_slot && u == 1,
            protected,
            version: 0,
            history: Vec::new(),
        });
    }
    for g in 0..plan.groups {
        model.groups.push(GroupM {
            name: group_name(g, 0),
            ..GroupM::default()
        });
    }

    let notes: Notes = Arc::default();
    let first = Instance::start_retrying(store_url, &tenant, &options, &notes).await?;
    let second = Instance::start_retrying(store_url, &tenant, &options, &notes).await?;
    let targets = Arc::new(Targets {
        slots: Mutex::new(vec![Some(first.base.clone()), Some(second.base.clone())]),
    });
    let idp = Arc::new(Idp {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?,
        targets: targets.clone(),
        next: AtomicUsize::new(0),
        retried: AtomicUsize::new(0),
        cancelled: AtomicUsize::new(0),
        cancel_share: plan.cancel_share,
        model: Mutex::new(model),
        epoch: Instant::now(),
    });
    for s in &plan.sites {
        emulator.set_faults(s, plan.faults(seed));
    }

    // Kills: while the IdP works, an instance dies (hard or graceful), stays down a while
    // (sometimes past its lease, sometimes not) and comes back on the same store.
    set_phase(&phase, "IdP traffic".into());
    let working = Arc::new(AtomicBool::new(true));
    let chaos = {
        let (targets, working, plan) = (targets.clone(), working.clone(), plan.clone());
        let (store_url, tenant, options) = (store_url.to_owned(), tenant.clone(), options.clone());
        let (notes, phase) = (notes.clone(), phase.clone());
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x0dea_d0ff);
            let mut instances = [Some(first), Some(second)];
            let mut kills = 0;
            let mut claims_at_kills = 0;
            let mut errors = Vec::new();
            while kills < plan.kills && working.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..900))).await;
                if !working.load(Ordering::Relaxed) {
                    break;
                }
                let k = rng.random_range(0..2);
                let mode = if rng.random_bool(0.7) {
                    Kill::Hard
                } else {
                    Kill::Graceful
                };
                targets.set(k, None);
                set_phase(&phase, format!("killing instance {k} ({mode:?})"));
                if let Kill::Hard = mode {
                    claims_at_kills += live_claims(&store_url).await.unwrap_or(0);
                }
                if let Some(i) = instances[k].take() {
                    i.stop(mode).await;
                }
                set_phase(&phase, "IdP traffic".into());
                kills += 1;
                let down = rng.random_range(0..plan.lease_ms + 300);
                tokio::time::sleep(Duration::from_millis(down)).await;
                match Instance::start_retrying(&store_url, &tenant, &options, &notes).await {
                    Ok(i) => {
                        targets.set(k, Some(i.base.clone()));
                        instances[k] = Some(i);
                    }
                    Err(e) => errors.push(format!("restarting a bridge: {e:#}")),
                }
            }
            (instances, kills, claims_at_kills, errors)
        })
    };

    let conns = (0..plan.connections).map(|c| {
        let (idp, plan) = (idp.clone(), plan.clone());
        tokio::spawn(connection(idp, plan, c, seed))
    });
    for r in futures::future::join_all(conns).await {
        if let Err(e) = r {
            idp.violation(format!("an IdP connection panicked: {e}"));
        }
    }
    working.store(false, Ordering::Relaxed);
    set_phase(&phase, "waiting for the kill task".into());
    let (instances, kills, claims_at_kills, errors) = chaos.await.context("the kill task")?;
    for e in errors {
        idp.violation(e);
    }
    // Restart whatever is down, so both serve while the outbox drains.
    let mut instances = instances;
    for (k, slot) in instances.iter_mut().enumerate() {
        if slot.is_none() {
            let i = Instance::start_retrying(store_url, &tenant, &options, &notes).await?;
            targets.set(k, Some(i.base.clone()));
            *slot = Some(i);
        }
    }

    // Quiescence: faults off, the outbox drained, the partner equal to the intent.
    set_phase(&phase, "converging".into());
    for s in &plan.sites {
        emulator.set_faults(s, Faults::default());
    }
    let mut violations = match idp.model.lock() {
        Ok(m) => m.violations.clone(),
        Err(_) => vec!["the model's lock was poisoned".into()],
    };
    let store = Store::connect(store_url).await?;
    let expected = match idp.model.lock() {
        Ok(m) => expected(&m, &plan),
        Err(_) => anyhow::bail!("the model's lock was poisoned"),
    };
    let end = Instant::now() + CONVERGE_LIMIT;
    let mut drained_since: Option<Instant> = None;
    let (diff, depth) = loop {
        let depth = store
            .outbox_stats()
            .await
            .map(|s| s.depth)
            .unwrap_or(u64::MAX);
        let diff = differences(&emulator, &plan, &expected);
        if depth == 0 && diff.is_empty() {
            break (diff, depth);
        }
        if depth == 0 {
            // Drained but different: give in-flight request waits a moment, then judge.
            let since = *drained_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                break (diff, depth);
            }
        } else {
            drained_since = None;
        }
        if Instant::now() > end {
            break (diff, depth);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    violations.extend(diff);
    if depth != 0 {
        let failures = store
            .outbox_failures(None, 20)
            .await
            .map(|f| {
                f.iter()
                    .map(|f| {
                        format!(
                            "{}/{} {:?} attempts {} error {:?}",
                            f.site, f.user_id, f.email, f.attempts, f.last_error
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        violations.push(format!(
            "invariant 4: the outbox holds {depth} row(s) {CONVERGE_LIMIT:?} after the faults \
             stopped; failing: {failures:?}"
        ));
    }
    let log = emulator.call_log();
    let (writes, overlaps) = overlapping_user_writes(&log);
    violations.extend(overlaps);
    let mut details = Vec::new();
    if let Ok(m) = idp.model.lock() {
        for s in &m.users {
            if violations
                .iter()
                .any(|v| s.emails_used.iter().any(|e| v.contains(e.as_str())))
            {
                details.push(format!("history of {:?}:", s.emails_used));
                details.extend(s.history.iter().map(|h| format!("  {h}")));
                for e in &s.emails_used {
                    details.extend(
                        log.iter()
                            .filter(|r| r.email.as_deref() == Some(e.as_str()))
                            .filter(|r| {
                                matches!(
                                    r.call,
                                    CallKind::CreateUser
                                        | CallKind::UpdateUser
                                        | CallKind::DeleteUser
                                )
                            })
                            .map(|r| {
                                format!(
                                    "  partner {} {:?} {e} -> {} at {} ms",
                                    r.site,
                                    r.call,
                                    r.status,
                                    r.finished_us / 1000
                                )
                            }),
                    );
                }
            }
        }
    }

    set_phase(&phase, "stopping".into());
    store.close().await;
    for i in instances.into_iter().flatten() {
        i.stop(Kill::Graceful).await;
    }
    running.shutdown().await;
    if let Ok(n) = notes.lock() {
        violations.extend(n.iter().filter(|n| n.starts_with("liveness:")).cloned());
        details.extend(n.iter().filter(|n| !n.starts_with("liveness:")).cloned());
    }
    let acknowledged = idp.model.lock().map(|m| m.acknowledged).unwrap_or(0);
    Ok(Outcome {
        seed,
        plan: plan.describe(),
        violations,
        acknowledged,
        retried: idp.retried.load(Ordering::Relaxed),
        cancelled: idp.cancelled.load(Ordering::Relaxed),
        kills,
        claims_at_kills,
        user_writes: writes,
        took: started.elapsed(),
        details,
    })
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// A partner user as the intent wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    first: String,
    last: String,
    /// `None`: not checked (an inactive user's groups under `keep` are the engine's choice).
    groups: Option<BTreeSet<String>>,
}

/// The partner users every site must hold (by lower-case email), and the managed group names
/// that must exist, the old names that must not.
struct Expected {
    users: BTreeMap<String, Want>,
    groups: BTreeSet<String>,
    old_groups: BTreeSet<String>,
}

fn expected(m: &Model, plan: &Plan) -> Expected {
    let mut users = BTreeMap::new();
    for s in &m.users {
        let Some(id) = &s.id else { continue };
        let present = s.active || s.protected || plan.policy != DeprovisionPolicy::Remove;
        if !present {
            continue;
        }
        let managed: BTreeSet<String> = if s.active || plan.policy == DeprovisionPolicy::Keep {
            m.groups
                .iter()
                .filter(|g| g.id.is_some() && g.members.contains(id))
                .map(|g| g.name.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut groups = managed;
        groups.insert(ALL_USERS.into());
        if s.vendor {
            groups.insert(VENDOR_GROUP.into());
        }
        if s.protected {
            groups.insert("Administrators".into());
        }
        // A protected account keeps the names it has at the partner (the tenant does not set
        // `allow_protected_changes`): its names are not part of the intent.
        let (first, last) = if s.protected {
            (String::new(), String::new())
        } else {
            (s.given.clone(), s.family.clone())
        };
        users.insert(
            s.email.to_lowercase(),
            Want {
                first,
                last,
                groups: Some(groups),
            },
        );
    }
    // The owner exists whatever happened to its SCIM user; without one (never created, or
    // deleted: deprovisioning strips a protected account) it has its unmanaged groups only.
    users.entry(OWNER.to_owned()).or_insert_with(|| Want {
        first: String::new(),
        last: String::new(),
        groups: Some([ALL_USERS.to_owned(), "Administrators".to_owned()].into()),
    });
    Expected {
        users,
        groups: m
            .groups
            .iter()
            .filter(|g| g.id.is_some())
            .map(|g| g.name.clone())
            .collect(),
        old_groups: m
            .groups
            .iter()
            .flat_map(|g| g.old_names.iter().cloned())
            .collect(),
    }
}

/// Where the partner differs from the intent (invariants 1 and 2).
fn differences(emu: &Emulator, plan: &Plan, want: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    for site in &plan.sites {
        let have: HashMap<String, PartnerUser> = emu
            .users(site)
            .into_iter()
            .map(|u| (u.email.to_lowercase(), u))
            .collect();
        for (email, w) in &want.users {
            let Some(p) = have.get(email) else {
                out.push(format!(
                    "invariant 1: {site}: {email} is missing (want {w:?})"
                ));
                continue;
            };
            if !w.first.is_empty() && (p.first_name != w.first || p.last_name != w.last) {
                out.push(format!(
                    "invariant 1: {site}: {email} is named {} {}, want {} {}",
                    p.first_name, p.last_name, w.first, w.last
                ));
            }
            if let Some(groups) = &w.groups {
                let got: BTreeSet<String> = p.groups.iter().cloned().collect();
                if &got != groups {
                    out.push(format!(
                        "invariant 1: {site}: {email} has groups {got:?}, want {groups:?}"
                    ));
                }
            }
        }
        for email in have.keys() {
            if !want.users.contains_key(email) {
                out.push(format!(
                    "invariant 2: {site}: {email} exists at the partner; the IdP deleted, \
                     deactivated (remove) or renamed it"
                ));
            }
        }
        let names: BTreeSet<String> = emu.groups(site).into_iter().map(|g| g.name).collect();
        for g in want.groups.difference(&names) {
            out.push(format!("invariant 1: {site}: managed group {g} is missing"));
        }
        for g in want.old_groups.intersection(&names) {
            if !want.groups.contains(g) {
                out.push(format!(
                    "invariant 1: {site}: group {g} still exists under its old name"
                ));
            }
        }
    }
    out
}

/// Invariant 3: no two user writes of one (site, email) in flight at once. Returns how many
/// writes were checked and the overlaps.
fn overlapping_user_writes(log: &[CallRecord]) -> (usize, Vec<String>) {
    let mut by_user: HashMap<(String, String), Vec<&CallRecord>> = HashMap::new();
    for r in log.iter().filter(|r| {
        matches!(
            r.call,
            CallKind::CreateUser | CallKind::UpdateUser | CallKind::DeleteUser
        )
    }) {
        let email = r.email.clone().unwrap_or_default().to_lowercase();
        by_user.entry((r.site.clone(), email)).or_default().push(r);
    }
    let (mut n, mut out) = (0, Vec::new());
    for ((site, email), mut calls) in by_user {
        n += calls.len();
        calls.sort_by_key(|r| r.started_us);
        for pair in calls.windows(2) {
            if pair[1].started_us < pair[0].finished_us {
                out.push(format!(
                    "invariant 3: {site}: overlapping writes of {email}: {:?} {} [{}..{}] and \
                     {:?} {} [{}..{}] (us)",
                    pair[0].call,
                    pair[0].status,
                    pair[0].started_us,
                    pair[0].finished_us,
                    pair[1].call,
                    pair[1].status,
                    pair[1].started_us,
                    pair[1].finished_us,
                ));
            }
        }
    }
    (n, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_plan() {
        for seed in 0..50 {
            assert_eq!(Plan::new(seed).describe(), Plan::new(seed).describe());
        }
    }

    #[test]
    fn overlapping_writes_of_one_user_are_found() {
        let rec = |seq, call, started_us, finished_us| CallRecord {
            seq,
            site: "alpha".into(),
            call,
            test_mode: false,
            email: Some("a@x.io".into()),
            group: None,
            status: 200,
            started_us,
            finished_us,
        };
        let log = vec![
            rec(1, CallKind::CreateUser, 0, 10),
            rec(2, CallKind::UpdateUser, 10, 20),
        ];
        assert!(overlapping_user_writes(&log).1.is_empty());
        let log = vec![
            rec(1, CallKind::CreateUser, 0, 10),
            rec(2, CallKind::UpdateUser, 5, 20),
        ];
        assert_eq!(overlapping_user_writes(&log).1.len(), 1);
    }
}
