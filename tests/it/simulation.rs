//! The seeded simulation (`src/simulate.rs`, `scim-bridge simulate`; issue 14, "How it is
//! proven") in CI: a bounded set of seeds, each a random mix of Okta- and Entra-shaped IdP
//! traffic against two bridges sharing one store, with partner faults, cancelled requests,
//! killed and restarted instances and (for some seeds) short deadlines and leases. After each
//! seed the partner must equal the IdP's intent, no two user writes of one (site, email) may
//! have overlapped, and the outbox must have drained. A failure names the seed; replay it with
//! `scim-bridge simulate --seed N --verbose` (add `--no-attribute-updates` for the CI
//! workload), or here with `SCIM_BRIDGE_SIMULATE_SEEDS=N`.
//!
//! # The known race these seeds leave out
//!
//! With the full workload many seeds fail (the ignored test below lists some). The cause is
//! in the bridge, not the harness: name updates and email (`userName`) changes (`PUT`, and
//! `PATCH` of `name.*`, `userName`, `emails`) are written to the partner by the request itself
//! (`bridge/users.rs`, "partner first"), outside the engine's outbox claims, while a
//! convergence of the same (site, user) may be running (a membership PATCH, a deactivation,
//! another replica's worker). DESIGN.md section 4 says every partner effect is the work of one
//! convergence, one writer per (site, user). What the simulation saw:
//! - invariant 3: the request's `UpdateUser` and a convergence's `UpdateUser` of one email in
//!   flight at once (seeds 6, 7, 8, 9, 10, 13);
//! - invariant 1, names reverted: `converge_user` read the user from the store before the
//!   name change committed, read the partner after the request wrote the new names, and wrote
//!   the old names back; the request marks nothing for a name change, so nothing repairs it
//!   (seeds 6, 8, 13: e.g. `sim6-u1-v0` named `Given1 Family1`, want `Given285 Family232`);
//! - invariants 1 and 2 after an email change: the request renamed the partner account
//!   (`UpdateUser` under the old email, 200), then a convergence that had read the old email
//!   found no partner user under it and created one (`CreateUser` of the old email, 200, 70
//!   ms after the IdP's 200); its re-read of the store after the create checks only whether
//!   the user is still present, not whether its email changed. The account under the old
//!   email stays forever (nothing owns it) and the renamed one misses the group changes that
//!   convergence carried (seeds 2, 9, 10, 17: e.g. `sim17-u5-v0` and `sim17-u6-v0` at both
//!   sites).
//!
//! - a 409 to the IdP's retry of an email change, and an account left under the new email
//!   (PostgreSQL seed 102): the first attempt renamed the partner account (`UpdateUser` 200)
//!   but never committed (the attempt was cancelled by the IdP or its instance killed: the
//!   request's own partner write and its commit are not one step, though DESIGN.md 4.3 says a
//!   disconnect never stops a flow half-way); a convergence then re-created the old email
//!   from the store, and every retry of the rename now gets the partner's 409 (`user ... already
//!   exists`), so the IdP can never complete the change.
//!
//! A fix belongs in the bridge (make name and email changes a mark for the engine, or take the
//! (site, user) claim around the request's partner write; and have a convergence re-read the
//! user's email and names after its partner read), not here; until then the CI seeds run
//! without attribute updates, every other operation and fault included.

use scim_bridge::simulate::{run_seed, Outcome, StoreChoice, Workload};

/// Seeds CI runs on SQLite (about 3 s each on two cores). Without attribute updates, seeds
/// 1 to 90 passed on SQLite and 1 to 18 on PostgreSQL when this was written.
const SQLITE_SEEDS: &[u64] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
];
/// Seeds CI runs on PostgreSQL (at the same time as the SQLite ones).
const POSTGRES_SEEDS: &[u64] = &[3, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18];
/// Seeds whose full workload (attribute updates on) found the races described above on SQLite
/// (timing decides whether a given run hits one; each failed at least once). On PostgreSQL,
/// seeds 100, 102 and 106 did.
const RACING_SEEDS: &[u64] = &[2, 6, 7, 8, 9, 10, 13, 17];
const SEEDS_ENV: &str = "SCIM_BRIDGE_SIMULATE_SEEDS";

/// The seeds of `SCIM_BRIDGE_SIMULATE_SEEDS` (comma-separated), or `default`.
fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var(SEEDS_ENV) {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{SEEDS_ENV}: `{n}` is not a seed"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

async fn simulate(seeds: &[u64], store: StoreChoice, workload: Workload) {
    let mut failed: Vec<Outcome> = Vec::new();
    for seed in seeds {
        let outcome = run_seed(*seed, &store, workload)
            .await
            .unwrap_or_else(|e| panic!("seed {seed} could not run: {e:#}"));
        eprintln!("{}", outcome.line());
        if !outcome.passed() {
            failed.push(outcome);
        }
    }
    let report: Vec<String> = failed
        .iter()
        .map(|o| {
            format!(
                "{}\n  plan: {}\n  {}\n  {}",
                o.line(),
                o.plan,
                o.violations.join("\n  "),
                o.details.join("\n  ")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} seed(s) broke an invariant (replay: scim-bridge simulate --seed N --verbose{}, or \
         {SEEDS_ENV}=N):\n{}",
        failed.len(),
        if workload.attribute_updates {
            ""
        } else {
            " --no-attribute-updates"
        },
        report.join("\n")
    );
}

const CI_WORKLOAD: Workload = Workload {
    attribute_updates: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_idp_traffic_keeps_every_invariant_sqlite() {
    simulate(&seeds(SQLITE_SEEDS), StoreChoice::Sqlite, CI_WORKLOAD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_idp_traffic_keeps_every_invariant_postgres() {
    let Some(url) = crate::support::postgres_url().await else {
        return;
    };
    simulate(
        &seeds(POSTGRES_SEEDS),
        StoreChoice::Postgres(url),
        CI_WORKLOAD,
    )
    .await;
}

/// The full workload on the seeds that found the race of the module comment; fails today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "name and email changes race the engine's convergences (see the module comment)"]
async fn name_and_email_changes_keep_every_invariant() {
    simulate(
        &seeds(RACING_SEEDS),
        StoreChoice::Sqlite,
        Workload::default(),
    )
    .await;
}
