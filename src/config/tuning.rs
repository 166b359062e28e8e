//! The bridge's tunables (`[bridge]`): the membership engine's timing, lookups, reconciliation
//! and the partner client's settings. They live with the configuration, which reads them; the
//! bridge takes them from here.

use serde::{Deserialize, Serialize};

use crate::partner::client::ClientOptions;

/// Tunables of the bridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeOptions {
    /// How long a request waits for its membership work before answering (DESIGN.md 4.3);
    /// the work goes on in the background after the answer.
    pub wait_deadline_ms: u64,
    /// How long an IdP's write may wait in total for the partner's rate limits and retry
    /// pauses; past it the request answers 503 with `Retry-After` at once instead of holding
    /// the connection (the membership engine's own calls wait up to their call deadline).
    pub request_partner_wait_ms: u64,
    /// Worker tasks of the membership engine in this process.
    pub workers: usize,
    /// Outbox rows each worker claims at once.
    pub claim_batch: u32,
    /// How long a claim lasts unless renewed. A worker renews its claims every fifth of it
    /// while it works and stops a partner write before its claim could run out, so a killed
    /// replica's rows are taken over within this time.
    pub lease_ms: u64,
    /// How often idle workers look for due work (retries, other replicas' marks).
    pub poll_ms: u64,
    /// Delay before retrying an outbox row whose convergence failed: doubles per failed
    /// attempt from `retry_base_ms` up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// On a `userName eq` filter that misses, look the email up at the partner and import the
    /// user on sight.
    pub import_on_lookup: bool,
    /// Longest a lookup waits for that partner read; past it the lookup answers from the
    /// store (a later POST adopts the partner user anyway), so reads never queue behind a
    /// saturated partner.
    pub import_timeout_ms: u64,
    /// A marked user is worked once it has had no new mark for this long (more changes to
    /// the same user usually follow within moments, e.g. a user added to several groups by
    /// concurrent PATCHes, and one partner write then covers them all)...
    pub coalesce_ms: u64,
    /// ...or once its first unworked mark is this old: the longest a change waits while its
    /// tenant's burst goes on. It must outlast an initial sync's PATCH phase, or the users
    /// marked early are written, then marked again (S1 at 10,000 users: 2 s gave 1.09x the
    /// lower bound, 30 s gives 1.00x).
    pub coalesce_max_ms: u64,
    /// Seconds between periodic reconciliations of every tenant (0: off). Each run repairs
    /// what drifted, as `scim-bridge reconcile --apply` does.
    pub reconcile_interval_s: u64,
    /// Seconds between checks of every partner site's API key (one cheap read per site; also
    /// at start). A refusal is logged, shown by `status`, `/readyz` and
    /// `scim_bridge_partner_credentials_ok`, and parks the site's work; a check that passes
    /// resumes it. 0: only at start (parked rows are then tried again after `retry_max_ms`).
    pub credential_check_interval_s: u64,
    /// Seconds an outbox row may keep failing (since it was marked) before `/readyz` reports
    /// the outbox stuck (0: never).
    pub outbox_stuck_after_s: u64,
    /// How long after a group rename began the engine leaves the group's partner names to it
    /// before finishing or undoing a rename that half-happened: longer than a rename flow runs
    /// (its partner calls and undo), so a repair never races one.
    pub rename_settle_ms: u64,
    /// Partner client settings, shared by every site.
    pub partner: ClientOptions,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            wait_deadline_ms: 20_000,
            request_partner_wait_ms: 1_000,
            workers: 4,
            claim_batch: 16,
            lease_ms: 30_000,
            poll_ms: 250,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            import_on_lookup: true,
            import_timeout_ms: 500,
            coalesce_ms: 200,
            coalesce_max_ms: 30_000,
            reconcile_interval_s: 3600,
            credential_check_interval_s: 300,
            outbox_stuck_after_s: 900,
            rename_settle_ms: 120_000,
            partner: ClientOptions::default(),
        }
    }
}
