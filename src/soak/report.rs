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

impl SoakReport {
    pub(super) fn table(&self) -> String {
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
