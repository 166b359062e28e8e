//! `scim-bridge status`: per tenant and site, the outbox (depth, failing items with their last
//! error and attempts, how long the oldest item has been due) and the last reconcile (when,
//! by whom, what it found), read from the store only: no partner call, safe to run often.
//!
//! It also says what `/readyz` of a bridge on this store and configuration reports about the
//! outbox (across all tenants, as `/readyz` does): `ready`, or `degraded` when a membership
//! change has kept failing for longer than `bridge.outbox_stuck_after_s`.
//!
//! Per tenant it also shows the deletions not yet carried out at every site (pending
//! tombstones: how many, and how old the oldest is), and per site the rows parked (no process
//! that claimed them serves their site) and the claims whose lease ran out without an outcome.
//!
//! Per site it shows the partner's last answer about the site's API key (`site_credentials`,
//! written by `serve` at start, every `bridge.credential_check_interval_s` and when a
//! convergence meets a refusal): a refused key is a problem (exit 1) that names what clears
//! it. A failed last reconcile older than a credential check that found the key accepted is a
//! warning, not a problem: the key was the likely cause, and the next reconcile confirms.
//!
//! Healthy (exit 0) means: no outbox item whose last run failed, no overdue claim (a worker
//! died or lost the store mid-work), no deletion pending longer than
//! `bridge.outbox_stuck_after_s` (15 minutes when that is 0: a leaver who keeps access that
//! long needs a look), and no site whose last reconcile found drift it did not repair (a
//! report-only `reconcile`) or failed. Otherwise exit 1, also when the store cannot be read; 2
//! for a bad configuration or an unknown `--tenant`. Parked rows are a warning, printed but
//! not failing: they wait, by design, for a process that serves their site (a rollout in
//! progress); they are in `problems` only if the site is gone from the configuration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::Value;

use super::{human, load_quiet, rfc3339, StatusArgs, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};
use crate::bridge::reconcile::outcome;
use crate::config::LogFormat;
use crate::store::{AuditEntry, OutboxFailure, OutboxHealth, Store, StoreError};

/// How long a deletion may stay pending before `status` fails, when
/// `bridge.outbox_stuck_after_s` is 0.
const PENDING_DELETION_LIMIT: std::time::Duration = std::time::Duration::from_secs(900);

#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    /// Why not, one reason per line.
    problems: Vec<String>,
    /// Worth a look but not failing (parked rows of a configured site), one per line.
    warnings: Vec<String>,
    /// What `/readyz` reports: `ready` or `degraded` (the outbox is stuck).
    readiness: &'static str,
    /// The outbox as a whole, as `/readyz` assesses it.
    outbox: OutboxHealth,
    tenants: Vec<TenantStatus>,
}

#[derive(Debug, Serialize)]
struct TenantStatus {
    tenant: String,
    /// Users deleted in SCIM whose deletion is not yet carried out at every site.
    pending_deletions: u64,
    oldest_pending_deletion: Option<String>,
    /// How long ago the oldest of them was deleted in SCIM.
    oldest_pending_deletion_age_ms: Option<i64>,
    sites: Vec<SiteStatus>,
}

#[derive(Debug, Serialize)]
struct SiteStatus {
    site: String,
    /// False for a site the store still has work for but the configuration no longer names.
    configured: bool,
    /// `groups` (a v1 site) or `roles` (an RBAC site); absent for a site not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<&'static str>,
    outbox: OutboxStatus,
    failing_items: Vec<FailingItem>,
    last_reconcile: Option<LastReconcile>,
    /// What the partner last said of the site's API key; absent before any check.
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<CredentialsStatus>,
}

#[derive(Debug, Serialize)]
struct CredentialsStatus {
    /// `ok` or `refused`.
    state: String,
    /// When a check (or a partner answer) last found it.
    checked_at: String,
    checked_age_ms: i64,
    /// Since when it holds.
    since: String,
    #[serde(skip)]
    since_ms: i64,
}

#[derive(Debug, Default, Serialize)]
struct OutboxStatus {
    depth: u64,
    failing: u64,
    /// Rows parked because the process that claimed them does not serve the site.
    parked: u64,
    /// Rows whose claim's lease ran out without an outcome (taken over by the next claim).
    overdue_claims: u64,
    oldest_due: Option<String>,
    /// How long the earliest item has been due (negative: due in the future, e.g. a retry).
    oldest_due_age_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct FailingItem {
    user_id: String,
    email: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    marked_at: String,
    next_try_at: String,
    /// How long the item has been waiting since it was marked.
    age_ms: i64,
}

#[derive(Debug, Serialize)]
struct LastReconcile {
    at: String,
    #[serde(skip)]
    at_ms: i64,
    age_ms: i64,
    /// `reconciler` (periodic, in `serve`) or `cli` (`scim-bridge reconcile`).
    by: String,
    /// `in_sync`, `repaired`, `drifted` (found, not repaired) or `failed`.
    result: &'static str,
    status: u16,
    detail: Option<Value>,
}

impl LastReconcile {
    fn healthy(&self) -> bool {
        matches!(self.result, "in_sync" | "repaired")
    }
}

/// Runs `scim-bridge status`.
pub async fn status(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: StatusArgs,
) -> ExitCode {
    let config = match load_quiet(path, log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut tenants: Vec<(String, Vec<String>)> = config
        .tenants
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.sites.iter().map(|s| s.site_name.clone()).collect(),
            )
        })
        .collect();
    if let Some(name) = &args.tenant {
        tenants.retain(|(t, _)| t == name);
        if tenants.is_empty() {
            eprintln!("error: --tenant: no tenant named '{name}'");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    let store = match super::super::open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stuck_after = (config.bridge.outbox_stuck_after_s > 0)
        .then(|| std::time::Duration::from_secs(config.bridge.outbox_stuck_after_s));
    let deletion_limit = stuck_after.unwrap_or(PENDING_DELETION_LIMIT);
    let report = build(
        &store,
        &tenants,
        args.tenant.as_deref(),
        args.limit,
        stuck_after,
        deletion_limit,
    )
    .await;
    store.close().await;
    let mut report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the store: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    for t in &mut report.tenants {
        let Some(tc) = config.tenants.iter().find(|c| c.name == t.tenant) else {
            continue;
        };
        for s in &mut t.sites {
            s.api = tc
                .sites
                .iter()
                .find(|c| c.site_name == s.site)
                .map(|c| c.api.as_str());
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into())
        );
    } else {
        print!("{}", render(&report));
    }
    ExitCode::from(if report.healthy { EXIT_OK } else { EXIT_FAILED })
}

/// Gathers the report from the store: every site's outbox, failing items and last reconcile,
/// every tenant's pending deletions, then the problems and warnings they add up to.
async fn build(
    store: &Store,
    tenants: &[(String, Vec<String>)],
    only: Option<&str>,
    limit: u32,
    stuck_after: Option<std::time::Duration>,
    deletion_limit: std::time::Duration,
) -> Result<Report, StoreError> {
    let now = crate::bridge::now_ms();
    let outbox = store.outbox_health(now, stuck_after).await?;
    let stats = store.outbox_by_site(only).await?;
    let failures = store.outbox_failures(only, limit.max(1)).await?;
    let deletions = store.pending_deletions(only).await?;
    let credentials = store.site_credentials(only).await?;
    let mut places = Places::default();
    for (tenant, sites) in tenants {
        for site in sites {
            let (t, s) = places.place(tenant, site, true);
            places.out[t].sites[s].last_reconcile =
                last_reconcile(store, tenant, site, now).await?;
            places.out[t].sites[s].credentials = credentials
                .iter()
                .find(|c| &c.tenant == tenant && &c.site == site)
                .map(|c| CredentialsStatus {
                    state: c.state.clone(),
                    checked_at: rfc3339(c.checked_ms),
                    checked_age_ms: now - c.checked_ms,
                    since: rfc3339(c.since_ms),
                    since_ms: c.since_ms,
                });
        }
    }
    for st in stats {
        let (t, s) = places.place(&st.tenant, &st.site, false);
        places.out[t].sites[s].outbox = OutboxStatus {
            depth: st.depth,
            failing: st.failing,
            parked: st.parked,
            overdue_claims: st.overdue_claims,
            oldest_due: st.oldest_due_ms.map(rfc3339),
            oldest_due_age_ms: st.oldest_due_ms.map(|d| now - d),
        };
    }
    for f in failures {
        let (t, s) = places.place(&f.tenant, &f.site, false);
        places.out[t].sites[s]
            .failing_items
            .push(failing_item(f, now));
    }
    for d in deletions {
        let t = places.tenant_at(&d.tenant);
        let out = &mut places.out;
        out[t].pending_deletions = d.count;
        out[t].oldest_pending_deletion = d.oldest_deleted_ms.map(rfc3339);
        out[t].oldest_pending_deletion_age_ms = d.oldest_deleted_ms.map(|at| now - at);
    }
    let out = places.out;
    let mut findings = Findings::default();
    if outbox.stuck {
        findings
            .problems
            .push(format!("degraded: {}", outbox.describe()));
    }
    let limit_ms = i64::try_from(deletion_limit.as_millis()).unwrap_or(i64::MAX);
    for t in &out {
        findings.tenant(t, limit_ms);
        for s in &t.sites {
            findings.site(t, s);
        }
    }
    let Findings { problems, warnings } = findings;
    Ok(Report {
        healthy: problems.is_empty(),
        problems,
        warnings,
        readiness: if outbox.stuck { "degraded" } else { "ready" },
        outbox,
        tenants: out,
    })
}

/// The report's tenants and sites as they are placed: configured sites first in
/// configuration order, then any site the outbox still names.
#[derive(Default)]
struct Places {
    out: Vec<TenantStatus>,
    /// (tenant, site) -> where its status is in `out`.
    index: BTreeMap<(String, String), (usize, usize)>,
}

impl Places {
    /// Where a tenant's status is, added (without sites) if it is not there yet.
    fn tenant_at(&mut self, tenant: &str) -> usize {
        match self.out.iter().position(|t| t.tenant == tenant) {
            Some(t) => t,
            None => {
                self.out.push(TenantStatus {
                    tenant: tenant.to_owned(),
                    pending_deletions: 0,
                    oldest_pending_deletion: None,
                    oldest_pending_deletion_age_ms: None,
                    sites: Vec::new(),
                });
                self.out.len() - 1
            }
        }
    }

    /// Where a site's status is (tenant, site), added empty if it is not there yet.
    fn place(&mut self, tenant: &str, site: &str, configured: bool) -> (usize, usize) {
        if let Some(&at) = self.index.get(&(tenant.to_owned(), site.to_owned())) {
            return at;
        }
        let t = self.tenant_at(tenant);
        self.out[t].sites.push(SiteStatus {
            site: site.to_owned(),
            configured,
            api: None,
            outbox: OutboxStatus::default(),
            failing_items: Vec::new(),
            last_reconcile: None,
            credentials: None,
        });
        let at = (t, self.out[t].sites.len() - 1);
        self.index.insert((tenant.to_owned(), site.to_owned()), at);
        at
    }
}

/// The report's problems (which make `status` fail) and warnings, one line each.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    warnings: Vec<String>,
}

/// "s" unless there is one.
fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl Findings {
    /// A tenant's problem: a deletion pending longer than `limit_ms`.
    fn tenant(&mut self, t: &TenantStatus, limit_ms: i64) {
        if let Some(age) = t
            .oldest_pending_deletion_age_ms
            .filter(|age| *age > limit_ms)
        {
            self.problems.push(format!(
                "tenant {}: {} deletion{} pending, the oldest for {} (limit {}): a leaver may \
                 still have access; see the failing items and the log",
                t.tenant,
                t.pending_deletions,
                plural(t.pending_deletions),
                human(age),
                human(limit_ms)
            ));
        }
    }

    /// A site's problems and warnings: overdue claims, parked rows (a warning at a
    /// configured site), failing items, a last reconcile that failed or left drift.
    fn site(&mut self, t: &TenantStatus, s: &SiteStatus) {
        if s.outbox.overdue_claims > 0 {
            self.problems.push(format!(
                "tenant {} site {}: {} outbox claim{} overdue (a worker died or lost the \
                 store mid-work; the next claim takes over)",
                t.tenant,
                s.site,
                s.outbox.overdue_claims,
                plural(s.outbox.overdue_claims)
            ));
        }
        let refused = s.credentials.as_ref().filter(|c| c.state == "refused");
        if let Some(c) = refused {
            self.problems.push(format!(
                "tenant {} site {}: the partner REFUSES the site's API key (since {}, last \
                 found {} ago): fix the site's api_key / api_key_file and restart \
                 `scim-bridge serve` (`scim-bridge check-config --online` checks the key \
                 now); its parked work then resumes by itself",
                t.tenant,
                s.site,
                c.since,
                human(c.checked_age_ms)
            ));
        }
        if s.outbox.parked > 0 && refused.is_some() {
            self.warnings.push(format!(
                "tenant {} site {}: {} outbox item{} parked until the partner accepts the \
                 site's API key",
                t.tenant,
                s.site,
                s.outbox.parked,
                plural(s.outbox.parked)
            ));
        } else if s.outbox.parked > 0 {
            let line = format!(
                "tenant {} site {}: {} outbox item{} parked (waiting for a process that \
                 serves this site{})",
                t.tenant,
                s.site,
                s.outbox.parked,
                plural(s.outbox.parked),
                if s.configured {
                    ""
                } else {
                    "; the configuration no longer names it"
                }
            );
            if s.configured {
                self.warnings.push(line);
            } else {
                self.problems.push(line);
            }
        }
        if s.outbox.failing > 0 {
            self.problems.push(format!(
                "tenant {} site {}: {} outbox item{} failing (retried with backoff; each \
                 success clears its item; `scim-bridge retry --tenant {} --site {}` retries \
                 them now)",
                t.tenant,
                s.site,
                s.outbox.failing,
                if s.outbox.failing == 1 { "" } else { "s" },
                t.tenant,
                s.site
            ));
        }
        if let Some(r) = s.last_reconcile.as_ref().filter(|r| !r.healthy()) {
            // A reconcile that failed on the refused key, and the key found accepted since:
            // the cause is gone; the next reconcile says whether anything is left. A failure
            // of any other cause stays a problem.
            let failed_on_key = r.result == "failed"
                && r.detail
                    .as_ref()
                    .is_some_and(|d| d["refused_key"] == serde_json::Value::Bool(true));
            let key_fixed_since = s
                .credentials
                .as_ref()
                .filter(|c| failed_on_key && c.state == "ok" && c.since_ms > r.at_ms);
            let line = format!(
                "tenant {} site {}: the last reconcile {}{}",
                t.tenant,
                s.site,
                if r.result == "drifted" {
                    "found drift it did not repair"
                } else {
                    "failed"
                },
                match key_fixed_since {
                    Some(c) => format!(
                        ", before the partner accepted the site's API key again (since {}); \
                         the next periodic reconcile confirms, or run `scim-bridge reconcile \
                         --tenant {} --apply`",
                        c.since, t.tenant
                    ),
                    None => format!(
                        "; run `scim-bridge reconcile --tenant {} --apply` to repair and \
                         clear it",
                        t.tenant
                    ),
                }
            );
            if key_fixed_since.is_some() {
                self.warnings.push(line);
            } else {
                self.problems.push(line);
            }
        }
    }
}

fn failing_item(f: OutboxFailure, now: i64) -> FailingItem {
    FailingItem {
        user_id: f.user_id,
        email: f.email,
        attempts: f.attempts,
        last_error: f.last_error,
        marked_at: rfc3339(f.marked_ms),
        next_try_at: rfc3339(f.due_ms),
        age_ms: now - f.marked_ms,
    }
}

/// The newest reconcile entry of a site in the audit log.
async fn last_reconcile(
    store: &Store,
    tenant: &str,
    site: &str,
    now: i64,
) -> Result<Option<LastReconcile>, StoreError> {
    Ok(
        crate::bridge::operator::last_reconcile_in(store, tenant, site)
            .await?
            .map(|e| reconcile_of(e, now)),
    )
}

fn reconcile_of(e: AuditEntry, now: i64) -> LastReconcile {
    let result = match e.status {
        outcome::IN_SYNC => "in_sync",
        outcome::REPAIRED => "repaired",
        outcome::DRIFTED => "drifted",
        _ => "failed",
    };
    LastReconcile {
        at: rfc3339(e.at_ms),
        at_ms: e.at_ms,
        age_ms: now - e.at_ms,
        by: e.credential,
        result,
        status: e.status,
        detail: e
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok()),
    }
}

/// The report as text: per tenant and site, then readiness, warnings and the verdict.
fn render(report: &Report) -> String {
    let mut out = String::new();
    for t in &report.tenants {
        let _ = writeln!(out, "tenant {}", t.tenant);
        if t.pending_deletions > 0 {
            let _ = writeln!(
                out,
                "  pending deletions: {}, the oldest deleted {} ago ({})",
                t.pending_deletions,
                human(t.oldest_pending_deletion_age_ms.unwrap_or_default()),
                t.oldest_pending_deletion.as_deref().unwrap_or("?")
            );
        }
        for s in &t.sites {
            render_site(&mut out, s);
        }
    }
    let _ = writeln!(
        out,
        "readiness: {}{}",
        report.readiness,
        if report.outbox.stuck {
            " (/readyz answers 200 and reports the outbox stuck)"
        } else {
            ""
        }
    );
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for w in &report.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    if report.healthy {
        let _ = writeln!(out, "status: healthy");
    } else {
        let _ = writeln!(out, "status: UNHEALTHY");
        for p in &report.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

/// One site's lines: its outbox, its failing items and its last reconcile.
fn render_site(out: &mut String, s: &SiteStatus) {
    let _ = write!(out, "  site {}", s.site);
    if s.api == Some("roles") {
        let _ = write!(out, " (RBAC: groups are roles)");
    }
    if !s.configured {
        let _ = write!(out, " (not in the configuration)");
    }
    let _ = writeln!(out);
    let o = &s.outbox;
    if o.depth == 0 {
        let _ = writeln!(out, "    outbox: empty");
    } else {
        let due = match o.oldest_due_age_ms {
            Some(age) if age >= 0 => format!("oldest due for {}", human(age)),
            Some(age) => format!("next due in {}", human(-age)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "    outbox: {} waiting, {} failing, {} parked, {} overdue claims, {due}",
            o.depth, o.failing, o.parked, o.overdue_claims
        );
    }
    for f in &s.failing_items {
        let _ = writeln!(
            out,
            "      FAILING {} (user {}): {} attempt{}, marked {} ago, next try {}: {}",
            f.email.as_deref().unwrap_or("?"),
            f.user_id,
            f.attempts,
            if f.attempts == 1 { "" } else { "s" },
            human(f.age_ms),
            f.next_try_at,
            f.last_error.as_deref().unwrap_or("(no error text)")
        );
    }
    if o.failing > s.failing_items.len() as u64 {
        let _ = writeln!(
            out,
            "      ... {} more failing (see --limit)",
            o.failing - s.failing_items.len() as u64
        );
    }
    match &s.credentials {
        None => {
            let _ = writeln!(out, "    credentials: not checked yet");
        }
        Some(c) => {
            let _ = writeln!(
                out,
                "    credentials: {} (since {}, last found {} ago)",
                if c.state == "refused" {
                    "REFUSED by the partner"
                } else {
                    "ok"
                },
                c.since,
                human(c.checked_age_ms)
            );
        }
    }
    match &s.last_reconcile {
        None => {
            let _ = writeln!(out, "    last reconcile: none recorded");
        }
        Some(r) => {
            let what = reconcile_outcome(r);
            let _ = writeln!(
                out,
                "    last reconcile: {} ({} ago, by {}): {what}",
                r.at,
                human(r.age_ms),
                r.by
            );
        }
    }
}

/// What a reconcile found and did, in words (with its counts).
fn reconcile_outcome(r: &LastReconcile) -> String {
    match r.result {
        "in_sync" if count(&r.detail, "groups_unmapped") > 0 => format!(
            "in sync ({} groups unmapped: no role of their name at an RBAC site with \
             create_roles = false)",
            count(&r.detail, "groups_unmapped")
        ),
        "in_sync" => "in sync".to_owned(),
        "repaired" => format!(
            "drift found and repaired ({} users marked, {} groups created)",
            count(&r.detail, "marked"),
            count(&r.detail, "groups_created")
        ),
        "drifted" => format!(
            "DRIFT NOT REPAIRED ({} users missing, {} not removed, {} deleted \
             but present, {} with drifted groups, {} with drifted names, {} \
             groups missing; run `reconcile --apply`)",
            count(&r.detail, "users_missing"),
            count(&r.detail, "users_not_removed"),
            count(&r.detail, "deleted_users_present"),
            count(&r.detail, "memberships_drifted"),
            count(&r.detail, "names_drifted"),
            count(&r.detail, "groups_missing")
        ),
        _ => format!(
            "FAILED: {}",
            r.detail
                .as_ref()
                .and_then(|d| d["error"].as_str())
                .unwrap_or("(no error text)")
        ),
    }
}

fn count(detail: &Option<Value>, key: &str) -> u64 {
    detail
        .as_ref()
        .and_then(|d| d[key].as_u64())
        .unwrap_or_default()
}
