//! Which partner calls a piece of work caused, for the audit log. Work that wants to know runs
//! inside [`recording`]; the client adds one [`CallRecord`] per call (after its retries) to
//! the recorder of the task it runs in, if there is one. The bridge adds [`note`]s there too
//! (what a request skipped), which the audit entry shows beside the calls.

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

/// Collects the calls and notes of one piece of work.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder {
    calls: Arc<Mutex<Vec<CallRecord>>>,
    notes: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
}

impl CallRecorder {
    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The audit detail: `{"partner_calls": [...]}` (when there were calls) and every note
    /// under its key; nothing when there is neither.
    pub fn detail(&self) -> Option<String> {
        let mut detail = self.notes.lock().map(|n| n.clone()).unwrap_or_default();
        let calls = self.calls();
        if !calls.is_empty() {
            detail.insert("partner_calls".into(), serde_json::json!(calls));
        }
        if detail.is_empty() {
            return None;
        }
        serde_json::to_string(&detail).ok()
    }
}

/// Runs `work` with `recorder` collecting its partner calls.
pub async fn recording<F: std::future::Future>(recorder: CallRecorder, work: F) -> F::Output {
    RECORDER.scope(recorder, work).await
}

/// Adds a call to the current task's recorder, if any.
pub fn record(call: CallRecord) {
    let _ = RECORDER.try_with(|r| {
        if let Ok(mut v) = r.calls.lock() {
            v.push(call);
        }
    });
}

/// Appends `item` to the list noted under `key` in the current task's recorder, if any (a
/// Bulk request notes once per operation).
pub fn note(key: &str, item: serde_json::Value) {
    let _ = RECORDER.try_with(|r| {
        if let Ok(mut notes) = r.notes.lock() {
            let entry = notes
                .entry(key.to_owned())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let Some(list) = entry.as_array_mut() {
                list.push(item);
            }
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

    #[tokio::test]
    async fn notes_join_the_calls_in_the_detail() {
        note("outside", serde_json::json!(1));
        let r = CallRecorder::default();
        assert_eq!(r.detail(), None);
        recording(r.clone(), async {
            note("skipped", serde_json::json!({"n": 1}));
            note("skipped", serde_json::json!({"n": 2}));
        })
        .await;
        assert_eq!(
            r.detail().as_deref(),
            Some(r#"{"skipped":[{"n":1},{"n":2}]}"#)
        );
        recording(r.clone(), async { record(call("a")) }).await;
        let detail: serde_json::Value = serde_json::from_str(&r.detail().unwrap()).unwrap();
        assert_eq!(detail["partner_calls"][0]["call"], "a");
        assert_eq!(detail["skipped"].as_array().map(Vec::len), Some(2));
        assert!(detail.get("outside").is_none());
    }
}
