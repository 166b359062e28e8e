use std::sync::Arc;

use super::*;
use crate::partner::error::PartnerErrorKind;

fn transient() -> PartnerError {
    PartnerError::local(
        PartnerErrorKind::Transient,
        crate::partner::CallKind::UpdateUser,
        "s",
        "x",
    )
}

#[tokio::test]
async fn a_fence_refuses_writes_near_its_end_and_abandons_one_in_flight() {
    // Lease ends in 300 ms, margin 200 ms: a write may start, and is cut after ~100 ms.
    let fence = Fence::new(now_ms() + 300, 200);
    assert!(fence.valid());
    let started = std::time::Instant::now();
    let r = fence
        .guard(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, PartnerError>(())
        })
        .await;
    assert!(matches!(r, Err(ConvergeError::ClaimLost)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Past the margin, nothing starts.
    let r = fence.guard(async { Ok::<_, PartnerError>(()) }).await;
    assert!(matches!(r, Err(ConvergeError::ClaimLost)));
    // A lost claim stops at once.
    let fence = Fence::new(now_ms() + 60_000, 200);
    fence.lose();
    assert!(!fence.valid());
}

#[tokio::test]
async fn a_renewed_fence_lets_a_long_write_finish_and_passes_errors_through() {
    let fence = Arc::new(Fence::new(now_ms() + 300, 200));
    let renew = {
        let fence = fence.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                fence.extend(now_ms() + 300);
            }
        })
    };
    let r = fence
        .guard(async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, PartnerError>(7)
        })
        .await;
    assert!(matches!(r, Ok(7)), "{r:?}");
    let r = fence.guard(async { Err::<(), _>(transient()) }).await;
    assert!(matches!(r, Err(ConvergeError::Partner(_))));
    renew.abort();
}
