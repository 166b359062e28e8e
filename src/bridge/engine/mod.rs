//! The membership engine (DESIGN.md section 4). Membership changes are level-triggered:
//!
//! 1. A group write updates `memberships` and marks each affected (site, user) in `outbox`, in
//!    one transaction (`Store::change_memberships`).
//! 2. Workers claim due rows and converge each (site, user): from the store at that moment,
//!    the managed groups the user must have; from the partner, the user's current groups; the
//!    write is the union of the desired managed groups and the unmanaged groups it already has.
//!    Many marks of one user collapse into one read and at most one write.
//! 3. A write that stands alone (no other group write of its tenant in flight in this process)
//!    marks its rows due at once and waits for them up to a deadline; leftovers stay in the
//!    store and are worked after a restart. A write during a burst (an IdP's concurrent
//!    PATCHes, e.g. Entra's initial sync) answers once its marks are stored: its rows wait
//!    until the tenant's burst pauses for the quiet time (or they are `coalesce_max_ms` old),
//!    so a user touched by many PATCHes of the burst is written once, not once per PATCH.
//! 4. A claim is a fenced lease on the row, so one (site, user) is worked by one worker at a
//!    time, also across replicas (`FOR UPDATE SKIP LOCKED` on PostgreSQL). Each claim has a
//!    token that completing, failing and parking the row need; the process renews the leases
//!    of the claims it works on every fifth of `lease_ms` (at most every 2 s), and a partner
//!    write is made only while its claim's lease has more than a margin left, and abandoned
//!    when the lease nears its end unrenewed ([`Fence`]). So never two partner writes are in
//!    flight for one (site, user). A killed replica's rows are taken over in seconds: on
//!    PostgreSQL each worker holds a liveness lock that dies with its connection, and claims
//!    unrenewed for two renewal periods plus the fence margin (so no write the dead worker
//!    started can still be in flight) whose worker's lock is free are released
//!    (`store::liveness`); a worker that loses its own lock gives up its claims first. On
//!    SQLite (one process) a start releases every claim.
//! 5. A deleted user is a tombstone (its partner email) until every site has converged: the
//!    convergence of a (site, user) without a user row removes that partner account, or strips
//!    its managed groups when the account is protected (`Tenant::protects`).
//!
//! The same convergence also repairs the user's existence and names at the site, so a site that
//! failed during a partner-first user write is healed by marking it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{now_ms, BridgeOptions, Tenant};
use crate::partner::error::PartnerError;
use crate::partner::record::{calls_detail, recording, CallRecorder};
pub(crate) mod converge;
mod fence;

pub use converge::converge_user;
use fence::fence_margin_ms;
pub use fence::Fence;

use crate::store::{
    AuditEntry, Backend, OutboxItem, OutboxMark, Quiet, Store, StoreError, WorkerLock,
};

/// Why converging one (site, user) failed; the row is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error("partner: {0}")]
    Partner(#[from] PartnerError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The claim's lease ran out (or nearly) unrenewed: another worker may hold the row, so
    /// this one writes nothing more and records no outcome.
    #[error("the claim on the outbox row was lost")]
    ClaimLost,
    /// Something in flight elsewhere decides first (an email change holding the user's new
    /// email): the row is looked at again later.
    #[error("{0}")]
    Waiting(&'static str),
}

/// A claim this process works on: its row and token.
type ClaimKey = (String, String, String, String);

fn claim_key(item: &OutboxItem) -> ClaimKey {
    (
        item.tenant.clone(),
        item.site.clone(),
        item.user_id.clone(),
        item.token.clone(),
    )
}

/// What converging did, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converged {
    /// The partner already matched.
    Unchanged,
    Created,
    Updated,
    Deleted,
    /// Nothing to do: the user is gone (and its deletion converged), or has no email address.
    Skipped,
    /// A protected account the IdP deleted or deactivated: its managed groups were removed
    /// and the account kept.
    Stripped,
    /// This process does not serve the row's site (another replica's configuration may):
    /// the row stays for one that does.
    NotServed,
}

/// The engine: worker tasks plus the wait primitive. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tenants: Arc<HashMap<String, Arc<Tenant>>>,
    options: Arc<BridgeOptions>,
    worker_id: String,
    /// Wakes idle workers when new marks are written in this process.
    work: tokio::sync::Notify,
    /// Counts completed items; waiters re-check their marks when it moves.
    done: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    /// Stops the renewer, after the workers: claims are renewed until their work ends.
    keeper_stop: watch::Sender<bool>,
    /// The workers and the claim renewer, set once at start, taken by `shutdown`.
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
    keeper: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Whether this worker may claim rows: always on SQLite; on PostgreSQL while it holds its
    /// liveness lock (see `store::liveness`).
    live: AtomicBool,
    writes: AtomicU64,
    /// The claims this process works on, renewed by the renewer task.
    claims: std::sync::Mutex<HashMap<ClaimKey, Arc<Fence>>>,
    /// Per tenant: membership writes in flight in this process, and when the last write of a
    /// burst marked its rows.
    activity: HashMap<String, Activity>,
}

#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    burst_ms: AtomicI64,
}

/// How a membership write's marks are worked (see the module documentation, point 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The write stands alone: its rows are due at once and the request waits for them.
    Now,
    /// Other writes of the tenant are in flight: the rows coalesce with theirs, and the
    /// request answers once they are stored.
    Coalesce,
}

/// A membership write in flight (see [`Engine::writing`]); counted until dropped.
pub struct Writing {
    inner: Arc<Inner>,
    tenant: String,
}

impl Writing {
    /// `Now` when no other membership write of the tenant is in flight in this process and
    /// none of a burst marked rows within the quiet time (a burst, once begun, keeps
    /// coalescing through the moments its IdP connections happen to be between requests).
    pub fn pace(&self) -> Pace {
        let quiet = self.inner.options.coalesce_ms as i64;
        match self.inner.activity.get(&self.tenant) {
            Some(a)
                if a.in_flight.load(Ordering::SeqCst) > 1
                    || now_ms() - a.burst_ms.load(Ordering::SeqCst) < quiet =>
            {
                Pace::Coalesce
            }
            _ => Pace::Now,
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some(a) = self.inner.activity.get(&self.tenant) {
            a.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Engine {
    /// Starts `options.workers` worker tasks.
    pub fn start(
        store: Store,
        tenants: Arc<HashMap<String, Arc<Tenant>>>,
        options: Arc<BridgeOptions>,
    ) -> Engine {
        let (done, _) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let (keeper_stop, _) = watch::channel(false);
        let live = store.backend() != Backend::Postgres;
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                tenants: tenants.clone(),
                options: options.clone(),
                worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4()),
                work: tokio::sync::Notify::new(),
                done,
                stop,
                keeper_stop,
                handles: std::sync::Mutex::new(Vec::new()),
                keeper: std::sync::Mutex::new(None),
                live: AtomicBool::new(live),
                writes: AtomicU64::new(0),
                claims: std::sync::Mutex::new(HashMap::new()),
                activity: tenants
                    .keys()
                    .map(|t| (t.clone(), Activity::default()))
                    .collect(),
            }),
        };
        let mut handles = Vec::new();
        for n in 0..options.workers.max(1) {
            let e = engine.clone();
            handles.push(tokio::spawn(async move { e.worker(n).await }));
        }
        let e = engine.clone();
        let keeper = tokio::spawn(async move { e.renewer().await });
        *lock(&engine.inner.handles) = handles;
        *lock(&engine.inner.keeper) = Some(keeper);
        engine
    }

    /// Wakes the workers: new marks were written.
    pub fn kick(&self) {
        self.inner.work.notify_waiters();
    }

    /// Counts a membership write of `tenant` as in flight until the guard is dropped; take it
    /// before reading what the write changes, hold it until the answer.
    pub fn writing(&self, tenant: &str) -> Writing {
        if let Some(a) = self.inner.activity.get(tenant) {
            a.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        Writing {
            inner: self.inner.clone(),
            tenant: tenant.to_owned(),
        }
    }

    /// After marks of `tenant` were stored at this pace: a write among others extends the
    /// tenant's burst (one that stands alone works its marks itself, see [`Engine::settle`]).
    pub fn marked(&self, tenant: &str, pace: Pace) {
        if pace == Pace::Coalesce {
            if let Some(a) = self.inner.activity.get(tenant) {
                a.burst_ms.store(now_ms(), Ordering::SeqCst);
            }
        }
    }

    /// For a write that stands alone: claims the rows of `marks` no worker holds, whatever
    /// their quiet time, and works them at once in the background (at most a claim batch per
    /// worker at a time); then waits for all of `marks` up to `deadline`, as [`Engine::wait`].
    /// Rows a worker holds are left to it (and claimed here on a later look if they come back
    /// re-marked).
    pub async fn settle(
        &self,
        marks: &[OutboxMark],
        deadline: Duration,
    ) -> Result<bool, StoreError> {
        if marks.is_empty() {
            return Ok(true);
        }
        let lease = Duration::from_millis(self.inner.options.lease_ms);
        let claimed_at = now_ms();
        let items = if self.live() {
            self.inner
                .store
                .claim_outbox_marks(&self.inner.worker_id, marks, lease, claimed_at)
                .await?
        } else {
            Vec::new()
        };
        // A partner that asked for a pause will not take these writes soon: the request
        // answers within half of what an IdP's write may wait for the partner (its answer
        // stays under that bound); the work goes on.
        let paused = marks.iter().any(|m| {
            self.inner
                .tenants
                .get(&m.tenant)
                .and_then(|t| t.site(&m.site))
                .is_some_and(|s| s.client.paused())
        });
        let deadline = if paused {
            deadline.min(Duration::from_millis(
                self.inner.options.request_partner_wait_ms / 2,
            ))
        } else {
            deadline
        };
        if !items.is_empty() {
            let limit =
                self.inner.options.workers.max(1) * self.inner.options.claim_batch.max(1) as usize;
            let items = self.hold(items, claimed_at);
            let engine = self.clone();
            // Detached: the work outlives a request that stops waiting at its deadline.
            tokio::spawn(async move {
                futures::stream::iter(items)
                    .for_each_concurrent(limit, |(item, fence)| {
                        let engine = engine.clone();
                        async move { engine.work_item(item, fence).await }
                    })
                    .await;
            });
        }
        self.wait(marks, deadline).await
    }

    /// [`Engine::settle`] for a request that answers with the outcome of its marks: returns as
    /// soon as every mark is done or has failed since the call (or at `deadline`), with the
    /// marks not done and, for those that failed, their last error.
    pub async fn settle_outcome(
        &self,
        marks: &[OutboxMark],
        deadline: Duration,
    ) -> Result<Vec<(OutboxMark, Option<String>)>, StoreError> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        let before: HashMap<OutboxMark, i32> = self
            .inner
            .store
            .outbox_outcomes(marks)
            .await?
            .into_iter()
            .map(|(m, attempts, _)| (m, attempts))
            .collect();
        let end = tokio::time::Instant::now() + deadline;
        let mut done = self.inner.done.subscribe();
        self.settle(marks, Duration::ZERO).await?;
        loop {
            let left = self.inner.store.outbox_outcomes(marks).await?;
            let failed =
                |m: &OutboxMark, attempts: i32| attempts > before.get(m).copied().unwrap_or(0);
            let now = tokio::time::Instant::now();
            if left.iter().all(|(m, attempts, _)| failed(m, *attempts)) || now >= end {
                return Ok(left
                    .into_iter()
                    .map(|(m, attempts, error)| {
                        let error = if failed(&m, attempts) { error } else { None };
                        (m, error)
                    })
                    .collect());
            }
            let slice = (end - now).min(Duration::from_millis(self.inner.options.poll_ms.max(10)));
            let _ = tokio::time::timeout(slice, done.changed()).await;
        }
    }

    /// Claims the user's outbox rows at `sites` for a request that writes to the partner
    /// itself (an email change): one writer per (site, user), the request's writes under the
    /// claims' fences as a convergence's are. Waits up to `wait` for rows a worker holds;
    /// `None` when they stay held (the caller answers 503 with `Retry-After`). Give the claims
    /// back with [`Engine::release_claims`]: the rows stay marked, so a worker converges them
    /// with what the request committed.
    pub async fn claim_user(
        &self,
        tenant: &str,
        user_id: &str,
        sites: &[String],
        wait: Duration,
    ) -> Result<Option<Vec<(OutboxItem, Arc<Fence>)>>, StoreError> {
        let store = &self.inner.store;
        let lease = Duration::from_millis(self.inner.options.lease_ms);
        let end = tokio::time::Instant::now() + wait;
        let marks = store
            .mark_outbox(tenant, sites, &[user_id.to_owned()])
            .await?;
        let mut held: Vec<(OutboxItem, Arc<Fence>)> = Vec::new();
        loop {
            let missing: Vec<OutboxMark> = marks
                .iter()
                .filter(|m| !held.iter().any(|(i, _)| i.site == m.site))
                .cloned()
                .collect();
            let claimed_at = now_ms();
            if self.live() {
                let items = store
                    .claim_outbox_marks(&self.inner.worker_id, &missing, lease, claimed_at)
                    .await?;
                held.extend(self.hold(items, claimed_at));
            }
            if held.len() >= marks.len() {
                return Ok(Some(held));
            }
            if tokio::time::Instant::now() >= end {
                self.release_claims(held).await;
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Gives back claims taken by [`Engine::claim_user`] and wakes the workers.
    pub async fn release_claims(&self, held: Vec<(OutboxItem, Arc<Fence>)>) {
        for (item, _) in held {
            if let Err(e) = self.inner.store.release_outbox(&item).await {
                tracing::warn!(error = %e, "cannot give an outbox claim back; its lease runs out");
            }
            self.release(&item);
        }
        self.kick();
    }

    /// Tenants whose last burst mark is more recent than the quiet time.
    fn busy_tenants(&self, now: i64) -> Vec<String> {
        let quiet = self.inner.options.coalesce_ms as i64;
        self.inner
            .activity
            .iter()
            .filter(|(_, a)| now - a.burst_ms.load(Ordering::SeqCst) < quiet)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Partner writes made by the engine so far (for tests and benchmarks).
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Waits until every mark is done or the deadline passes; true when all are done.
    pub async fn wait(&self, marks: &[OutboxMark], deadline: Duration) -> Result<bool, StoreError> {
        if marks.is_empty() {
            return Ok(true);
        }
        self.kick();
        let end = tokio::time::Instant::now() + deadline;
        let mut done = self.inner.done.subscribe();
        loop {
            if self.inner.store.outbox_pending(marks).await? == 0 {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(false);
            }
            let slice = (end - now).min(Duration::from_millis(self.inner.options.poll_ms.max(10)));
            let _ = tokio::time::timeout(slice, done.changed()).await;
        }
    }

    /// Stops the workers after their current items.
    pub async fn shutdown(&self) {
        // `send_replace`, not `send`: `send` stores nothing while no worker has subscribed yet
        // (a worker spawned but not yet polled), and such a worker would then never stop.
        self.inner.stop.send_replace(true);
        self.inner.work.notify_waiters();
        let handles = std::mem::take(&mut *lock(&self.inner.handles));
        for h in handles {
            let _ = h.await;
        }
        self.inner.keeper_stop.send_replace(true);
        let keeper = lock(&self.inner.keeper).take();
        if let Some(k) = keeper {
            let _ = k.await;
        }
    }

    /// Whether this worker may claim rows now (see `Inner::live`).
    fn live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }

    async fn worker(self, n: usize) {
        let mut stop = self.inner.stop.subscribe();
        let poll = Duration::from_millis(self.inner.options.poll_ms.max(10));
        tracing::debug!(worker = n, "membership worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            let worked = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "membership worker: store error; backing off");
                    0
                }
            };
            if worked == 0 {
                let notified = self.inner.work.notified();
                let quiet = Duration::from_millis(self.inner.options.coalesce_ms);
                tokio::select! {
                    // Marks due at once (a write that stands alone): claim them now.
                    () = notified => {},
                    // Marked rows may be waiting out their quiet time: look again soon.
                    () = tokio::time::sleep(if quiet.is_zero() { poll } else { poll.min(quiet) }) => {},
                    _ = stop.changed() => {},
                }
            }
        }
        tracing::debug!(worker = n, "membership worker stopped");
    }

    /// Claims one batch and works it; returns how many items were worked.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        if !self.live() {
            return Ok(0);
        }
        let lease = Duration::from_millis(self.inner.options.lease_ms);
        let now = now_ms();
        let busy = self.busy_tenants(now);
        let served: Vec<String> = self.inner.tenants.keys().cloned().collect();
        let items = self
            .inner
            .store
            .claim_quiet_outbox(
                &self.inner.worker_id,
                self.inner.options.claim_batch.max(1),
                lease,
                now,
                &Quiet {
                    quiet: Duration::from_millis(self.inner.options.coalesce_ms),
                    max_delay: Duration::from_millis(self.inner.options.coalesce_max_ms),
                    busy: &busy,
                    served: &served,
                },
            )
            .await?;
        let n = items.len();
        if n == 0 {
            return Ok(0);
        }
        let mut set = tokio::task::JoinSet::new();
        for (item, fence) in self.hold(items, now) {
            let e = self.clone();
            set.spawn(async move { e.work_item(item, fence).await });
        }
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// Registers claims made at `claimed_at_ms` for renewal; each comes with its fence.
    fn hold(&self, items: Vec<OutboxItem>, claimed_at_ms: i64) -> Vec<(OutboxItem, Arc<Fence>)> {
        let lease = self.inner.options.lease_ms as i64;
        let until = claimed_at_ms.saturating_add(lease);
        let margin = fence_margin_ms(
            self.inner.options.lease_ms,
            self.inner.options.partner.request_timeout_ms,
        );
        let mut claims = self.inner.claims.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the claims lock, which `keep_alive` takes after it clears `live` to
        // lose every fence: a claim made while the liveness lock was being lost is never
        // given a valid fence.
        let until = if self.live() { until } else { 0 };
        items
            .into_iter()
            .map(|item| {
                let fence = Arc::new(Fence::new(until, margin));
                claims.insert(claim_key(&item), fence.clone());
                (item, fence)
            })
            .collect()
    }

    fn release(&self, item: &OutboxItem) {
        self.inner
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&claim_key(item));
    }

    /// Renews the leases of the claims this process works on, every fifth of a lease; a claim
    /// the store no longer has under its token is lost, and its fence stops its writes.
    async fn renewer(self) {
        let mut stop = self.inner.keeper_stop.subscribe();
        let lease = self.inner.options.lease_ms.max(50);
        let every = renew_every(lease);
        let mut lock: Option<WorkerLock> = None;
        loop {
            if self.inner.store.backend() == Backend::Postgres {
                self.keep_alive(&mut lock, every).await;
            }
            if self.inner.live.load(Ordering::SeqCst) {
                self.renew(lease).await;
                self.take_over_dead(lease, every).await;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        // Dropping the lock closes its connection: this worker's claims are all released by
        // now (the workers stopped first), so nothing is left for others to take over.
        drop(lock);
    }

    /// PostgreSQL: holds this worker's liveness lock ([`WorkerLock`]). A lock whose connection
    /// broke may have been freed by the server, so other workers may take this worker's claims
    /// soon: every claim in hand is given up at once (its fence stops its writes) and nothing
    /// is claimed until the lock is held again.
    async fn keep_alive(&self, lock: &mut Option<WorkerLock>, every: Duration) {
        if let Some(held) = lock.as_mut() {
            match tokio::time::timeout(every, held.check()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the worker's liveness connection broke; giving up its outbox claims");
                }
                Err(_) => {
                    tracing::warn!("the worker's liveness connection does not answer; giving up its outbox claims");
                }
            }
            *lock = None;
            self.inner.live.store(false, Ordering::SeqCst);
            let held: Vec<Arc<Fence>> = self
                .inner
                .claims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for fence in held {
                fence.lose();
            }
        }
        match tokio::time::timeout(
            every,
            self.inner.store.hold_worker_lock(&self.inner.worker_id),
        )
        .await
        {
            Ok(Ok(held)) => {
                *lock = held;
                self.inner.live.store(true, Ordering::SeqCst);
                self.inner.work.notify_waiters();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot take the worker's liveness lock; claiming nothing until it is held")
            }
            Err(_) => tracing::warn!(
                "taking the worker's liveness lock timed out; claiming nothing until it is held"
            ),
        }
    }

    /// Renews the leases of the claims in hand; a claim the store no longer has under its token
    /// is lost, and its fence stops its writes.
    async fn renew(&self, lease: u64) {
        let held: Vec<(ClaimKey, Arc<Fence>)> = self
            .inner
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        if held.is_empty() {
            return;
        }
        let tokens: Vec<String> = held.iter().map(|(k, _)| k.3.clone()).collect();
        let until = now_ms().saturating_add(lease as i64);
        match self
            .inner
            .store
            .renew_outbox_claims(&self.inner.worker_id, &tokens, until)
            .await
        {
            Ok(rows) => {
                let renewed: HashSet<ClaimKey> = rows.into_iter().collect();
                for (key, fence) in held {
                    if renewed.contains(&key) {
                        fence.extend(until);
                    } else {
                        fence.lose();
                    }
                }
            }
            Err(e) => {
                // The leases run down; the fences stop the writes before they run out.
                tracing::warn!(error = %e, claims = held.len(), "cannot renew outbox claims");
            }
        }
    }

    /// Releases the claims of workers that are gone (PostgreSQL; see `store::liveness`): their
    /// liveness lock free, and not renewed for two renewal periods plus the fence margin, the
    /// longest a write the dead worker started may still be in flight.
    async fn take_over_dead(&self, lease: u64, every: Duration) {
        let margin = fence_margin_ms(lease, self.inner.options.partner.request_timeout_ms);
        let stale = i64::try_from(every.as_millis().saturating_mul(2))
            .unwrap_or(i64::MAX)
            .saturating_add(margin);
        match self
            .inner
            .store
            .release_dead_claims(
                &self.inner.worker_id,
                now_ms().saturating_sub(stale),
                lease as i64,
            )
            .await
        {
            Ok(dead) if !dead.is_empty() => {
                for (worker, claims) in dead {
                    tracing::info!(%worker, claims, "released the outbox claims of a worker that is gone");
                }
                self.inner.work.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for the claims of dead workers"),
        }
    }

    async fn work_item(&self, item: OutboxItem, fence: Arc<Fence>) {
        // Released however the work ends (a panic included): a claim left registered would be
        // renewed for as long as the process lives and its row never taken over.
        struct Held<'a>(&'a Engine, &'a OutboxItem);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.release(self.1);
                self.0.inner.done.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        let _held = Held(self, &item);
        self.work_fenced(&item, &fence).await;
    }

    async fn work_fenced(&self, item: &OutboxItem, fence: &Fence) {
        let span = tracing::info_span!(
            "converge",
            tenant = %item.tenant,
            site = %item.site,
            user = %item.user_id,
            generation = item.generation,
        );
        let recorder = CallRecorder::default();
        let result = recording(recorder.clone(), self.converge(item, fence))
            .instrument(span.clone())
            .await;
        let store = &self.inner.store;
        let calls = recorder.calls();
        if !calls.is_empty() {
            // The engine's own partner calls, in the audit log beside the requests that
            // caused them (same tenant and user id).
            let entry = AuditEntry {
                at_ms: now_ms(),
                tenant: item.tenant.clone(),
                credential: "membership-engine".into(),
                client: String::new(),
                request_id: String::new(),
                operation: "CONVERGE".into(),
                resource_type: "Users".into(),
                resource_id: Some(item.user_id.clone()),
                status: if result.is_ok() { 200 } else { 503 },
                detail: calls_detail(&calls),
            };
            store.record_audit(&entry).await;
        }
        let outcome = match result {
            Ok(Converged::NotServed) => {
                // Never completed here: that would drop work a replica serving the site
                // must still do. It stays parked, reported, not counted as failing.
                let opts = &self.inner.options;
                tracing::warn!(parent: &span, "outbox row of a site this process does not serve; parked for one that does");
                store
                    .park_outbox(
                        item,
                        "the site is not configured in the process that claimed this row",
                        now_ms() + opts.retry_max_ms as i64,
                    )
                    .await
            }
            Err(ConvergeError::ClaimLost) => {
                tracing::warn!(parent: &span, "the claim's lease ran out before the work was done; another worker takes the row over");
                Ok(())
            }
            Ok(c) => {
                tracing::debug!(parent: &span, outcome = ?c, "converged");
                store.complete_outbox(item).await.map(|_| ())
            }
            Err(e) => {
                let opts = &self.inner.options;
                let delay = backoff(item.attempts, opts.retry_base_ms, opts.retry_max_ms);
                tracing::warn!(
                    parent: &span,
                    error = %e,
                    attempts = item.attempts + 1,
                    retry_in_ms = delay.as_millis() as u64,
                    "converging failed; will retry"
                );
                store
                    .fail_outbox(item, &e.to_string(), now_ms() + delay.as_millis() as i64)
                    .await
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(parent: &span, error = %e, "cannot record the outcome; the lease will expire");
        }
    }

    /// Brings one (site, user) in line with the store, its partner writes under `fence`.
    pub async fn converge(
        &self,
        item: &OutboxItem,
        fence: &Fence,
    ) -> Result<Converged, ConvergeError> {
        let Some(tenant) = self.inner.tenants.get(&item.tenant) else {
            return Ok(Converged::NotServed);
        };
        let Some(site) = tenant.site(&item.site) else {
            return Ok(Converged::NotServed);
        };
        let result = converge_user(
            &self.inner.store,
            tenant,
            site,
            &item.user_id,
            &self.inner.writes,
            fence,
            self.inner.options.rename_settle_ms as i64,
        )
        .await;
        match result {
            // In dry run the partner never saw the bridge's earlier (test-mode) writes, so it
            // refuses what builds on them (a group it does not have, a user it never created).
            // That refusal is the dry run's answer; retrying cannot change it.
            Err(ConvergeError::Partner(e)) if tenant.dry_run() && !e.kind.retry_later() => {
                tracing::info!(error = %e, "dry run: the partner would refuse this write");
                Ok(Converged::Skipped)
            }
            other => other,
        }
    }
}

/// How often the renewer renews the claims in hand (a fifth of the lease, at most 2 s): other
/// workers take a dead worker's claims over once they went unrenewed for three of these.
fn renew_every(lease_ms: u64) -> Duration {
    Duration::from_millis((lease_ms / 5).clamp(10, 2_000))
}

/// Retry delay after `attempts` failures: `base_ms` doubling to `max_ms`.
fn backoff(attempts: i32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = attempts.clamp(0, 20) as u32;
    Duration::from_millis(
        base_ms
            .max(1)
            .saturating_mul(1u64 << exp)
            .min(max_ms.max(1)),
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "scim-bridge".into())
}

/// Locks a std mutex whose holder never panics while holding it (a poisoned one is used as is).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
