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

mod chaos;
mod checks;
mod connection;
mod idp;
mod instance;
mod plan;
mod quiesce;
mod report;
mod setup;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::partner::emulator::faults::Faults;
use crate::partner::emulator::{Emulator, RunningEmulator};
use crate::store::Store;

use chaos::Chaos;
use checks::{expected, overlapping_user_writes};
use connection::connection;
use idp::Idp;
use instance::{tenant_config, Instance, Kill, Notes, RunStore, Targets};
use plan::Plan;
use quiesce::{converge, histories, outbox_violation};
use setup::{initial_model, new_idp, start_partner, Launcher};

pub use report::Outcome;

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
    /// The sites' API: `groups` (v1 sites), `roles` (RBAC sites) or `mixed` (the first site
    /// v1, the others RBAC; a one-site plan then runs on a v1 site).
    #[arg(long, value_name = "API", default_value = "groups")]
    pub site_api: SiteMix,
}

/// Which API the simulated sites speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SiteMix {
    #[default]
    Groups,
    Roles,
    Mixed,
}

impl std::str::FromStr for SiteMix {
    type Err = String;
    fn from_str(s: &str) -> Result<SiteMix, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "groups" => Ok(SiteMix::Groups),
            "roles" => Ok(SiteMix::Roles),
            "mixed" => Ok(SiteMix::Mixed),
            other => Err(format!("`{other}` is not groups, roles or mixed")),
        }
    }
}

impl SiteMix {
    /// The RBAC sites among `sites`.
    fn rbac_sites(self, sites: &[String]) -> std::collections::BTreeSet<String> {
        sites
            .iter()
            .enumerate()
            .filter(|(i, _)| match self {
                SiteMix::Groups => false,
                SiteMix::Roles => true,
                SiteMix::Mixed => *i > 0,
            })
            .map(|(_, s)| s.clone())
            .collect()
    }
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
        match run_seed_on(*seed, &store, workload, args.site_api).await {
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

// ---------------------------------------------------------------------------------------------
// The run.

/// Where a run is, for the report of one that hangs.
type Phase = Arc<Mutex<String>>;

fn set_phase(phase: &Phase, what: String) {
    if let Ok(mut p) = phase.lock() {
        *p = what;
    }
}

/// The longest one seed may run.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Runs one seed on v1 sites and checks the invariants.
pub async fn run_seed(
    seed: u64,
    store: &StoreChoice,
    workload: Workload,
) -> anyhow::Result<Outcome> {
    run_seed_on(seed, store, workload, SiteMix::Groups).await
}

/// Runs one seed on sites of the API `sites` says and checks the invariants.
pub async fn run_seed_on(
    seed: u64,
    store: &StoreChoice,
    workload: Workload,
    sites: SiteMix,
) -> anyhow::Result<Outcome> {
    let run_store = RunStore::new(store).await?;
    let phase: Phase = Arc::new(Mutex::new("start".into()));
    let outcome = match tokio::time::timeout(
        RUN_LIMIT,
        run_on(seed, &run_store.url, workload, sites, phase.clone()),
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

/// One run on a store: the partner and two bridges start, the IdP's connections work while
/// instances are killed, then the bridges converge and the invariants are checked.
async fn run_on(
    seed: u64,
    store_url: &str,
    workload: Workload,
    sites: SiteMix,
    phase: Phase,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let base = Plan::new(seed);
    let plan = Arc::new(Plan {
        attribute_updates: workload.attribute_updates,
        rbac_sites: sites.rbac_sites(&base.sites),
        ..base
    });
    let (emulator, running) = start_partner(&plan, seed).await?;
    let launcher = Launcher {
        store_url: store_url.to_owned(),
        tenant: tenant_config(&plan, &running.base_url)?,
        options: plan.bridge_options(),
        notes: Notes::default(),
    };
    let model = initial_model(&plan, seed);
    let first = launcher.start().await?;
    let second = launcher.start().await?;
    let targets = Arc::new(Targets {
        slots: Mutex::new(vec![Some(first.base.clone()), Some(second.base.clone())]),
    });
    let idp = Arc::new(new_idp(targets.clone(), &plan, model)?);
    for s in &plan.sites {
        emulator.set_faults(s, plan.faults(seed));
    }

    // Kills: while the IdP works, an instance dies (hard or graceful), stays down a while
    // (sometimes past its lease, sometimes not) and comes back on the same store.
    set_phase(&phase, "IdP traffic".into());
    let working = Arc::new(AtomicBool::new(true));
    let chaos = Chaos {
        seed,
        plan: plan.clone(),
        targets: targets.clone(),
        working: working.clone(),
        launcher: launcher.clone(),
        phase: phase.clone(),
    };
    let chaos = tokio::spawn(chaos.run(first, second));
    drive(&idp, &plan, seed).await;
    working.store(false, Ordering::Relaxed);
    set_phase(&phase, "waiting for the kill task".into());
    let kills = chaos.await.context("the kill task")?;
    for e in kills.errors {
        idp.violation(e);
    }
    let instances = launcher.restart_down(kills.instances, &targets).await?;

    // Quiescence: faults off, the outbox drained, the partner equal to the intent.
    set_phase(&phase, "converging".into());
    let (store, mut checked) = check(&idp, &emulator, &plan, store_url).await?;

    set_phase(&phase, "stopping".into());
    stop(store, instances, running, &launcher.notes, &mut checked).await;
    let Checked {
        violations,
        details,
        user_writes,
    } = checked;
    let acknowledged = idp.model.lock().map(|m| m.acknowledged).unwrap_or(0);
    Ok(Outcome {
        seed,
        plan: plan.describe(),
        violations,
        acknowledged,
        retried: idp.retried.load(Ordering::Relaxed),
        cancelled: idp.cancelled.load(Ordering::Relaxed),
        kills: kills.kills,
        claims_at_kills: kills.claims_at_kills,
        user_writes,
        took: started.elapsed(),
        details,
    })
}

/// Runs the plan's IdP connections to their end; a connection that panicked is a violation.
async fn drive(idp: &Arc<Idp>, plan: &Arc<Plan>, seed: u64) {
    let conns = (0..plan.connections).map(|c| {
        let (idp, plan) = (idp.clone(), plan.clone());
        tokio::spawn(connection(idp, plan, c, seed))
    });
    for r in futures::future::join_all(conns).await {
        if let Err(e) = r {
            idp.violation(format!("an IdP connection panicked: {e}"));
        }
    }
}

/// What the checks found: the violations, the details a failure's report shows, and the
/// partner's user writes.
struct Checked {
    violations: Vec<String>,
    details: Vec<String>,
    user_writes: usize,
}

/// Switches the faults off, waits for the bridges to converge and checks invariants 1 to 4;
/// returns the store it opened (the caller closes it) and what it found.
async fn check(
    idp: &Idp,
    emulator: &Emulator,
    plan: &Plan,
    store_url: &str,
) -> anyhow::Result<(Store, Checked)> {
    for s in &plan.sites {
        emulator.set_faults(s, Faults::default());
    }
    let mut violations = match idp.model.lock() {
        Ok(m) => m.violations.clone(),
        Err(_) => vec!["the model's lock was poisoned".into()],
    };
    let store = Store::connect(store_url).await?;
    let expected = match idp.model.lock() {
        Ok(m) => expected(&m, plan),
        Err(_) => anyhow::bail!("the model's lock was poisoned"),
    };
    let (diff, depth) = converge(&store, emulator, plan, &expected).await;
    violations.extend(diff);
    if depth != 0 {
        violations.push(outbox_violation(&store, depth).await);
    }
    let log = emulator.call_log();
    let (user_writes, overlaps) = overlapping_user_writes(&log);
    violations.extend(overlaps);
    let details = match idp.model.lock() {
        Ok(m) => histories(&m, &violations, &log),
        Err(_) => Vec::new(),
    };
    Ok((
        store,
        Checked {
            violations,
            details,
            user_writes,
        },
    ))
}

/// Closes the store, stops the instances gracefully and then the partner; the instances'
/// liveness notes become violations, their other notes details.
async fn stop(
    store: Store,
    instances: [Option<Instance>; 2],
    running: RunningEmulator,
    notes: &Notes,
    checked: &mut Checked,
) {
    store.close().await;
    for i in instances.into_iter().flatten() {
        i.stop(Kill::Graceful).await;
    }
    running.shutdown().await;
    if let Ok(n) = notes.lock() {
        checked
            .violations
            .extend(n.iter().filter(|n| n.starts_with("liveness:")).cloned());
        checked
            .details
            .extend(n.iter().filter(|n| !n.starts_with("liveness:")).cloned());
    }
}
