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

mod checks;
mod connection;
mod idp;
mod instance;
mod plan;
mod report;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::partner::emulator::faults::Faults;
use crate::partner::emulator::{Emulator, SiteSpec};
use crate::partner::{Access, CallKind, PartnerGroup, PartnerUser};
use crate::secret::Secret;
use crate::store::Store;

use checks::{differences, expected, overlapping_user_writes};
use connection::connection;
use idp::{group_name, slot_email, GroupM, Idp, Model, Slot};
use instance::{live_claims, tenant_config, Instance, Kill, Notes, RunStore, Targets};
use plan::Plan;

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
