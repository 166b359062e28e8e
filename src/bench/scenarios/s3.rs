//! S3 churn: users moved between groups by concurrent, overlapping group PATCHes.

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
    patch_groups, remove_members, require_ok,
};

/// Each user's email and the groups it must end up in.
type Expected = HashMap<String, BTreeSet<String>>;

/// Runs S3 and reports it.
pub(super) async fn s3(args: &BenchArgs, sizes: Sizes) -> anyhow::Result<ScenarioReport> {
    let env = Env::start(args, args.connections).await?;
    let n = sizes.churn_users;
    let groups = (n / 50).clamp(4, 40);
    let mut r = ScenarioReport {
        name: "S3".into(),
        title: format!(
            "churn: {n} users each moved to the next of {groups} groups by overlapping PATCHes"
        ),
        ..ScenarioReport::default()
    };
    let (user_ids, group_ids) = populate(&env, args, n, groups, &mut r).await?;
    let (cpu0, _) = measure_start();
    let (reads0, writes0) = env.partner_calls();
    let (jobs, expected) = churn(&user_ids, &group_ids, groups);
    let count = jobs.len();
    let stats = patch_groups(&env, jobs, args.connections).await;
    require_ok(&mut r, "churn", &stats);
    r.phases
        .push((format!("overlapping PATCHes ({count})"), stats));
    r.converge_s = env.converge().await?;
    finish(&mut r, cpu0);
    let (reads, writes) = env.partner_calls();
    r.partner_reads = reads - reads0;
    r.partner_writes = writes - writes0;
    r.lower_bound = n as u64;
    r.failures.extend(env.check_partner("s3-group-", &expected));
    coalescing_targets(&mut r, args.site_api);
    Ok(r)
}

/// Set-up, not measured: `n` users and `groups` groups, user `i` in group `i % groups`;
/// waits for the partner to have them. Returns the user ids and the group ids.
async fn populate(
    env: &Env,
    args: &BenchArgs,
    n: usize,
    groups: usize,
    r: &mut ScenarioReport,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (setup, user_ids) = create_users(env, "s3u", n, args.connections).await;
    require_ok(r, "setup users", &setup);
    let (setup, group_ids) = create_groups(env, "s3-group-", groups, args.connections).await;
    require_ok(r, "setup groups", &setup);
    let mut initial: Vec<Vec<String>> = vec![Vec::new(); groups];
    for (i, id) in user_ids.iter().enumerate() {
        initial[i % groups].push(id.clone());
    }
    let jobs: Vec<_> = initial
        .iter()
        .enumerate()
        .flat_map(|(g, ids)| {
            ids.chunks(100)
                .map(|c| (group_ids[g].clone(), add_members(c)))
                .collect::<Vec<_>>()
        })
        .collect();
    let setup = patch_groups(env, jobs, args.connections).await;
    require_ok(r, "setup memberships", &setup);
    env.converge().await?;
    Ok((user_ids, group_ids))
}

/// Each user leaves group g for g+1: removes and adds in separate batches of 1 to 50, all
/// shuffled, so PATCHes on different groups overlap for the same users. Returns the PATCH
/// jobs and each user's expected groups.
fn churn(
    user_ids: &[String],
    group_ids: &[String],
    groups: usize,
) -> (Vec<(String, Value)>, Expected) {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut removes: Vec<Vec<String>> = vec![Vec::new(); groups];
    let mut adds: Vec<Vec<String>> = vec![Vec::new(); groups];
    let mut expected = HashMap::new();
    for (i, id) in user_ids.iter().enumerate() {
        let from = i % groups;
        let to = (from + 1) % groups;
        removes[from].push(id.clone());
        adds[to].push(id.clone());
        expected.insert(
            email("s3u", i),
            BTreeSet::from([format!("s3-group-{to:03}")]),
        );
    }
    let mut jobs = Vec::new();
    for g in 0..groups {
        for (list, remove) in [(&removes[g], true), (&adds[g], false)] {
            let mut rest = list.as_slice();
            while !rest.is_empty() {
                let k = rng.random_range(1..=50).min(rest.len());
                let (batch, tail) = rest.split_at(k);
                let body = if remove {
                    remove_members(batch)
                } else {
                    add_members(batch)
                };
                jobs.push((group_ids[g].clone(), body));
                rest = tail;
            }
        }
    }
    jobs.shuffle(&mut rng);
    (jobs, expected)
}
