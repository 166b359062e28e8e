//! S1 initial sync in Entra's order: for every user a `userName eq` probe then `POST /Users`;
//! then every group `POST /Groups` (empty); then `PATCH` adds in batches of 1 to 100.

use std::collections::{BTreeSet, HashMap};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::super::report::ScenarioReport;
use super::super::{BenchArgs, Sizes};
use super::env::Env;
use super::steps::{
    add_members, coalescing_targets, create_groups, create_users, email, finish, measure_start,
    patch_groups, require_done,
};

/// Runs S1 and reports it.
pub(super) async fn s1(args: &BenchArgs, sizes: Sizes) -> anyhow::Result<ScenarioReport> {
    let mut env = Env::start(args, args.connections).await?;
    // A rate-limited partner makes the bridge answer some writes 503 with Retry-After; the
    // IdP sends them again after that wait, as Okta and Entra do.
    let retried = args.partner_rate.is_some();
    if retried {
        env.client = env.client.clone().honouring_retry_after();
    }
    let mut r = ScenarioReport {
        name: "S1".into(),
        title: format!(
            "initial sync, Entra order: {} users, {} groups, ~{} memberships, {} connections",
            sizes.users, sizes.groups, sizes.memberships, args.connections
        ),
        ..ScenarioReport::default()
    };
    let (cpu0, _) = measure_start();
    let (users_stats, user_ids) = create_users(&env, "s1u", sizes.users, args.connections).await;
    require_done(&mut r, "users", &users_stats, retried);
    r.phases.push(("probe + POST /Users".into(), users_stats));
    let (group_stats, group_ids) =
        create_groups(&env, "s1-group-", sizes.groups, args.connections).await;
    require_done(&mut r, "groups", &group_stats, retried);
    r.phases.push(("POST /Groups".into(), group_stats));
    let plan = Memberships::plan(sizes, &group_ids, &user_ids);
    let patches = plan.jobs.len();
    let patch_stats = patch_groups(&env, plan.jobs, args.connections).await;
    require_done(&mut r, "patches", &patch_stats, retried);
    r.phases
        .push((format!("PATCH add ({patches} batches)"), patch_stats));
    r.converge_s = env.converge().await?;
    finish(&mut r, cpu0);
    let (reads, writes) = env.partner_calls();
    r.partner_reads = reads;
    r.partner_writes = writes;
    let with_groups = plan.expected.values().filter(|g| !g.is_empty()).count();
    r.lower_bound = (sizes.users + sizes.groups + with_groups) as u64;
    r.notes.push(format!(
        "{} memberships; {with_groups} users in at least one group; largest group {}",
        plan.memberships,
        plan.group_sizes.first().copied().unwrap_or(0)
    ));
    if let Some(rate) = args.partner_rate {
        pacing_target(&mut r, rate, writes);
    }
    r.failures
        .extend(env.check_partner("s1-group-", &plan.expected));
    coalescing_targets(&mut r, args.site_api);
    r.targets.push((
        format!("peak RSS {:.1} MB (under 150 MB)", r.peak_rss_mb),
        r.peak_rss_mb < 150.0,
    ));
    Ok(r)
}

/// S1's memberships: the PATCH jobs that add them, each user's expected groups, how many
/// there are, and the group sizes they were drawn from.
struct Memberships {
    jobs: Vec<(String, Value)>,
    expected: HashMap<String, BTreeSet<String>>,
    memberships: usize,
    group_sizes: Vec<usize>,
}

impl Memberships {
    /// Skewed sizes, random distinct members, PATCH batches of 1 to 100, shuffled; seeded, so
    /// every run sends the same jobs. Users or groups whose create failed are left out.
    fn plan(sizes: Sizes, group_ids: &[String], user_ids: &[String]) -> Memberships {
        let mut rng = SmallRng::seed_from_u64(1);
        let group_sizes = skewed_sizes(
            sizes.groups,
            sizes.memberships,
            sizes.big_group,
            sizes.users,
        );
        let mut expected: HashMap<String, BTreeSet<String>> = (0..sizes.users)
            .map(|i| (email("s1u", i), BTreeSet::new()))
            .collect();
        let mut jobs = Vec::new();
        let mut memberships = 0usize;
        for (g, size) in group_sizes.iter().enumerate() {
            let Some(gid) = group_ids.get(g).filter(|id| !id.is_empty()) else {
                continue;
            };
            let name = format!("s1-group-{g:03}");
            let members = rand::seq::index::sample(&mut rng, sizes.users, *size).into_vec();
            let mut batch = Vec::new();
            let mut limit = rng.random_range(1..=100);
            for m in members {
                let Some(uid) = user_ids.get(m).filter(|id| !id.is_empty()) else {
                    continue;
                };
                expected
                    .entry(email("s1u", m))
                    .or_default()
                    .insert(name.clone());
                memberships += 1;
                batch.push(uid.clone());
                if batch.len() >= limit {
                    jobs.push((gid.clone(), add_members(&batch)));
                    batch.clear();
                    limit = rng.random_range(1..=100);
                }
            }
            if !batch.is_empty() {
                jobs.push((gid.clone(), add_members(&batch)));
            }
        }
        jobs.shuffle(&mut rng);
        Memberships {
            jobs,
            expected,
            memberships,
            group_sizes,
        }
    }
}

/// With a partner limited to `rate` calls/s: the whole run at most 1.1 times the time its
/// `writes` take at that rate.
fn pacing_target(r: &mut ScenarioReport, rate: f64, writes: u64) {
    let ideal = writes as f64 / rate;
    let total: f64 = r.phases.iter().map(|(_, s)| s.seconds).sum::<f64>() + r.converge_s;
    let ratio = total / ideal.max(1e-9);
    r.targets.push((
        format!(
            "partner limited to {rate} calls/s: total {total:.1} s = {ratio:.2}x writes/R {ideal:.1} s (at most 1.1x)"
        ),
        ratio <= 1.1,
    ));
}

/// Group sizes: the first `big`, the rest of `total` spread with weights 1/(i+1).
fn skewed_sizes(groups: usize, total: usize, big: usize, users: usize) -> Vec<usize> {
    let mut sizes = vec![big.min(users)];
    let rest = total.saturating_sub(big);
    let others = groups.saturating_sub(1);
    let weights: Vec<f64> = (1..=others).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let sum: f64 = weights.iter().sum();
    for w in weights {
        let n = ((rest as f64) * w / sum).round() as usize;
        sizes.push(n.clamp(1, users.min(big.max(1))));
    }
    sizes
}
