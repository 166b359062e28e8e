//! The fence of a claim: a partner write is made only while the claim's lease has more than a
//! margin left, and abandoned when the lease nears its end unrenewed (point 4 of the engine).

use std::time::Duration;

use tokio::sync::watch;

use super::ConvergeError;
use crate::bridge::now_ms;
use crate::partner::error::PartnerError;

/// The fence of one claim: until when its lease runs, renewed by the engine while the claim is
/// worked. A partner write is started only while more than a margin is left, and abandoned
/// once the lease comes within that margin of its end without a renewal.
pub struct Fence {
    until_ms: watch::Sender<i64>,
    margin_ms: i64,
}

impl Fence {
    pub(super) fn new(until_ms: i64, margin_ms: i64) -> Fence {
        Fence {
            until_ms: watch::Sender::new(until_ms),
            margin_ms,
        }
    }

    /// A fence that never runs out, for work that holds no claim (tests, tools).
    pub fn unbounded() -> Fence {
        Fence::new(i64::MAX, 0)
    }

    /// Whether a partner write may start now.
    pub fn valid(&self) -> bool {
        now_ms().saturating_add(self.margin_ms) < *self.until_ms.borrow()
    }

    pub(super) fn extend(&self, until_ms: i64) {
        self.until_ms.send_if_modified(|u| {
            let later = until_ms > *u;
            if later {
                *u = until_ms;
            }
            later
        });
    }

    pub(super) fn lose(&self) {
        self.until_ms.send_replace(0);
    }

    /// Runs one partner write under the fence: refused when the claim is no longer safe, and
    /// abandoned when it stops being safe while the write is in flight.
    pub async fn guard<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, PartnerError>>,
    ) -> Result<T, ConvergeError> {
        if !self.valid() {
            return Err(ConvergeError::ClaimLost);
        }
        let mut until = self.until_ms.subscribe();
        let margin = self.margin_ms;
        let expiring = async move {
            loop {
                let end = *until.borrow_and_update();
                let left = end.saturating_sub(margin).saturating_sub(now_ms());
                if left <= 0 {
                    return;
                }
                let wait = Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = until.changed() => {
                        if changed.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            }
        };
        tokio::select! {
            r = write => r.map_err(ConvergeError::Partner),
            () = expiring => Err(ConvergeError::ClaimLost),
        }
    }
}

/// How close to its end a claim's lease stops partner writes: one HTTP attempt's timeout plus
/// 2 s for the clocks of replicas (the store decides who holds a row by them), so a write cut
/// off at the margin has ended before another worker can claim the row; at most half the lease.
pub(super) fn fence_margin_ms(lease_ms: u64, request_timeout_ms: u64) -> i64 {
    let margin = request_timeout_ms.saturating_add(2_000).min(lease_ms / 2);
    i64::try_from(margin).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
