//! S4 big group: one PATCH adding thousands of members, then one removing a single member.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;

use super::super::report::ScenarioReport;
use super::super::{BenchArgs, Sizes};
use super::env::Env;
use super::steps::{
    add_members, create_groups, create_users, email, finish, measure_start, patch_groups,
    remove_members, require_ok,
};

/// Runs S4 and reports it.
pub(super) async fn s4(args: &BenchArgs, sizes: Sizes) -> anyhow::Result<ScenarioReport> {
    let env = Env::start(args, args.connections).await?;
    let n = sizes.big_group;
    let mut r = ScenarioReport {
        name: "S4".into(),
        title: format!("big group: add {n} members in one PATCH, then remove one"),
        ..ScenarioReport::default()
    };
    let (setup, user_ids) = create_users(&env, "s4u", n, args.connections).await;
    require_ok(&mut r, "setup users", &setup);
    let (setup, group_ids) = create_groups(&env, "s4-group-", 1, 1).await;
    require_ok(&mut r, "setup group", &setup);
    env.converge().await?;
    let gid = group_ids.first().cloned().context("no group")?;
    let (cpu0, _) = measure_start();
    let (reads0, writes0) = env.partner_calls();
    let stats = patch_groups(&env, vec![(gid.clone(), add_members(&user_ids))], 1).await;
    require_ok(&mut r, "add", &stats);
    r.phases.push((format!("PATCH add {n} members"), stats));
    r.converge_s = env.converge().await?;
    let (reads1, writes1) = env.partner_calls();
    let add_writes = writes1 - writes0;
    let add_reads = reads1 - reads0;
    r.notes.push(format!(
        "adding {n}: {add_writes} partner writes, {add_reads} partner reads"
    ));
    r.targets.push((
        format!("adding {n} members: {add_writes} writes (at most {n})"),
        add_writes <= n as u64,
    ));
    // Remove one member: the request's own time, and one partner write.
    let victim = user_ids.last().cloned().context("no user")?;
    let stats = patch_groups(&env, vec![(gid.clone(), remove_members(&[victim]))], 1).await;
    require_ok(&mut r, "remove", &stats);
    r.phases.push((format!("PATCH remove 1 of {n}"), stats));
    env.converge().await?;
    finish(&mut r, cpu0);
    let (reads2, writes2) = env.partner_calls();
    let remove_writes = writes2 - writes1;
    r.notes.push(format!(
        "removing 1: {remove_writes} partner writes, {} partner reads",
        reads2 - reads1
    ));
    r.partner_reads = reads2 - reads0;
    r.partner_writes = writes2 - writes0;
    r.lower_bound = n as u64 + 1;
    let remove_ms = r.phases.last().map(|(_, s)| s.max_ms).unwrap_or(0.0);
    r.targets.push((
        format!("removing 1 of {n}: {remove_writes} partner writes (exactly 1)"),
        remove_writes == 1,
    ));
    r.targets.push((
        format!(
            "removing 1 of {n}: {remove_ms:.2} ms including one partner write (bridge time under 5 ms)"
        ),
        remove_ms < 5.0 + args.partner_latency_ms as f64,
    ));
    let mut expected: HashMap<String, BTreeSet<String>> = (0..n)
        .map(|i| (email("s4u", i), BTreeSet::from(["s4-group-000".to_owned()])))
        .collect();
    if let Some(last) = n.checked_sub(1) {
        expected.insert(email("s4u", last), BTreeSet::new());
    }
    r.failures.extend(env.check_partner("s4-group-", &expected));
    Ok(r)
}
