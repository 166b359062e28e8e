//! What `soak` prints: the report, its table, and the final-state comparison.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::partner::emulator::Emulator;

use super::process::{Sample, Trend};
use super::worker::{ModelUser, Names};
use super::{GRACE, SITE};

/// When a fault was switched on and off (offsets from the start of the run).
#[derive(Debug, Clone, Serialize)]
pub(super) struct FaultWindow {
    pub(super) kind: &'static str,
    pub(super) on_s: f64,
    pub(super) off_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct OpCounts {
    pub(super) ok: u64,
    pub(super) expected_fault: u64,
    pub(super) errors: u64,
}

/// What `soak` prints.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SoakReport {
    pub(super) duration_s: f64,
    pub(super) seed: u64,
    pub(super) connections: usize,
    pub(super) store: String,
    pub(super) bridge_pid: u32,
    pub(super) requests: u64,
    pub(super) per_second: f64,
    pub(super) ops: BTreeMap<&'static str, OpCounts>,
    pub(super) statuses: BTreeMap<u16, u64>,
    /// 429/503 with Retry-After during or just after a fault.
    pub(super) expected_fault_answers: u64,
    pub(super) errors: u64,
    pub(super) first_errors: Vec<String>,
    pub(super) fault_windows: Vec<FaultWindow>,
    pub(super) users_at_end: usize,
    pub(super) memberships_at_end: usize,
    pub(super) converge_s: f64,
    pub(super) outbox_depth: Option<u64>,
    pub(super) final_state_ok: bool,
    pub(super) final_state_differences: Vec<String>,
    pub(super) sample_every_s: f64,
    pub(super) warmup_samples: usize,
    pub(super) samples: Vec<Sample>,
    pub(super) rss_mb: Trend,
    pub(super) fds: Trend,
    pub(super) failures: Vec<String>,
    pub(super) passed: bool,
}

/// Compares the partner with the users the workload left; returns the differences.
pub(super) fn differences(emulator: &Emulator, names: &Names, users: &[ModelUser]) -> Vec<String> {
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

/// The table's text, built a line at a time.
#[derive(Default)]
struct Table(String);

impl Table {
    fn line(&mut self, t: String) {
        self.0.push_str(&t);
        self.0.push('\n');
    }
}

impl SoakReport {
    /// The report as the text table `soak` prints without `--json`.
    pub(super) fn table(&self) -> String {
        let mut t = Table::default();
        self.requests_section(&mut t);
        self.faults_section(&mut t);
        self.end_state_section(&mut t);
        self.samples_section(&mut t);
        self.trends_section(&mut t);
        self.verdict_section(&mut t);
        t.0
    }

    /// The run's settings, the request totals and the counts per kind of request.
    fn requests_section(&self, t: &mut Table) {
        t.line(format!(
            "soak: {:.0} s, seed {}, {} connections, store {}, bridge pid {}",
            self.duration_s, self.seed, self.connections, self.store, self.bridge_pid
        ));
        t.line(format!(
            "requests: {} ({:.1}/s); statuses {:?}",
            self.requests, self.per_second, self.statuses
        ));
        t.line(format!(
            "{:<26} {:>9} {:>14} {:>7}",
            "request", "2xx ok", "fault 429/503", "errors"
        ));
        for (name, c) in &self.ops {
            t.line(format!(
                "{name:<26} {:>9} {:>14} {:>7}",
                c.ok, c.expected_fault, c.errors
            ));
        }
    }

    /// The fault windows, and the errors beyond them.
    fn faults_section(&self, t: &mut Table) {
        t.line(format!(
            "fault windows: {} ({} answers 429/503 with Retry-After during or within {} s after one)",
            self.fault_windows.len(),
            self.expected_fault_answers,
            GRACE.as_secs()
        ));
        for w in &self.fault_windows {
            t.line(format!(
                "  {:>7.1} s - {:>7.1} s  {}",
                w.on_s, w.off_s, w.kind
            ));
        }
        t.line(format!(
            "errors beyond the injected faults: {}",
            self.errors
        ));
        for e in &self.first_errors {
            t.line(format!("  {e}"));
        }
    }

    /// The users left, whether the partner agrees, and the outbox.
    fn end_state_section(&self, t: &mut Table) {
        t.line(format!(
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
            t.line(format!("  {d}"));
        }
    }

    /// About a dozen of the samples, evenly spread, and the last one.
    fn samples_section(&self, t: &mut Table) {
        t.line(format!(
            "samples: {} every {:.1} s; the first {} are warm-up",
            self.samples.len(),
            self.sample_every_s,
            self.warmup_samples
        ));
        t.line(format!("{:>9} {:>9} {:>6}", "t (s)", "RSS (MB)", "fds"));
        let step = (self.samples.len() / 12).max(1);
        for (i, x) in self.samples.iter().enumerate() {
            if i % step == 0 || i + 1 == self.samples.len() {
                t.line(format!(
                    "{:>9.1} {:>9.1} {:>6}",
                    x.t_s,
                    x.rss_kb as f64 / 1024.0,
                    x.fds
                ));
            }
        }
    }

    /// The memory and descriptor trend lines after warm-up, each with its verdict.
    fn trends_section(&self, t: &mut Table) {
        t.line(format!(
            "{:<9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>11} {:>10}  verdict",
            "after w-u", "first", "min", "max", "last", "slope/min", "projected", "threshold"
        ));
        for (name, tr) in [("RSS MB", &self.rss_mb), ("open fds", &self.fds)] {
            t.line(format!(
                "{name:<9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>+10.3} {:>+11.2} {:>10.1}  {}",
                tr.first,
                tr.min,
                tr.max,
                tr.last,
                tr.slope_per_min,
                tr.projected_growth,
                tr.threshold,
                if tr.ok { "flat" } else { "GROWS" }
            ));
        }
    }

    /// PASS, or FAIL with the failed checks.
    fn verdict_section(&self, t: &mut Table) {
        if self.passed {
            t.line("verdict: PASS".into());
        } else {
            t.line("verdict: FAIL".into());
            for f in &self.failures {
                t.line(format!("  {f}"));
            }
        }
    }
}
