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

mod child;
mod client;
mod process;
mod report;
mod worker;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::partner::emulator::faults::Faults;
use crate::partner::emulator::{Emulator, SiteSpec};
use crate::secret::Secret;

use child::{redact_url, start_bridge, write_config, RemoveDir};
use client::{call, status_is, Answer, Log, Scim};
use process::{sample_process, trend, Sample};
use report::{differences, FaultWindow, OpCounts, SoakReport};
use worker::{fault_for, worker, Names, Op};

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

async fn soak(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let run_s = args.duration.as_secs_f64();
    let sample_every = args
        .sample_every
        .unwrap_or_else(|| Duration::from_secs_f64((run_s / 150.0).clamp(1.0, 5.0)));
    let period = args
        .fault_period
        .unwrap_or_else(|| Duration::from_secs_f64((run_s / 4.0).clamp(30.0, 90.0)));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let names = Names { tag: tag.clone() };
    let dir = std::env::temp_dir().join(format!("scim-bridge-soak-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let dir_guard = RemoveDir(dir.clone());

    let key = crate::secret::random_token();
    // A short call log: the soak never reads it, and a long one would grow for 30 minutes.
    let emulator = Emulator::with_call_log_capacity(
        vec![SiteSpec {
            name: SITE.into(),
            api_key: Secret::new(key.clone()),
            owner_email: OWNER.into(),
        }],
        64,
    );
    let running = emulator.clone().spawn().await?;
    let (store_url, store_label, own_sqlite) = match &args.store_url {
        Some(u) => (u.clone(), redact_url(u), false),
        None => {
            let u = format!("sqlite://{}/soak.db?mode=rwc", dir.display());
            (u, "sqlite (temporary file)".to_owned(), true)
        }
    };
    let token = crate::secret::random_token();
    let tenant = format!("soak-{tag}");
    let config = write_config(&dir, &store_url, &tenant, &token, &running.base_url, &key)?;
    let (mut child, root) = start_bridge(&config, &dir).await?;
    let pid = child.child.id();

    let connections = args.connections.max(1);
    let scim = Scim {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?,
        base: format!("{root}/scim/v2"),
        auth: format!("Bearer {token}"),
        epoch: Instant::now(),
    };
    let epoch = scim.epoch;
    let log = Log::default();

    // Wait for readiness, then the groups (before any fault).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = scim
            .http
            .get(format!("{root}/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the bridge never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut group_ids = Vec::new();
    for g in 0..GROUPS {
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": names.group(g), "members": []});
        let reply = call(
            &scim,
            &log,
            Op::Setup,
            reqwest::Method::POST,
            "/Groups",
            Some(&body),
            status_is(&[201]),
        )
        .await
        .context("a set-up group could not be created")?;
        group_ids.push(
            reply.body["id"]
                .as_str()
                .context("a created group has no id")?
                .to_owned(),
        );
    }
    let groups = Arc::new(group_ids);

    // The sampler.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sample_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok((rss_kb, fds)) = sample_process(pid) else {
                    break;
                };
                if let Ok(mut s) = samples.lock() {
                    s.push(Sample {
                        t_s: epoch.elapsed().as_secs_f64(),
                        rss_kb,
                        fds,
                    });
                }
            }
        })
    };

    // The fault schedule: in each period a clean third, a faulty third, a clean third.
    let windows: Arc<Mutex<Vec<FaultWindow>>> = Arc::default();
    let work_start = Instant::now();
    let end = work_start + args.duration;
    let scheduler = {
        let (emulator, windows, seed) = (emulator.clone(), windows.clone(), args.seed);
        tokio::spawn(async move {
            let mut k = 0usize;
            loop {
                let on = work_start + period.mul_f64(k as f64 + 1.0 / 3.0);
                let off = (work_start + period.mul_f64(k as f64 + 2.0 / 3.0)).min(end);
                if on >= end {
                    break;
                }
                tokio::time::sleep_until(on.into()).await;
                let (kind, faults) = fault_for(k, seed);
                emulator.set_faults(SITE, faults);
                let on_s = epoch.elapsed().as_secs_f64();
                tokio::time::sleep_until(off.into()).await;
                emulator.set_faults(SITE, Faults::default());
                if let Ok(mut w) = windows.lock() {
                    w.push(FaultWindow {
                        kind,
                        on_s,
                        off_s: epoch.elapsed().as_secs_f64(),
                    });
                }
                k += 1;
            }
        })
    };

    let interval = Duration::from_secs_f64(connections as f64 / args.rate.max(0.1));
    let mut handles = Vec::new();
    for w in 0..connections {
        handles.push(tokio::spawn(worker(
            w,
            args.seed,
            scim.clone(),
            log.clone(),
            names.clone(),
            groups.clone(),
            args.users_per_connection.max(1),
            interval,
            end,
        )));
    }
    let mut users = Vec::new();
    for h in handles {
        users.extend(h.await.context("a workload connection failed")?);
    }
    let work_s = work_start.elapsed().as_secs_f64();
    // A fault still on (the scheduler ends a window at the end of the run at the latest).
    let _ = scheduler.await;
    emulator.set_faults(SITE, Faults::default());
    sampler.abort();
    let bridge_alive = matches!(child.child.try_wait(), Ok(None));

    // Convergence: the outbox drains and the partner agrees with the workload's model.
    let converge_start = Instant::now();
    let mut diffs;
    loop {
        diffs = differences(&emulator, &names, &users);
        if diffs.is_empty() || converge_start.elapsed() > CONVERGE_LIMIT || !bridge_alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converge_s = converge_start.elapsed().as_secs_f64();
    let mut outbox_depth = None;
    if own_sqlite {
        // Only this run's tenant uses this file, so the whole outbox is ours.
        let store = crate::store::Store::connect(&store_url)
            .await
            .map_err(|e| anyhow::anyhow!("store: {e}"))?;
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            let depth = store
                .outbox_stats()
                .await
                .map_err(|e| anyhow::anyhow!("outbox: {e}"))?
                .depth;
            outbox_depth = Some(depth);
            if depth == 0 || Instant::now() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    drop(child);

    // Classification.
    let answers = log.answers.lock().map(|v| v.clone()).unwrap_or_default();
    let windows = windows.lock().map(|v| v.clone()).unwrap_or_default();
    let grace = GRACE.as_secs_f64();
    let in_fault = |a: &Answer| {
        let (s, e) = (a.start.as_secs_f64(), a.end.as_secs_f64());
        windows.iter().any(|w| s <= w.off_s + grace && e >= w.on_s)
    };
    let mut ops: BTreeMap<&'static str, OpCounts> = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    let mut errors = 0u64;
    let mut expected = 0u64;
    let mut first_errors = Vec::new();
    for a in &answers {
        *statuses.entry(a.status).or_insert(0u64) += 1;
        let counts = ops.entry(a.op.name()).or_default();
        let why = if let Some(w) = &a.wrong {
            Some(w.clone())
        } else if (200..300).contains(&a.status) {
            counts.ok += 1;
            None
        } else if matches!(a.status, 429 | 503) && a.retry_after && in_fault(a) {
            counts.expected_fault += 1;
            expected += 1;
            None
        } else if a.status == 0 {
            Some(format!("{}: no answer", a.op.name()))
        } else if matches!(a.status, 429 | 503) && a.retry_after {
            Some(format!(
                "{}: {} outside a fault window",
                a.op.name(),
                a.status
            ))
        } else {
            Some(format!(
                "{}: {}{}",
                a.op.name(),
                a.status,
                if a.retry_after {
                    ""
                } else {
                    " without Retry-After"
                }
            ))
        };
        if let Some(why) = why {
            counts.errors += 1;
            errors += 1;
            if first_errors.len() < 20 {
                first_errors.push(format!("at {:.1} s: {why}", a.start.as_secs_f64()));
            }
        }
    }

    // The trend.
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let warmup = ((samples.len() as f64) * WARMUP_SHARE).ceil() as usize;
    let kept = &samples[warmup.min(samples.len())..];
    let ts: Vec<f64> = kept.iter().map(|s| s.t_s).collect();
    let rss: Vec<f64> = kept.iter().map(|s| s.rss_kb as f64 / 1024.0).collect();
    let fds: Vec<f64> = kept.iter().map(|s| s.fds as f64).collect();
    let rss_trend = trend(&ts, &rss, run_s, |mean| {
        RSS_GROWTH_MB.max(RSS_GROWTH_SHARE * mean)
    });
    let fd_trend = trend(&ts, &fds, run_s, |_| FD_GROWTH);

    let mut failures = Vec::new();
    if !bridge_alive {
        failures.push("the bridge process exited during the run".to_owned());
    }
    if errors > 0 {
        failures.push(format!("{errors} answers beyond the injected faults"));
    }
    if !diffs.is_empty() {
        failures.push(format!(
            "the partner differs from the desired state in {} ways after {converge_s:.0} s",
            diffs.len()
        ));
    }
    if let Some(d) = outbox_depth.filter(|d| *d > 0) {
        failures.push(format!("{d} outbox rows left after the run"));
    }
    for (name, t, unit) in [("RSS", &rss_trend, "MB"), ("open fds", &fd_trend, "")] {
        if t.samples < 5 {
            failures.push(format!("{name}: only {} samples after warm-up", t.samples));
        } else if !t.ok {
            failures.push(format!(
                "{name} grows: {:+.1}{unit} projected over the run, above {:.1}{unit}",
                t.projected_growth, t.threshold
            ));
        }
    }
    let memberships = users.iter().map(|u| u.groups.len()).sum::<usize>();
    let requests = answers.len() as u64;
    let report = SoakReport {
        duration_s: run_s,
        seed: args.seed,
        connections,
        store: store_label,
        bridge_pid: pid,
        requests,
        per_second: requests as f64 / work_s.max(1e-9),
        ops,
        statuses,
        expected_fault_answers: expected,
        errors,
        first_errors,
        fault_windows: windows,
        users_at_end: users.len(),
        memberships_at_end: memberships,
        converge_s,
        outbox_depth,
        final_state_ok: diffs.is_empty(),
        final_state_differences: diffs.into_iter().take(20).collect(),
        sample_every_s: sample_every.as_secs_f64(),
        warmup_samples: warmup,
        samples,
        rss_mb: rss_trend,
        fds: fd_trend,
        passed: failures.is_empty(),
        failures,
    };
    if report.passed {
        drop(dir_guard);
    } else {
        // Keep the bridge's log for a look.
        eprintln!("soak: the bridge's files are kept in {}", dir.display());
        std::mem::forget(dir_guard);
    }
    running.shutdown().await;
    Ok(report)
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
