//! Which partner calls a piece of work caused, for the audit log. Work that wants to know runs
//! inside [`recording`]; the client adds one [`CallRecord`] per call (after its retries) to
//! the recorder of the task it runs in, if there is one.

use std::sync::{Arc, Mutex};

use serde::Serialize;

tokio::task_local! {
    static RECORDER: CallRecorder;
}

/// One partner call as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub site: String,
    pub call: &'static str,
    /// `ok`, or the error class (`transient`, `conflict`, `invalid`, ...).
    pub outcome: String,
    /// The partner's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// HTTP attempts made (0: rejected locally, e.g. an open circuit).
    pub attempts: u32,
}

/// Collects the calls of one piece of work.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder(Arc<Mutex<Vec<CallRecord>>>);

impl CallRecorder {
    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Runs `work` with `recorder` collecting its partner calls.
pub async fn recording<F: std::future::Future>(recorder: CallRecorder, work: F) -> F::Output {
    RECORDER.scope(recorder, work).await
}

/// Adds a call to the current task's recorder, if any.
pub fn record(call: CallRecord) {
    let _ = RECORDER.try_with(|r| {
        if let Ok(mut v) = r.0.lock() {
            v.push(call);
        }
    });
}

/// `{"partner_calls": [...]}` for the audit log's detail, or nothing when there were none.
pub fn calls_detail(calls: &[CallRecord]) -> Option<String> {
    if calls.is_empty() {
        return None;
    }
    serde_json::to_string(&serde_json::json!({ "partner_calls": calls })).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: &'static str) -> CallRecord {
        CallRecord {
            site: "s".into(),
            call: n,
            outcome: "ok".into(),
            status: Some(200),
            attempts: 1,
        }
    }

    #[tokio::test]
    async fn records_only_inside_the_scope() {
        record(call("outside"));
        let r = CallRecorder::default();
        recording(r.clone(), async {
            record(call("a"));
            tokio::task::yield_now().await;
            record(call("b"));
        })
        .await;
        let names: Vec<_> = r.calls().iter().map(|c| c.call).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
