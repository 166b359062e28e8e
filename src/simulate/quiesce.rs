//! After the traffic: waiting for the bridges to converge, the outbox's leftovers, and the
//! histories a failure's report shows.

use std::time::{Duration, Instant};

use crate::partner::emulator::{CallRecord, Emulator};
use crate::store::Store;

use super::checks::{differences, Expected};
use super::idp::Model;
use super::plan::Plan;
use super::CONVERGE_LIMIT;

/// Waits until the outbox is drained and the partner equals the intent, or until drained for
/// 3 s but still different, or [`CONVERGE_LIMIT`]; returns the differences and the outbox
/// depth at that point.
pub(super) async fn converge(
    store: &Store,
    emulator: &Emulator,
    plan: &Plan,
    expected: &Expected,
) -> (Vec<String>, u64) {
    let end = Instant::now() + CONVERGE_LIMIT;
    let mut drained_since: Option<Instant> = None;
    loop {
        let depth = store
            .outbox_stats()
            .await
            .map(|s| s.depth)
            .unwrap_or(u64::MAX);
        let diff = differences(emulator, plan, expected);
        if depth == 0 && diff.is_empty() {
            break (diff, depth);
        }
        if depth == 0 {
            // Drained but different: give in-flight request waits a moment, then judge.
            let since = *drained_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                break (diff, depth);
            }
        } else {
            drained_since = None;
        }
        if Instant::now() > end {
            break (diff, depth);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Invariant 4's violation for an outbox still holding `depth` rows, with the failing ones.
pub(super) async fn outbox_violation(store: &Store, depth: u64) -> String {
    let failures = store
        .outbox_failures(None, 20)
        .await
        .map(|f| {
            f.iter()
                .map(|f| {
                    format!(
                        "{}/{} {:?} attempts {} error {:?}",
                        f.site, f.user_id, f.email, f.attempts, f.last_error
                    )
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    format!(
        "invariant 4: the outbox holds {depth} row(s) {CONVERGE_LIMIT:?} after the faults \
         stopped; failing: {failures:?}"
    )
}

/// For every user a violation names: the IdP's history of it and its partner writes.
pub(super) fn histories(model: &Model, violations: &[String], log: &[CallRecord]) -> Vec<String> {
    let mut details = Vec::new();
    for s in &model.users {
        if violations
            .iter()
            .any(|v| s.emails_used.iter().any(|e| v.contains(e.as_str())))
        {
            details.push(format!("history of {:?}:", s.emails_used));
            details.extend(s.history.iter().map(|h| format!("  {h}")));
            for e in &s.emails_used {
                details.extend(partner_writes(log, e));
            }
        }
    }
    details
}

/// The partner's user writes for `email`, one line each.
fn partner_writes<'a>(log: &'a [CallRecord], e: &'a str) -> impl Iterator<Item = String> + 'a {
    log.iter()
        .filter(move |r| r.email.as_deref() == Some(e))
        .filter(|r| r.call.is_user_write())
        .map(move |r| {
            format!(
                "  partner {} {:?} {e} -> {} at {} ms",
                r.site,
                r.call,
                r.status,
                r.finished_us / 1000
            )
        })
}
