//! What the HTTP layer asks of the bridge besides SCIM resources: the readiness checks, the
//! audit log, and running an IdP's write with its partner calls recorded. The HTTP layer sees
//! the store and the partner client only through these.

use std::future::Future;
use std::time::Duration;

use super::Bridge;
use crate::partner::patience::impatient;
use crate::partner::record::recording;
use crate::store::{audit_entry_json, StoreError};

pub use crate::partner::record::CallRecorder;
pub use crate::store::{AuditEntry, AuditQuery, OutboxHealth};

impl Bridge {
    /// Whether the store answers a trivial query.
    pub async fn ping_store(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Whether every migration this version needs is applied.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        self.store.migrations_applied().await
    }

    /// The outbox's health at `now_ms`; stuck after failing for `stuck_after`.
    pub async fn outbox_health(
        &self,
        now_ms: i64,
        stuck_after: Option<Duration>,
    ) -> Result<OutboxHealth, StoreError> {
        self.store.outbox_health(now_ms, stuck_after).await
    }

    /// Records one audit entry (also logged; a store failure is logged, never fatal).
    pub async fn record_audit(&self, entry: &AuditEntry) {
        self.store.record_audit(entry).await;
    }

    /// The audit entries matching `q`, newest first, as their JSON documents.
    pub async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<serde_json::Value>, StoreError> {
        let entries = self.store.search_audit(q).await?;
        Ok(entries.iter().map(audit_entry_json).collect())
    }

    /// Runs an IdP's request: the partner calls it makes go to `recorder`, and it waits for
    /// partner limits at most `request_partner_wait_ms` (then answers 503 + Retry-After).
    pub async fn answering<F: Future>(&self, recorder: CallRecorder, request: F) -> F::Output {
        let patience = Duration::from_millis(self.options.request_partner_wait_ms);
        recording(recorder, impatient(patience, request)).await
    }
}
