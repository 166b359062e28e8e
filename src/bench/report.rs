//! The benchmark's report: a table for people, JSON for tools and `BENCHMARKS.md`.

use std::fmt::Write;

use super::load::Stats;
use super::{BenchArgs, Sizes};

/// The whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub store: String,
    pub partner_latency_ms: u64,
    pub partner_rate: Option<f64>,
    /// `groups` (a v1 site) or `roles` (an RBAC site).
    pub site_api: &'static str,
    pub sizes: Sizes,
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    pub fn new(args: &BenchArgs, sizes: Sizes) -> Self {
        Self {
            date: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            machine: machine(),
            store: match &args.store_url {
                Some(u) if u.starts_with("postgres") => "postgresql".into(),
                _ => "sqlite".into(),
            },
            partner_latency_ms: args.partner_latency_ms,
            partner_rate: args.partner_rate,
            site_api: args.site_api.as_str(),
            sizes,
            scenarios: Vec::new(),
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# scim-bridge bench  {}  store={}  site api={}  partner latency={} ms  partner rate={}",
            self.date,
            self.store,
            self.site_api,
            self.partner_latency_ms,
            self.partner_rate
                .map(|r| format!("{r}/s"))
                .unwrap_or_else(|| "off".into())
        );
        let _ = writeln!(out, "# machine: {}", self.machine);
        for s in &self.scenarios {
            let _ = writeln!(out);
            let _ = writeln!(out, "## {}: {}", s.name, s.title);
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9}  statuses",
                "phase", "requests", "req/s", "p50 ms", "p99 ms", "max ms"
            );
            for (name, p) in &s.phases {
                let statuses: Vec<String> =
                    p.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                let _ = writeln!(
                    out,
                    "{:<28} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2}  {}",
                    name,
                    p.requests,
                    p.per_second,
                    p.p50_ms,
                    p.p99_ms,
                    p.max_ms,
                    statuses.join(" ")
                );
            }
            let _ = writeln!(
                out,
                "partner writes {} (lower bound {}, ratio {:.3})  reads {} ({:.3} per write)  converged in {:.2} s",
                s.partner_writes,
                s.lower_bound,
                s.write_ratio(),
                s.partner_reads,
                s.reads_per_write(),
                s.converge_s
            );
            let _ = writeln!(
                out,
                "peak RSS {:.1} MB  CPU {:.2} s",
                s.peak_rss_mb, s.cpu_s
            );
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
            for (t, met) in &s.targets {
                let _ = writeln!(out, "target {}: {t}", if *met { "met" } else { "MISSED" });
            }
            for f in &s.failures {
                let _ = writeln!(out, "! FAILED: {f}");
            }
        }
        out
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub title: String,
    /// Request phases in order, with their figures.
    pub phases: Vec<(String, Stats)>,
    pub partner_reads: u64,
    pub partner_writes: u64,
    /// The fewest partner writes that produce the final state.
    pub lower_bound: u64,
    /// Seconds from the last request's answer until the outbox was empty.
    pub converge_s: f64,
    pub peak_rss_mb: f64,
    pub cpu_s: f64,
    /// Figures and ratios worth a line.
    pub notes: Vec<String>,
    /// Correctness properties that did not hold (`--check` fails on them).
    pub failures: Vec<String>,
    /// Performance targets of the issue: `(target, met)`. Reported, never asserted: they
    /// depend on the machine.
    pub targets: Vec<(String, bool)>,
}

impl ScenarioReport {
    pub fn write_ratio(&self) -> f64 {
        if self.lower_bound == 0 {
            0.0
        } else {
            self.partner_writes as f64 / self.lower_bound as f64
        }
    }

    pub fn reads_per_write(&self) -> f64 {
        if self.partner_writes == 0 {
            0.0
        } else {
            self.partner_reads as f64 / self.partner_writes as f64
        }
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

/// Peak resident set size of this process since the last [`reset_peak_rss`], in MB.
pub fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

/// Current resident set size, in MB.
pub fn rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Resets the peak RSS counter (Linux: writing 5 to `/proc/self/clear_refs`).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ") state".
    let ticks = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
