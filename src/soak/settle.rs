//! The end of a soak run: waiting for the partner to agree with the workload, and for the
//! outbox to drain.

use std::time::{Duration, Instant};

use crate::partner::emulator::Emulator;

use super::report::differences;
use super::worker::{ModelUser, Names};
use super::CONVERGE_LIMIT;

/// Waits (up to [`CONVERGE_LIMIT`], not at all when the bridge died) for the partner to agree
/// with the users the workload left; returns the differences left and the seconds it took.
pub(super) async fn converge(
    emulator: &Emulator,
    names: &Names,
    users: &[ModelUser],
    bridge_alive: bool,
) -> (Vec<String>, f64) {
    let converge_start = Instant::now();
    let mut diffs;
    loop {
        diffs = differences(emulator, names, users);
        if diffs.is_empty() || converge_start.elapsed() > CONVERGE_LIMIT || !bridge_alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (diffs, converge_start.elapsed().as_secs_f64())
}

/// Waits (up to 60 s) for the outbox of the store at `store_url` to drain; returns the depth
/// last read. Only for a store this run has to itself: it reads the whole outbox.
pub(super) async fn drain_outbox(store_url: &str) -> anyhow::Result<u64> {
    let store = crate::store::Store::connect(store_url)
        .await
        .map_err(|e| anyhow::anyhow!("store: {e}"))?;
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let depth = store
            .outbox_stats()
            .await
            .map_err(|e| anyhow::anyhow!("outbox: {e}"))?
            .depth;
        if depth == 0 || Instant::now() > limit {
            return Ok(depth);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
