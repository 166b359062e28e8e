//! `scim-bridge soak`: a long mixed workload against the real binary, watching it for leaks.
//!
//! The partner emulator runs in this process; the bridge runs as a child process of this same
//! executable (`serve` with a generated configuration in a temporary folder), so its resident
//! memory (`VmRSS` in `/proc/PID/status`) and open file descriptors (`/proc/PID/fd`) can be
//! sampled on their own. Several connections send a seeded mix of IdP traffic: `userName eq`
//! lookups (hits and Entra-style misses), list pages, group reads, user creates, PATCHes,
//! deactivations, reactivations and deletes, and group PATCHes adding and removing members,
//! while partner faults are switched on and off on a schedule (429 with `Retry-After`, 503 and
//! 5xx bursts, latency, connections dropped mid-response).
//!
//! Every answer is classified. Expected: a 2xx with the right content, or a 429/503 carrying
//! `Retry-After` while a fault is on or within [`GRACE`] after it (the IdP retries those, as
//! Okta and Entra do). Anything else is an error: other statuses, a 429/503 without
//! `Retry-After` or outside a fault window, no answer at all, a 2xx with wrong content.
//!
//! At the end the faults stop, the outbox drains, and the partner's state must equal the state
//! the IdP asked for (users, names, managed groups; no user left that was deleted or
//! deactivated). The trend check skips the first [`WARMUP_SHARE`] of the samples, fits a
//! least-squares line to RSS and to the descriptor count, and fails when the line projects
//! more growth over the whole run than [`RSS_GROWTH_MB`] MB (or [`RSS_GROWTH_SHARE`] of the
//! resident size, whichever is larger) or [`FD_GROWTH`] descriptors.
//!
//! Exit status: 0 when every check passes, 1 when one fails, 2 when the run could not start.

mod background;
mod child;
mod client;
mod process;
mod report;
mod settle;
mod setup;
mod verdict;
mod worker;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::partner::emulator::faults::Faults;

use background::{FaultSchedule, Sampler, Window};
use client::Answer;
use process::Sample;
use report::{FaultWindow, SoakReport};
use settle::{converge, drain_outbox};
use setup::Env;
use verdict::{classify, failures, trends};
use worker::{worker, ModelUser, Pace, Shared};

const SITE: &str = "soak";
const OWNER: &str = "owner@soak.example.com";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// How long after a fault stops a 429/503 still counts as caused by it: the bridge's partner
/// call deadline (6 s in the generated configuration) plus its circuit's open time (3 s) plus
/// slack for a request that was queued behind them.
pub const GRACE: Duration = Duration::from_secs(12);
/// Share of the samples (the first ones) left out of the trend: start-up, allocator arenas,
/// pools and the user population filling up.
pub const WARMUP_SHARE: f64 = 0.2;
/// Projected RSS growth over the run that fails the check, in MB ...
pub const RSS_GROWTH_MB: f64 = 8.0;
/// ... or this share of the mean resident size after warm-up, whichever is larger.
pub const RSS_GROWTH_SHARE: f64 = 0.10;
/// Projected growth of the open descriptor count over the run that fails the check.
pub const FD_GROWTH: f64 = 10.0;
/// Groups the workload spreads memberships over.
const GROUPS: usize = 6;
/// How long one IdP request may be retried (after 429/503) before the soak gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// How long the partner may take to reach the desired state once the faults stop.
const CONVERGE_LIMIT: Duration = Duration::from_secs(180);

/// `scim-bridge soak` options.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long the workload runs: `30m`, `120s`, `1h` or seconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the workload and of the faults; the same seed gives the same schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent IdP connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests per second over all connections (each paces itself; retries count).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Users each connection keeps alive (it creates below, deletes above).
    #[arg(long, default_value_t = 25)]
    pub users_per_connection: usize,
    /// Time between samples of the bridge's memory and descriptors [default: the run / 150,
    /// between 1 s and 5 s].
    #[arg(long, value_parser = parse_duration)]
    pub sample_every: Option<Duration>,
    /// Period of the fault schedule: each period is a third clean, a third faulty, a third
    /// clean [default: the run / 4, between 30 s and 90 s].
    #[arg(long, value_parser = parse_duration)]
    pub fault_period: Option<Duration>,
    /// Store URL for the bridge (`sqlite://...` or `postgres://...`); default a fresh SQLite
    /// file in the temporary folder.
    #[arg(long)]
    pub store_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `30m`, `120s`, `2h`, `500ms` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (30m, 120s, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the soak and prints its report.
pub async fn run(args: SoakArgs) -> ExitCode {
    let report = match soak(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        let _ = writeln!(out, "{text}");
    } else {
        let _ = write!(out, "{}", report.table());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The run's sampling interval and fault period, from the options or the run's length.
struct Timing {
    sample_every: Duration,
    period: Duration,
}

impl Timing {
    /// `--sample-every` or the run / 150 (1 s to 5 s); `--fault-period` or the run / 4 (30 s
    /// to 90 s).
    fn of(args: &SoakArgs) -> Timing {
        let run_s = args.duration.as_secs_f64();
        Timing {
            sample_every: args
                .sample_every
                .unwrap_or_else(|| Duration::from_secs_f64((run_s / 150.0).clamp(1.0, 5.0))),
            period: args
                .fault_period
                .unwrap_or_else(|| Duration::from_secs_f64((run_s / 4.0).clamp(30.0, 90.0))),
        }
    }
}

/// What the run left to judge once the workload stopped, and the facts the report repeats.
struct Finished {
    connections: usize,
    store_label: String,
    bridge_pid: u32,
    users: Vec<ModelUser>,
    work_s: f64,
    bridge_alive: bool,
    diffs: Vec<String>,
    converge_s: f64,
    outbox_depth: Option<u64>,
    answers: Vec<Answer>,
    windows: Vec<FaultWindow>,
    samples: Vec<Sample>,
}

/// Starts the bridge and the partner, runs the workload under faults, waits for the end state
/// and judges the run.
async fn soak(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let timing = Timing::of(args);
    let mut env = Env::start(args).await?;
    env.wait_ready().await?;
    let groups = env.create_groups().await?;
    let epoch = env.scim.epoch;
    let sampler = Sampler::spawn(env.pid, timing.sample_every, epoch);
    let work_start = Instant::now();
    let end = work_start + args.duration;
    let schedule = FaultSchedule::spawn(
        env.emulator.clone(),
        args.seed,
        Window {
            work_start,
            end,
            period: timing.period,
            epoch,
        },
    );
    let users = run_workload(args, &env, groups, end).await?;
    let work_s = work_start.elapsed().as_secs_f64();
    // A fault still on (the scheduler ends a window at the end of the run at the latest).
    let _ = schedule.task.await;
    env.emulator.set_faults(SITE, Faults::default());
    sampler.task.abort();
    let bridge_alive = matches!(env.child.child.try_wait(), Ok(None));

    // Convergence: the outbox drains and the partner agrees with the workload's model.
    let (diffs, converge_s) = converge(&env.emulator, &env.names, &users, bridge_alive).await;
    let outbox_depth = if env.store.own_sqlite {
        // Only this run's tenant uses this file, so the whole outbox is ours.
        Some(drain_outbox(&env.store.url).await?)
    } else {
        None
    };
    drop(env.child);

    let finished = Finished {
        connections: env.connections,
        store_label: env.store.label.clone(),
        bridge_pid: env.pid,
        users,
        work_s,
        bridge_alive,
        diffs,
        converge_s,
        outbox_depth,
        answers: env
            .log
            .answers
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        windows: schedule
            .windows
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        samples: sampler
            .samples
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
    };
    let report = judge(args, &timing, finished);
    if report.passed {
        drop(env.dir_guard);
    } else {
        // Keep the bridge's log for a look.
        eprintln!("soak: the bridge's files are kept in {}", env.dir.display());
        std::mem::forget(env.dir_guard);
    }
    env.running.shutdown().await;
    Ok(report)
}

/// Runs one workload connection per `--connections` until `end`; returns the users they
/// left.
async fn run_workload(
    args: &SoakArgs,
    env: &Env,
    groups: Arc<Vec<String>>,
    end: Instant,
) -> anyhow::Result<Vec<ModelUser>> {
    let shared = Shared {
        scim: env.scim.clone(),
        log: env.log.clone(),
        names: env.names.clone(),
        groups,
    };
    let pace = Pace {
        target_users: args.users_per_connection.max(1),
        interval: Duration::from_secs_f64(env.connections as f64 / args.rate.max(0.1)),
        end,
    };
    let mut handles = Vec::new();
    for w in 0..env.connections {
        handles.push(tokio::spawn(worker(w, args.seed, shared.clone(), pace)));
    }
    let mut users = Vec::new();
    for h in handles {
        users.extend(h.await.context("a workload connection failed")?);
    }
    Ok(users)
}

/// Classifies the answers, fits the trends and lists the failed checks into the report.
fn judge(args: &SoakArgs, timing: &Timing, f: Finished) -> SoakReport {
    let run_s = args.duration.as_secs_f64();
    let classified = classify(&f.answers, &f.windows);
    let trends = trends(&f.samples, run_s);
    let memberships = f.users.iter().map(|u| u.groups.len()).sum::<usize>();
    let requests = f.answers.len() as u64;
    let differences = f.diffs.len();
    let mut report = SoakReport {
        duration_s: run_s,
        seed: args.seed,
        connections: f.connections,
        store: f.store_label,
        bridge_pid: f.bridge_pid,
        requests,
        per_second: requests as f64 / f.work_s.max(1e-9),
        ops: classified.ops,
        statuses: classified.statuses,
        expected_fault_answers: classified.expected,
        errors: classified.errors,
        first_errors: classified.first_errors,
        fault_windows: f.windows,
        users_at_end: f.users.len(),
        memberships_at_end: memberships,
        converge_s: f.converge_s,
        outbox_depth: f.outbox_depth,
        final_state_ok: f.diffs.is_empty(),
        final_state_differences: f.diffs.into_iter().take(20).collect(),
        sample_every_s: timing.sample_every.as_secs_f64(),
        warmup_samples: trends.warmup,
        samples: f.samples,
        rss_mb: trends.rss,
        fds: trends.fds,
        passed: false,
        failures: Vec::new(),
    };
    report.failures = failures(&report, f.bridge_alive, differences);
    report.passed = report.failures.is_empty();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }
}
