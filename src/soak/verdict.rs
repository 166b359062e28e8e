//! Judging a soak run: every answer classified as expected or an error, the memory and
//! descriptor trends, and the list of failed checks.

use std::collections::BTreeMap;

use super::client::Answer;
use super::process::{trend, Sample, Trend};
use super::report::{FaultWindow, OpCounts, SoakReport};
use super::{FD_GROWTH, GRACE, RSS_GROWTH_MB, RSS_GROWTH_SHARE, WARMUP_SHARE};

/// The answers counted per request kind and per status, and the errors among them.
pub(super) struct Classified {
    pub(super) ops: BTreeMap<&'static str, OpCounts>,
    pub(super) statuses: BTreeMap<u16, u64>,
    pub(super) errors: u64,
    /// 429/503 with Retry-After during or just after a fault.
    pub(super) expected: u64,
    /// The first 20 errors, with when they were asked.
    pub(super) first_errors: Vec<String>,
}

/// How one answer counts.
enum Judgement {
    Ok,
    ExpectedFault,
    Error(String),
}

/// Classifies every answer against the fault windows (see the module documentation of
/// `soak` for what is expected).
pub(super) fn classify(answers: &[Answer], windows: &[FaultWindow]) -> Classified {
    let mut c = Classified {
        ops: BTreeMap::new(),
        statuses: BTreeMap::new(),
        errors: 0,
        expected: 0,
        first_errors: Vec::new(),
    };
    for a in answers {
        *c.statuses.entry(a.status).or_insert(0u64) += 1;
        let counts = c.ops.entry(a.op.name()).or_default();
        match judge(a, windows) {
            Judgement::Ok => counts.ok += 1,
            Judgement::ExpectedFault => {
                counts.expected_fault += 1;
                c.expected += 1;
            }
            Judgement::Error(why) => {
                counts.errors += 1;
                c.errors += 1;
                if c.first_errors.len() < 20 {
                    c.first_errors
                        .push(format!("at {:.1} s: {why}", a.start.as_secs_f64()));
                }
            }
        }
    }
    c
}

/// One answer's judgement: a 2xx with the right content is fine, a 429/503 with Retry-After
/// during a fault (or within [`GRACE`] after it) is expected, anything else is an error.
fn judge(a: &Answer, windows: &[FaultWindow]) -> Judgement {
    let grace = GRACE.as_secs_f64();
    let in_fault = |a: &Answer| {
        let (s, e) = (a.start.as_secs_f64(), a.end.as_secs_f64());
        windows.iter().any(|w| s <= w.off_s + grace && e >= w.on_s)
    };
    if let Some(w) = &a.wrong {
        Judgement::Error(w.clone())
    } else if (200..300).contains(&a.status) {
        Judgement::Ok
    } else if matches!(a.status, 429 | 503) && a.retry_after && in_fault(a) {
        Judgement::ExpectedFault
    } else if a.status == 0 {
        Judgement::Error(format!("{}: no answer", a.op.name()))
    } else if matches!(a.status, 429 | 503) && a.retry_after {
        Judgement::Error(format!(
            "{}: {} outside a fault window",
            a.op.name(),
            a.status
        ))
    } else {
        Judgement::Error(format!(
            "{}: {}{}",
            a.op.name(),
            a.status,
            if a.retry_after {
                ""
            } else {
                " without Retry-After"
            }
        ))
    }
}

/// The memory and descriptor trends after warm-up, and how many samples warm-up left out.
pub(super) struct Trends {
    pub(super) warmup: usize,
    pub(super) rss: Trend,
    pub(super) fds: Trend,
}

/// Fits the trend lines to the samples after the first [`WARMUP_SHARE`], judged against the
/// growth a run of `run_s` seconds may show.
pub(super) fn trends(samples: &[Sample], run_s: f64) -> Trends {
    let warmup = ((samples.len() as f64) * WARMUP_SHARE).ceil() as usize;
    let kept = &samples[warmup.min(samples.len())..];
    let ts: Vec<f64> = kept.iter().map(|s| s.t_s).collect();
    let rss: Vec<f64> = kept.iter().map(|s| s.rss_kb as f64 / 1024.0).collect();
    let fds: Vec<f64> = kept.iter().map(|s| s.fds as f64).collect();
    Trends {
        warmup,
        rss: trend(&ts, &rss, run_s, |mean| {
            RSS_GROWTH_MB.max(RSS_GROWTH_SHARE * mean)
        }),
        fds: trend(&ts, &fds, run_s, |_| FD_GROWTH),
    }
}

/// The checks a finished report fails, in the order the report lists them; `differences` is
/// the full count of final-state differences (the report keeps only the first 20).
pub(super) fn failures(report: &SoakReport, bridge_alive: bool, differences: usize) -> Vec<String> {
    let mut failures = Vec::new();
    if !bridge_alive {
        failures.push("the bridge process exited during the run".to_owned());
    }
    if report.errors > 0 {
        failures.push(format!(
            "{} answers beyond the injected faults",
            report.errors
        ));
    }
    if differences > 0 {
        failures.push(format!(
            "the partner differs from the desired state in {differences} ways after {:.0} s",
            report.converge_s
        ));
    }
    if let Some(d) = report.outbox_depth.filter(|d| *d > 0) {
        failures.push(format!("{d} outbox rows left after the run"));
    }
    for (name, t, unit) in [("RSS", &report.rss_mb, "MB"), ("open fds", &report.fds, "")] {
        if t.samples < 5 {
            failures.push(format!("{name}: only {} samples after warm-up", t.samples));
        } else if !t.ok {
            failures.push(format!(
                "{name} grows: {:+.1}{unit} projected over the run, above {:.1}{unit}",
                t.projected_growth, t.threshold
            ));
        }
    }
    failures
}
