//! S5 paced: Entra's 25 requests/s of mixed traffic while the partner takes 5 writes/s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::load::{Recorder, Req, Stats};
use super::super::report::ScenarioReport;
use super::super::{BenchArgs, Sizes};
use super::env::Env;
use super::steps::{
    add_members, create_groups, email, finish, lookup, measure_start, require_ok, user_body,
};

/// Runs S5 and reports it.
pub(super) async fn s5(args: &BenchArgs, sizes: Sizes) -> anyhow::Result<ScenarioReport> {
    let mut paced = args.clone();
    paced.partner_rate = Some(5.0);
    let env = Env::start(&paced, 64).await?;
    let seconds = if args.quick { 5.0 } else { 30.0 };
    let mut r = ScenarioReport {
        name: "S5".into(),
        title: format!(
            "paced: 25 requests/s for {seconds:.0} s (60% lookups, 20% user creates, 20% group adds) with the partner at 5 calls/s"
        ),
        ..ScenarioReport::default()
    };
    let (setup, group_ids) = create_groups(&env, "s5-group-", 4, 4).await;
    require_ok(&mut r, "setup groups", &setup);
    env.converge().await?;
    let (cpu0, _) = measure_start();
    let (reads0, writes0) = env.partner_calls();
    let total = (25.0 * seconds) as usize;
    let sent = send_paced(&env, &group_ids, total).await;
    for (name, s) in [("reads", &sent.reads), ("writes", &sent.writes)] {
        paced_checks(&mut r, name, s);
    }
    r.phases.push(("paced reads".into(), sent.reads));
    r.phases.push(("paced writes".into(), sent.writes));
    r.converge_s = env.converge().await?;
    finish(&mut r, cpu0);
    let (reads1, writes1) = env.partner_calls();
    r.partner_reads = reads1 - reads0;
    r.partner_writes = writes1 - writes0;
    let n_created = sent.created.lock().map(|v| v.len()).unwrap_or(0);
    r.notes.push(format!(
        "{n_created} users created ({} S1-sized runs would take {:.0} s at 5 writes/s)",
        sizes.users,
        (sizes.users * 2) as f64 / 5.0
    ));
    Ok(r)
}

/// What the paced traffic left: the reads' and the writes' figures, and the ids of the users
/// it created.
struct Sent {
    reads: Stats,
    writes: Stats,
    created: Arc<Mutex<Vec<String>>>,
}

/// Sends `total` requests, one every 40 ms, each on a task of its own: of every five, three
/// lookups, one user create and one group add of the latest created user (a lookup while
/// there is none).
async fn send_paced(env: &Env, group_ids: &[String], total: usize) -> Sent {
    let started = Instant::now();
    let mut handles = Vec::new();
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    for i in 0..total {
        let due = started + Duration::from_millis(40 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        let client = env.client.clone();
        let created = created.clone();
        let gid = group_ids[i % group_ids.len().max(1)].clone();
        handles.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            let kind = i % 5;
            let req = match kind {
                0..=2 => lookup(&email("s5u", i)),
                3 => Req::post("/Users", user_body(&email("s5u", i), i)),
                _ => {
                    let id = created.lock().ok().and_then(|v| v.last().cloned());
                    match id {
                        Some(id) => Req::patch(format!("/Groups/{gid}"), add_members(&[id])),
                        None => lookup(&email("s5u", i)),
                    }
                }
            };
            let (status, body) = client.send(&req, &mut rec).await;
            if kind == 3 && status == 201 {
                if let (Some(id), Ok(mut v)) = (body["id"].as_str(), created.lock()) {
                    v.push(id.to_owned());
                }
            }
            (kind, rec)
        }));
    }
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for h in handles {
        if let Ok((kind, rec)) = h.await {
            if kind <= 2 {
                reads.push(rec);
            } else {
                writes.push(rec);
            }
        }
    }
    let elapsed = started.elapsed();
    Sent {
        reads: Stats::from(reads, elapsed),
        writes: Stats::from(writes, elapsed),
        created,
    }
}

/// Every request answered, no 5xx but 503, and a p99 under 1 s.
fn paced_checks(r: &mut ScenarioReport, name: &str, s: &Stats) {
    let timeouts = s.count_of(0);
    let bad: u64 = s
        .statuses
        .iter()
        .filter(|(k, _)| **k >= 500 && **k != 503)
        .map(|(_, n)| n)
        .sum();
    if timeouts + bad > 0 {
        r.failures.push(format!(
            "{name}: {timeouts} without an answer, {bad} 5xx other than 503"
        ));
    }
    r.targets.push((
        format!("{name}: p99 {:.0} ms (under 1 s)", s.p99_ms),
        s.p99_ms < 1000.0,
    ));
}
