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

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use crate::partner::emulator::faults::{Faults, Latency, RateLimit};
use crate::partner::emulator::{Emulator, SiteSpec};
use crate::secret::Secret;

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

/// The kinds of IdP request the workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    LookupHit,
    LookupMiss,
    ListPage,
    GetGroup,
    CreateUser,
    DeleteUser,
    PatchName,
    Deactivate,
    Reactivate,
    GroupAdd,
    GroupRemove,
    Setup,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::LookupHit => "userName eq (hit)",
            Op::LookupMiss => "userName eq (miss)",
            Op::ListPage => "GET /Users page",
            Op::GetGroup => "GET /Groups/{id}",
            Op::CreateUser => "POST /Users",
            Op::DeleteUser => "DELETE /Users/{id}",
            Op::PatchName => "PATCH user name",
            Op::Deactivate => "PATCH active=false",
            Op::Reactivate => "PATCH active=true",
            Op::GroupAdd => "PATCH group add",
            Op::GroupRemove => "PATCH group remove",
            Op::Setup => "set-up (POST /Groups)",
        }
    }
}

/// One answer (or its absence), with when it was asked and answered.
#[derive(Debug, Clone)]
struct Answer {
    op: Op,
    /// Since the start of the run.
    start: Duration,
    end: Duration,
    /// 0: no answer (connection or timeout error).
    status: u16,
    retry_after: bool,
    /// Set when a 2xx carried the wrong content, or the status was one the op never expects.
    wrong: Option<String>,
}

/// When a fault was switched on and off (offsets from the start of the run).
#[derive(Debug, Clone, Serialize)]
struct FaultWindow {
    kind: &'static str,
    on_s: f64,
    off_s: f64,
}

/// One sample of the bridge process.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    t_s: f64,
    rss_kb: u64,
    fds: u64,
}

/// A least-squares line through samples after warm-up, and the verdict on it.
#[derive(Debug, Clone, Serialize)]
struct Trend {
    samples: usize,
    first: f64,
    min: f64,
    max: f64,
    last: f64,
    mean: f64,
    slope_per_min: f64,
    projected_growth: f64,
    threshold: f64,
    ok: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
struct OpCounts {
    ok: u64,
    expected_fault: u64,
    errors: u64,
}

/// What `soak` prints.
#[derive(Debug, Clone, Serialize)]
struct SoakReport {
    duration_s: f64,
    seed: u64,
    connections: usize,
    store: String,
    bridge_pid: u32,
    requests: u64,
    per_second: f64,
    ops: BTreeMap<&'static str, OpCounts>,
    statuses: BTreeMap<u16, u64>,
    /// 429/503 with Retry-After during or just after a fault.
    expected_fault_answers: u64,
    errors: u64,
    first_errors: Vec<String>,
    fault_windows: Vec<FaultWindow>,
    users_at_end: usize,
    memberships_at_end: usize,
    converge_s: f64,
    outbox_depth: Option<u64>,
    final_state_ok: bool,
    final_state_differences: Vec<String>,
    sample_every_s: f64,
    warmup_samples: usize,
    samples: Vec<Sample>,
    rss_mb: Trend,
    fds: Trend,
    failures: Vec<String>,
    passed: bool,
}

/// A user as the workload left it; the partner must end up agreeing.
#[derive(Debug, Clone)]
struct ModelUser {
    id: String,
    email: String,
    given: String,
    active: bool,
    groups: BTreeSet<usize>,
}

/// The run's names: emails and group names carry a run tag so a shared PostgreSQL store and
/// the partner's other users never mix with this run's.
#[derive(Debug, Clone)]
struct Names {
    tag: String,
}

impl Names {
    fn email(&self, worker: usize, n: u64) -> String {
        format!("soak-{}-w{worker}-{n}@soak.example.com", self.tag)
    }
    fn group(&self, g: usize) -> String {
        format!("soak-{}-g{g}", self.tag)
    }
    fn group_prefix(&self) -> String {
        format!("soak-{}-g", self.tag)
    }
    fn email_prefix(&self) -> String {
        format!("soak-{}-w", self.tag)
    }
}

/// The child bridge process; killed when dropped.
struct Child {
    child: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SCIM client of the workload: answers with status, `Retry-After` and body.
#[derive(Clone)]
struct Scim {
    http: reqwest::Client,
    base: String,
    auth: String,
    epoch: Instant,
}

struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
    start: Duration,
    end: Duration,
}

impl Scim {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.auth);
        if let Some(body) = body {
            b = b
                .header("Content-Type", "application/scim+json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let start = self.epoch.elapsed();
        let (status, retry_after, body) = match b.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match res.bytes().await {
                    Ok(bytes) => (
                        status,
                        retry_after,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    ),
                    // The body broke off: no whole answer.
                    Err(_) => (0, None, Value::Null),
                }
            }
            Err(_) => (0, None, Value::Null),
        };
        Reply {
            status,
            retry_after,
            body,
            start,
            end: self.epoch.elapsed(),
        }
    }
}

/// Records every answer; shared by the workers.
#[derive(Clone, Default)]
struct Log {
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Log {
    fn push(&self, a: Answer) {
        if let Ok(mut v) = self.answers.lock() {
            v.push(a);
        }
    }
}

/// Sends one IdP request the way an IdP does: on 429 or 503 with `Retry-After` it waits (at
/// most 3 s, to keep the workload moving) and sends it again, until an answer that is not one
/// of those or [`GIVE_UP_AFTER`]. Every answer is logged; `check` judges a final answer
/// (`Err(reason)`: wrong). Returns the final reply when it was a 2xx judged right.
async fn call(
    scim: &Scim,
    log: &Log,
    op: Op,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    check: impl Fn(u16, &Value) -> Result<(), String>,
) -> Option<Reply> {
    let started = Instant::now();
    loop {
        let reply = scim.send(method.clone(), path, body).await;
        let retryable = matches!(reply.status, 429 | 503);
        let wrong = if retryable || reply.status == 0 {
            None
        } else {
            check(reply.status, &reply.body).err().map(|why| {
                let detail = reply.body["detail"].as_str().unwrap_or_default();
                format!("{} {path}: {} {why} {detail}", op.name(), reply.status)
            })
        };
        log.push(Answer {
            op,
            start: reply.start,
            end: reply.end,
            status: reply.status,
            retry_after: reply.retry_after.is_some(),
            wrong: wrong.clone(),
        });
        match reply.retry_after {
            Some(secs) if retryable && started.elapsed() < GIVE_UP_AFTER => {
                let wait = Duration::from_secs(secs.min(3)).max(Duration::from_millis(200));
                tokio::time::sleep(wait).await;
            }
            _ => {
                let good = wrong.is_none() && (200..300).contains(&reply.status);
                return good.then_some(reply);
            }
        }
    }
}

fn status_is(expected: &'static [u16]) -> impl Fn(u16, &Value) -> Result<(), String> {
    move |status, _| {
        if expected.contains(&status) {
            Ok(())
        } else {
            Err(format!("(expected {expected:?})"))
        }
    }
}

fn lookup_path(email: &str) -> String {
    let filter = format!("userName eq \"{email}\"");
    format!(
        "/Users?filter={}",
        percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn expect_total(n: u64) -> impl Fn(u16, &Value) -> Result<(), String> {
    move |status, body| {
        if status != 200 {
            return Err("(expected 200)".into());
        }
        match body["totalResults"].as_u64() {
            Some(t) if t == n => Ok(()),
            other => Err(format!("totalResults {other:?}, expected {n}")),
        }
    }
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

/// One connection's loop: its own users, a seeded mix of requests, paced to `interval`.
#[allow(clippy::too_many_arguments)]
async fn worker(
    w: usize,
    seed: u64,
    scim: Scim,
    log: Log,
    names: Names,
    groups: Arc<Vec<String>>,
    target_users: usize,
    interval: Duration,
    end: Instant,
) -> Vec<ModelUser> {
    let mut rng = SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut users: Vec<ModelUser> = Vec::new();
    let mut next_email = 0u64;
    let mut next_name = 0u64;
    let mut due = Instant::now();
    while Instant::now() < end {
        due += interval;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Behind (retries, slow answers): do not burst to catch up.
            due = now;
        }
        let roll = rng.random_range(0..100u32);
        let pick = if users.is_empty() {
            None
        } else {
            Some(rng.random_range(0..users.len()))
        };
        match (roll, pick) {
            // A new user, or one removed once the connection has its share.
            (0..=11, _) | (_, None) if users.len() < target_users => {
                let email = names.email(w, next_email);
                next_email += 1;
                next_name += 1;
                let given = format!("Given{next_name}");
                // Entra's probe first, as it does before every create.
                call(
                    &scim,
                    &log,
                    Op::LookupMiss,
                    reqwest::Method::GET,
                    &lookup_path(&email),
                    None,
                    expect_total(0),
                )
                .await;
                let body = json!({
                    "schemas": [USER_SCHEMA],
                    "userName": email,
                    "externalId": format!("ext-{email}"),
                    "active": true,
                    "name": {"givenName": given, "familyName": format!("Family{w}")},
                    "emails": [{"value": email, "type": "work", "primary": true}],
                });
                let created = call(
                    &scim,
                    &log,
                    Op::CreateUser,
                    reqwest::Method::POST,
                    "/Users",
                    Some(&body),
                    status_is(&[201]),
                )
                .await;
                if let Some(id) = created.and_then(|r| r.body["id"].as_str().map(str::to_owned)) {
                    users.push(ModelUser {
                        id,
                        email,
                        given,
                        active: true,
                        groups: BTreeSet::new(),
                    });
                }
            }
            (0..=11, Some(i)) => {
                let u = users.swap_remove(i);
                let ok = call(
                    &scim,
                    &log,
                    Op::DeleteUser,
                    reqwest::Method::DELETE,
                    &format!("/Users/{}", u.id),
                    None,
                    status_is(&[204]),
                )
                .await;
                if ok.is_none() {
                    // Unknown outcome: keep it and let the final check judge it as the IdP
                    // would leave it (the request is already counted as an error).
                    users.push(u);
                }
            }
            (_, None) => {}
            (12..=36, Some(i)) => {
                call(
                    &scim,
                    &log,
                    Op::LookupHit,
                    reqwest::Method::GET,
                    &lookup_path(&users[i].email),
                    None,
                    expect_total(1),
                )
                .await;
            }
            (37..=46, _) => {
                let email = format!("{}@soak.example.com", uuid::Uuid::new_v4());
                call(
                    &scim,
                    &log,
                    Op::LookupMiss,
                    reqwest::Method::GET,
                    &lookup_path(&email),
                    None,
                    expect_total(0),
                )
                .await;
            }
            (47..=54, _) => {
                let start = rng.random_range(0..200u32) + 1;
                call(
                    &scim,
                    &log,
                    Op::ListPage,
                    reqwest::Method::GET,
                    &format!("/Users?startIndex={start}&count=50"),
                    None,
                    status_is(&[200]),
                )
                .await;
            }
            (55..=59, _) => {
                let g = rng.random_range(0..groups.len());
                call(
                    &scim,
                    &log,
                    Op::GetGroup,
                    reqwest::Method::GET,
                    &format!("/Groups/{}?excludedAttributes=members", groups[g]),
                    None,
                    status_is(&[200]),
                )
                .await;
            }
            (60..=69, Some(i)) => {
                next_name += 1;
                let given = format!("Given{next_name}");
                let body = patch_body(json!([{"op": "replace", "path": "name.givenName",
                    "value": given}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::PatchName,
                    reqwest::Method::PATCH,
                    &format!("/Users/{}", users[i].id),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].given = given;
                }
            }
            (70..=75, Some(i)) => {
                let (op, active) = if users[i].active {
                    (Op::Deactivate, false)
                } else {
                    (Op::Reactivate, true)
                };
                // Okta's shape: replace with an object value.
                let body = patch_body(json!([{"op": "replace", "value": {"active": active}}]));
                let ok = call(
                    &scim,
                    &log,
                    op,
                    reqwest::Method::PATCH,
                    &format!("/Users/{}", users[i].id),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].active = active;
                }
            }
            (76..=89, Some(i)) => {
                let g = rng.random_range(0..groups.len());
                let body = patch_body(json!([{"op": "add", "path": "members",
                    "value": [{"value": users[i].id}]}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::GroupAdd,
                    reqwest::Method::PATCH,
                    &format!("/Groups/{}", groups[g]),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].groups.insert(g);
                }
            }
            (_, Some(i)) => {
                let Some(&g) = users[i]
                    .groups
                    .iter()
                    .nth(rng.random_range(0..users[i].groups.len().max(1)))
                else {
                    continue;
                };
                let body = patch_body(json!([{"op": "remove",
                    "path": format!("members[value eq \"{}\"]", users[i].id)}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::GroupRemove,
                    reqwest::Method::PATCH,
                    &format!("/Groups/{}", groups[g]),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].groups.remove(&g);
                }
            }
        }
    }
    users
}

/// The faults of window `k`, in rotation. They are harsh enough that the bridge's own retries
/// (4 attempts within 6 s) often fail too, so the IdP sees 429/503 and retries.
fn fault_for(k: usize, seed: u64) -> (&'static str, Faults) {
    let seed = seed.wrapping_add(k as u64);
    match k % 5 {
        0 => (
            "429 storm (0.5 calls/s, Retry-After)",
            Faults {
                rate_limit: Some(RateLimit {
                    per_second: 0.5,
                    burst: 1,
                    retry_after: true,
                }),
                seed,
                ..Faults::default()
            },
        ),
        1 => (
            "503 burst (90% of the calls)",
            Faults {
                error_share: 0.9,
                error_statuses: vec![503],
                seed,
                ..Faults::default()
            },
        ),
        2 => (
            "latency 50-1500 ms",
            Faults {
                latency: Some(Latency::UniformMs { min: 50, max: 1500 }),
                seed,
                ..Faults::default()
            },
        ),
        3 => (
            "connections dropped mid-response (60%)",
            Faults {
                drop_share: 0.6,
                seed,
                ..Faults::default()
            },
        ),
        _ => (
            "mixed: 500/502/503 20%, drops 10%, latency 0-300 ms",
            Faults {
                error_share: 0.2,
                error_statuses: vec![500, 502, 503],
                drop_share: 0.1,
                latency: Some(Latency::UniformMs { min: 0, max: 300 }),
                seed,
                ..Faults::default()
            },
        ),
    }
}

/// Reads `VmRSS` (kB) and the number of open descriptors of `pid`.
fn sample_process(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("read /proc/{pid}/fd"))?
        .count() as u64;
    Ok((rss, fds))
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// The trend of `ys` (after warm-up) projected over `run_s` seconds, against a threshold.
fn trend(ts: &[f64], ys: &[f64], run_s: f64, threshold: impl Fn(f64) -> f64) -> Trend {
    let n = ys.len().max(1) as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let b = slope(ts, ys);
    let projected = b * run_s;
    let threshold = threshold(mean);
    Trend {
        samples: ys.len(),
        first: ys.first().copied().unwrap_or(0.0),
        min: ys.iter().copied().fold(f64::INFINITY, f64::min),
        max: ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        last: ys.last().copied().unwrap_or(0.0),
        mean,
        slope_per_min: b * 60.0,
        projected_growth: projected,
        threshold,
        ok: ys.len() >= 5 && projected <= threshold,
    }
}

fn write_config(
    dir: &Path,
    store_url: &str,
    tenant: &str,
    token: &str,
    partner: &str,
    key: &str,
) -> anyhow::Result<PathBuf> {
    // The partner settings are shorter than the defaults so a fault's effects end soon after
    // it (see GRACE); the bridge's own partner rate limit and the inbound limits are off so
    // that, without faults, nothing but a bug answers 429. Info logs only for the start-up
    // line that names the address; the audit log would fill the disk in 30 minutes.
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n\
         data_dir = \"{dir}\"\n\
         [store]\nurl = \"{store_url}\"\n\
         [log]\nlevel = \"warn,scim_bridge::cli=info\"\nformat = \"json\"\n\
         [http.rate_limit]\nper_second = 0.0\nburst = 1\n\
         [http.auth_failure_limit]\nper_second = 0.0\nburst = 1\n\
         [bridge]\nwait_deadline_ms = 3000\nreconcile_interval_s = 0\nretry_max_ms = 5000\n\
         [bridge.partner]\nrequest_timeout_ms = 2000\ncall_deadline_ms = 6000\n\
         max_attempts = 4\nbackoff_base_ms = 100\nbackoff_max_ms = 1000\n\
         rate_per_second = 0.0\ncircuit_open_ms = 3000\n\
         [[tenants]]\nname = \"{tenant}\"\ninvited_by_email = \"{OWNER}\"\n\
         [[tenants.credentials.bearer_tokens]]\nname = \"soak\"\ntoken = \"{token}\"\n\
         [[tenants.sites]]\nsite_name = \"{SITE}\"\napi_key = \"{key}\"\nbase_url = \"{partner}\"\n",
        dir = dir.display(),
    );
    let path = dir.join("scim-bridge.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Starts `serve` as a child and waits for the address it bound.
async fn start_bridge(config: &Path, dir: &Path) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("current_exe")?;
    let stderr_path = dir.join("bridge.stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let stdout = std::fs::File::create(dir.join("bridge.stdout"))?;
    let child = std::process::Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("SCIM_BRIDGE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("start the bridge")?;
    let mut child = Child { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let listen = text.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let message = v["fields"]["message"].as_str().or(v["message"].as_str())?;
            (message == "serving")
                .then(|| v["fields"]["listen"].as_str().map(str::to_owned))
                .flatten()
        });
        if let Some(listen) = listen {
            return Ok((child, format!("http://{listen}")));
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            anyhow::bail!("the bridge exited ({status}) before serving:\n{text}");
        }
        if Instant::now() > deadline {
            anyhow::bail!("the bridge did not start within 60 s:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Compares the partner with the users the workload left; returns the differences.
fn differences(emulator: &Emulator, names: &Names, users: &[ModelUser]) -> Vec<String> {
    let group_prefix = names.group_prefix();
    let email_prefix = names.email_prefix();
    let partner: BTreeMap<String, crate::partner::PartnerUser> = emulator
        .users(SITE)
        .into_iter()
        .filter(|u| u.email.starts_with(&email_prefix))
        .map(|u| (u.email.to_lowercase(), u))
        .collect();
    let mut diffs = Vec::new();
    let mut wanted = BTreeSet::new();
    for u in users.iter().filter(|u| u.active) {
        wanted.insert(u.email.to_lowercase());
        let want: BTreeSet<String> = u.groups.iter().map(|g| names.group(*g)).collect();
        match partner.get(&u.email.to_lowercase()) {
            None => diffs.push(format!("{}: missing at the partner", u.email)),
            Some(p) => {
                let got: BTreeSet<String> = p
                    .groups
                    .iter()
                    .filter(|g| g.starts_with(&group_prefix))
                    .cloned()
                    .collect();
                if got != want {
                    diffs.push(format!(
                        "{}: groups {got:?} at the partner, expected {want:?}",
                        u.email
                    ));
                }
                if p.first_name != u.given {
                    diffs.push(format!(
                        "{}: first name {:?} at the partner, expected {:?}",
                        u.email, p.first_name, u.given
                    ));
                }
            }
        }
    }
    for email in partner.keys().filter(|e| !wanted.contains(*e)) {
        diffs.push(format!(
            "{email}: at the partner, but deleted or deactivated"
        ));
    }
    diffs
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

/// Removes a folder when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store URL without its password.
fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable store URL)".to_owned(),
    }
}

impl SoakReport {
    fn table(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "soak: {:.0} s, seed {}, {} connections, store {}, bridge pid {}",
            self.duration_s, self.seed, self.connections, self.store, self.bridge_pid
        ));
        line(format!(
            "requests: {} ({:.1}/s); statuses {:?}",
            self.requests, self.per_second, self.statuses
        ));
        line(format!(
            "{:<26} {:>9} {:>14} {:>7}",
            "request", "2xx ok", "fault 429/503", "errors"
        ));
        for (name, c) in &self.ops {
            line(format!(
                "{name:<26} {:>9} {:>14} {:>7}",
                c.ok, c.expected_fault, c.errors
            ));
        }
        line(format!(
            "fault windows: {} ({} answers 429/503 with Retry-After during or within {} s after one)",
            self.fault_windows.len(),
            self.expected_fault_answers,
            GRACE.as_secs()
        ));
        for w in &self.fault_windows {
            line(format!(
                "  {:>7.1} s - {:>7.1} s  {}",
                w.on_s, w.off_s, w.kind
            ));
        }
        line(format!(
            "errors beyond the injected faults: {}",
            self.errors
        ));
        for e in &self.first_errors {
            line(format!("  {e}"));
        }
        line(format!(
            "end state: {} users, {} memberships; partner {} after {:.1} s; outbox depth {}",
            self.users_at_end,
            self.memberships_at_end,
            if self.final_state_ok {
                "equals the desired state"
            } else {
                "DIFFERS from the desired state"
            },
            self.converge_s,
            self.outbox_depth
                .map(|d| d.to_string())
                .unwrap_or_else(|| "(shared store: not read)".into())
        ));
        for d in &self.final_state_differences {
            line(format!("  {d}"));
        }
        line(format!(
            "samples: {} every {:.1} s; the first {} are warm-up",
            self.samples.len(),
            self.sample_every_s,
            self.warmup_samples
        ));
        line(format!("{:>9} {:>9} {:>6}", "t (s)", "RSS (MB)", "fds"));
        let step = (self.samples.len() / 12).max(1);
        for (i, x) in self.samples.iter().enumerate() {
            if i % step == 0 || i + 1 == self.samples.len() {
                line(format!(
                    "{:>9.1} {:>9.1} {:>6}",
                    x.t_s,
                    x.rss_kb as f64 / 1024.0,
                    x.fds
                ));
            }
        }
        line(format!(
            "{:<9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>11} {:>10}  verdict",
            "after w-u", "first", "min", "max", "last", "slope/min", "projected", "threshold"
        ));
        for (name, t) in [("RSS MB", &self.rss_mb), ("open fds", &self.fds)] {
            line(format!(
                "{name:<9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>+10.3} {:>+11.2} {:>10.1}  {}",
                t.first,
                t.min,
                t.max,
                t.last,
                t.slope_per_min,
                t.projected_growth,
                t.threshold,
                if t.ok { "flat" } else { "GROWS" }
            ));
        }
        if self.passed {
            line("verdict: PASS".into());
        } else {
            line("verdict: FAIL".into());
            for f in &self.failures {
                line(format!("  {f}"));
            }
        }
        s
    }
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

    #[test]
    fn slope_is_the_least_squares_line() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        assert!((slope(&xs, &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-9);
        assert!(slope(&xs, &[4.0, 4.0, 4.0, 4.0]).abs() < 1e-9);
        // A spike in the middle does not make a trend.
        assert!(slope(&xs, &[4.0, 9.0, 9.0, 4.0]).abs() < 1e-9);
    }

    #[test]
    fn trend_fails_above_the_threshold_only() {
        let ts: Vec<f64> = (0..10).map(f64::from).collect();
        let flat: Vec<f64> = ts.iter().map(|t| 30.0 + (t % 2.0)).collect();
        assert!(trend(&ts, &flat, 100.0, |_| 8.0).ok);
        // 0.1 MB/s over 100 s projects +10 MB.
        let growing: Vec<f64> = ts.iter().map(|t| 30.0 + 0.1 * t).collect();
        let t = trend(&ts, &growing, 100.0, |_| 8.0);
        assert!(!t.ok);
        assert!((t.projected_growth - 10.0).abs() < 1e-6);
    }
}
