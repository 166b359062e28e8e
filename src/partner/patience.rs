//! How long the current piece of work may wait for a partner's limits. An IdP's request runs
//! inside [`impatient`]: its partner calls together wait at most that long in retry pauses
//! (`Retry-After` included), and each waits at most what is left for a rate-limit token; a call
//! that would wait longer fails at once with its last error, which the request answers as 503
//! with `Retry-After`. (A concurrency slot is waited for up to the call deadline: it frees as
//! soon as a call in flight ends.) So a saturated partner answers the IdP quickly instead of holding its
//! connection. Work outside such a scope (the membership engine) waits as long as each call's
//! deadline allows.

use std::sync::Mutex;
use std::time::Duration;

tokio::task_local! {
    static ALLOWANCE: Mutex<Duration>;
}

/// Runs `work` allowed to wait `max_wait` in total for partner limits.
pub async fn impatient<F: std::future::Future>(max_wait: Duration, work: F) -> F::Output {
    ALLOWANCE.scope(Mutex::new(max_wait), work).await
}

/// What the current task may still wait; unbounded outside [`impatient`].
pub fn remaining() -> Duration {
    ALLOWANCE
        .try_with(|a| *a.lock().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or(Duration::MAX)
}

/// Counts `waited` against the current task's allowance, if it has one.
pub fn spend(waited: Duration) {
    let _ = ALLOWANCE.try_with(|a| {
        let mut left = a.lock().unwrap_or_else(|p| p.into_inner());
        *left = left.saturating_sub(waited);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unbounded_outside_a_scope_and_spent_inside() {
        assert_eq!(remaining(), Duration::MAX);
        spend(Duration::from_secs(1));
        assert_eq!(remaining(), Duration::MAX);
        impatient(Duration::from_millis(500), async {
            assert_eq!(remaining(), Duration::from_millis(500));
            spend(Duration::from_millis(200));
            assert_eq!(remaining(), Duration::from_millis(300));
            spend(Duration::from_secs(1));
            assert_eq!(remaining(), Duration::ZERO);
        })
        .await;
        assert_eq!(remaining(), Duration::MAX);
    }
}
