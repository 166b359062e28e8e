//! The simulation harness (`tests/it/simulation.rs`) against RBAC sites, and against a tenant
//! whose first site is a v1 site and whose others are RBAC sites: the same IdP traffic, kills,
//! cancellations and partner faults, the same invariants (nothing acknowledged lost, no leaver
//! left with access, no stranger let in), read from the sites' roles.

use scim_bridge::simulate::{run_seed_on, SiteMix, StoreChoice, Workload};

/// Seeds run here: some with one site, some with two (where `mixed` fans out to both kinds).
const SEEDS: &[u64] = &[1, 2, 3, 5, 8, 14];

async fn simulate(sites: SiteMix, store: StoreChoice) {
    let mut failed = Vec::new();
    for seed in SEEDS {
        let outcome = run_seed_on(
            *seed,
            &store,
            Workload {
                attribute_updates: false,
            },
            sites,
        )
        .await
        .unwrap_or_else(|e| panic!("seed {seed} could not run: {e:#}"));
        eprintln!("{}", outcome.line());
        if !outcome.passed() {
            failed.push(format!(
                "{}\n  plan: {}\n  {}\n  {}",
                outcome.line(),
                outcome.plan,
                outcome.violations.join("\n  "),
                outcome.details.join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} seed(s) broke an invariant on {sites:?} sites (replay: scim-bridge simulate --seed N \
         --site-api {} --no-attribute-updates --verbose):\n{}",
        failed.len(),
        format!("{sites:?}").to_lowercase(),
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_idp_traffic_keeps_every_invariant_on_rbac_sites() {
    simulate(SiteMix::Roles, StoreChoice::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_idp_traffic_keeps_every_invariant_on_a_v1_and_an_rbac_site() {
    simulate(SiteMix::Mixed, StoreChoice::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_idp_traffic_keeps_every_invariant_on_rbac_sites_postgres() {
    let Some(url) = crate::support::postgres_url().await else {
        return;
    };
    simulate(SiteMix::Roles, StoreChoice::Postgres(url)).await;
}
