//! `scim-bridge bench`: the bridge and the partner emulator in this process, driven by IdP-like
//! traffic from many concurrent connections, reported as a table (or `--json`).
//!
//! Scenarios (issue "Performance"):
//! - **S1 initial sync** in Entra's order: for every user a `userName eq` probe then `POST /Users`;
//!   then every group `POST /Groups` (empty); then `PATCH` adds in batches of 1 to 100.
//! - **S2 read storm**: `userName eq` lookups (hits and Entra-style misses), `GET /Users` pages of
//!   100 and `GET /Groups/{id}?excludedAttributes=members`, beside a trivial axum handler driven by
//!   the same load tool (the HTTP ceiling of this machine), optionally a reference SCIM server.
//! - **S3 churn**: users moved between groups by concurrent, overlapping group PATCHes.
//! - **S4 big group**: one PATCH adding thousands of members, then one removing a single member.
//! - **S5 paced**: Entra's 25 requests/s of mixed traffic while the partner takes 5 writes/s.
//!
//! Each reports SCIM requests/s, p50/p99/max latency, partner reads and writes beside the lower
//! bound (the fewest writes that produce the final state), time to convergence, peak RSS and CPU
//! seconds. With `--check` the command exits 1 when a scenario's correctness property fails
//! (partner state differs from the desired state, the outbox does not drain, writes above the
//! bound in the coalescing scenarios); it never asserts wall-clock times.

mod load;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use report::{Report, ScenarioReport};

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    S1,
    S2,
    S3,
    S4,
    S5,
}

/// `scim-bridge bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "s1,s2,s3,s4,s5")]
    pub scenarios: Vec<Scenario>,
    /// Small sizes and short runs (CI): proves the harness and the correctness properties.
    #[arg(long)]
    pub quick: bool,
    /// S1 users (groups: 3 per 100 users; memberships: 6 per user; one group of --big-group).
    #[arg(long)]
    pub users: Option<usize>,
    /// Size of S1's largest group and of S4's group.
    #[arg(long)]
    pub big_group: Option<usize>,
    /// S3 users.
    #[arg(long)]
    pub churn_users: Option<usize>,
    /// Concurrent IdP connections in S1, S3, S4.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Concurrent connections in S2.
    #[arg(long, default_value_t = 64)]
    pub read_connections: usize,
    /// Seconds of each S2 run (S2 runs three times to watch memory).
    #[arg(long)]
    pub read_seconds: Option<f64>,
    /// Latency the emulated partner adds to every call, in ms.
    #[arg(long, default_value_t = 0)]
    pub partner_latency_ms: u64,
    /// Calls per second the emulated partner accepts (429 with Retry-After above it; off by
    /// default). S5 sets its own.
    #[arg(long)]
    pub partner_rate: Option<f64>,
    /// The bridge's own partner rate limit (calls/s per site; 0: off so the partner's limit is
    /// the only bound).
    #[arg(long, default_value_t = 0.0)]
    pub bridge_partner_rate: f64,
    /// The bridge's `bridge.coalesce_ms` (default: the bridge's default).
    #[arg(long)]
    pub coalesce_ms: Option<u64>,
    /// The bridge's `bridge.coalesce_max_ms` (default: the bridge's default).
    #[arg(long)]
    pub coalesce_max_ms: Option<u64>,
    /// The bridge's `bridge.wait_deadline_ms` (default: the bridge's default).
    #[arg(long)]
    pub wait_deadline_ms: Option<u64>,
    /// Store URL (`sqlite://...` or `postgres://...`); default a fresh SQLite file.
    #[arg(long)]
    pub store_url: Option<String>,
    /// The emulated site's API: `groups` (a v1 site) or `roles` (an RBAC site, SCIM groups as
    /// roles).
    #[arg(long, value_name = "API", default_value = "groups")]
    pub site_api: crate::partner::rbac::SiteApi,
    /// Another SCIM server to drive with S2's lookup workload (e.g. the Python reference
    /// `scim2-server`), for a ratio in the same run.
    #[arg(long, value_name = "BASE_URL")]
    pub reference_url: Option<String>,
    /// Users to create on the reference server before its lookups.
    #[arg(long, default_value_t = 1000)]
    pub reference_users: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when a correctness property fails.
    #[arg(long)]
    pub check: bool,
    /// Folder for the SQLite file (default: the system temporary folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Sizes after `--quick` and the explicit flags.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sizes {
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
    pub big_group: usize,
    pub churn_users: usize,
    pub read_seconds: f64,
}

impl BenchArgs {
    pub fn sizes(&self) -> Sizes {
        let (users, big, churn, secs) = if self.quick {
            (400, 150, 120, 1.0)
        } else {
            (10_000, 5_000, 1_000, 10.0)
        };
        let users = self.users.unwrap_or(users).max(10);
        let big_group = self.big_group.unwrap_or(big).min(users).max(1);
        Sizes {
            users,
            groups: (users * 3 / 100).max(3),
            memberships: users * 6,
            big_group,
            churn_users: self.churn_users.unwrap_or(churn).max(2),
            read_seconds: self.read_seconds.unwrap_or(secs),
        }
    }
}

/// Runs the benchmark; prints the report.
pub async fn run(args: BenchArgs) -> ExitCode {
    let sizes = args.sizes();
    let mut report = Report::new(&args, sizes);
    for scenario in args.scenarios.clone() {
        eprintln!("== {scenario:?}");
        match scenarios::run(scenario, &args, sizes).await {
            Ok(mut r) => {
                report.scenarios.append(&mut r);
            }
            Err(e) => {
                eprintln!("error: {scenario:?}: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.table());
    }
    let failed: Vec<_> = report
        .scenarios
        .iter()
        .flat_map(|s| s.failures.iter().map(move |f| format!("{}: {f}", s.name)))
        .collect();
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("check failed: {f}");
        }
        if args.check {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// How long convergence may take before a scenario gives up.
pub(crate) const CONVERGE_LIMIT: Duration = Duration::from_secs(1800);
