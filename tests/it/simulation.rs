//! The seeded simulation (`src/simulate.rs`, `scim-bridge simulate`; issue 14, "How it is
//! proven") in CI: a bounded set of seeds, each a random mix of Okta- and Entra-shaped IdP
//! traffic against two bridges sharing one store, with partner faults, cancelled requests,
//! killed and restarted instances and (for some seeds) short deadlines and leases. After each
//! seed the partner must equal the IdP's intent, no two user writes of one (site, email) may
//! have overlapped, and the outbox must have drained. A failure names the seed; replay it with
//! `scim-bridge simulate --seed N --verbose` (add `--no-attribute-updates` for the CI
//! workload), or here with `SCIM_BRIDGE_SIMULATE_SEEDS=N`.
//!
//! # Name and email changes
//!
//! With the full workload the simulation first found name updates and email (`userName`)
//! changes racing the engine: overlapping `UpdateUser` calls of one email, names written back
//! by a stale convergence, accounts left under an old or a new email after a change that was
//! cancelled or refused (SQLite seeds 2, 6, 7, 8, 9, 10, 13, 17; PostgreSQL 100, 102, 106).
//! Names are now written by the convergence, and email changes under the user's outbox claims
//! with their old and new emails as tombstones; the full workload then passed SQLite seeds 1 to
//! 19. CI still runs the workload without attribute updates; the ignored test below runs the
//! full one on the seeds that found the race.

use scim_bridge::simulate::{run_seed_on, Outcome, SiteMix, StoreChoice, Workload};

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
    // Under `SCIM_BRIDGE_TEST_SITE_API=roles` every simulated site is an RBAC site.
    let sites = match crate::support::default_api() {
        scim_bridge::partner::rbac::SiteApi::Roles => SiteMix::Roles,
        scim_bridge::partner::rbac::SiteApi::Groups => SiteMix::Groups,
    };
    let mut failed: Vec<Outcome> = Vec::new();
    for seed in seeds {
        let outcome = run_seed_on(*seed, &store, workload, sites)
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

/// The full workload on the seeds that found the race of the module comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full workload on the seeds that found the name/email race; run by hand"]
async fn name_and_email_changes_keep_every_invariant() {
    simulate(
        &seeds(RACING_SEEDS),
        StoreChoice::Sqlite,
        Workload::default(),
    )
    .await;
}
