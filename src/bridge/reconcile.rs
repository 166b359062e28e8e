//! Reconciliation: compare every site of a tenant with the store, report the drift, and
//! repair it on request. The store is the system of record for what the IdP asked, so repairs
//! go one way: a missing managed group is created at the partner, and every user whose
//! partner account, first/last name or managed groups differ is marked for the membership
//! engine, which converges it exactly as after a SCIM write. Leavers who kept access (a user
//! the IdP deleted, whose tombstone is still pending, or deactivated under `remove`) are their
//! own categories; marking such a (site, user) makes the engine delete the account. Protected
//! accounts (`Tenant::protects`) are kept on purpose: only their managed groups can drift.
//! Partner users unknown to SCIM are reported, never touched. Every site's run is recorded in
//! the audit log (`RECONCILE` on `Site`), where `scim-bridge status` finds the last one.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::mapping::{partner_names, same_groups};
use super::{now_ms, Bridge, Site, Tenant};
use crate::config::DeprovisionPolicy;
use crate::partner::client::NewGroup;
use crate::partner::error::PartnerError;
use crate::scim::resource::UserView;
use crate::store::{AuditEntry, StoreError};

/// What one site looks like against the store.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SiteReport {
    pub tenant: String,
    pub site: String,
    /// SCIM users that should exist at the partner and do not.
    pub users_missing: Vec<String>,
    /// SCIM users that should not exist at the partner (deprovisioned under `remove`) but do:
    /// leavers who kept access. Protected accounts are never listed here.
    pub users_not_removed: Vec<String>,
    /// Users the IdP deleted (their deletion is still pending) whose account is still at the
    /// partner: leavers who kept access. Protected accounts are never listed here.
    pub deleted_users_present: Vec<DeletedUser>,
    /// Users whose managed groups differ from the store's memberships (a deprovisioned or
    /// deleted protected account must have none).
    pub memberships_drifted: Vec<GroupDrift>,
    /// Users whose first or last name at the partner is not the one their SCIM resource gives.
    pub names_drifted: Vec<NameDrift>,
    /// Managed groups missing at the partner.
    pub groups_missing: Vec<String>,
    /// Groups without partner effect at an RBAC site with `create_roles = false`: no role of
    /// their name (or `role_map`'s) exists there. Reported, not drift: it is the setting's
    /// intent, undone by creating the role or mapping the group.
    pub groups_unmapped: Vec<String>,
    /// Partner users no SCIM user maps to (reported only).
    pub unknown_partner_users: Vec<String>,
    /// Users marked for the engine (with `--apply`).
    pub marked: usize,
    /// Groups created (with `--apply`).
    pub groups_created: usize,
    /// Managed groups found at the partner under a name they had before (a rename that
    /// half-happened) and renamed to their current name.
    pub groups_renamed: usize,
}

impl SiteReport {
    /// True when the site matches the store.
    pub fn in_sync(&self) -> bool {
        self.users_missing.is_empty()
            && self.users_not_removed.is_empty()
            && self.deleted_users_present.is_empty()
            && self.memberships_drifted.is_empty()
            && self.names_drifted.is_empty()
            && self.groups_missing.is_empty()
    }

    /// Leavers who kept access: deprovisioned or deleted users still at the partner.
    pub fn leavers(&self) -> usize {
        self.users_not_removed.len() + self.deleted_users_present.len()
    }

    /// How much of each kind of drift was found, under the names the metrics and the audit
    /// entry use.
    pub fn drift_counts(&self) -> [(&'static str, usize); 8] {
        [
            ("users_missing", self.users_missing.len()),
            ("users_not_removed", self.users_not_removed.len()),
            ("deleted_users_present", self.deleted_users_present.len()),
            ("memberships_drifted", self.memberships_drifted.len()),
            ("names_drifted", self.names_drifted.len()),
            ("groups_missing", self.groups_missing.len()),
            ("groups_unmapped", self.groups_unmapped.len()),
            ("unknown_partner_users", self.unknown_partner_users.len()),
        ]
    }
}

/// A deleted SCIM user whose partner account is still there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeletedUser {
    /// The SCIM id it had (the audit log's resource id of its deletion).
    pub id: String,
    pub email: String,
}

/// A user whose partner first/last name is not what its SCIM resource maps to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NameDrift {
    pub email: String,
    /// What the partner has.
    pub first_name: String,
    pub last_name: String,
    /// What `bridge::mapping::partner_names` gives.
    pub want_first_name: String,
    pub want_last_name: String,
}

/// A user whose managed groups at the partner are not the store's.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupDrift {
    pub email: String,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("partner: {0}")]
    Partner(#[from] PartnerError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Reconciles every site of `tenant`; with `apply`, repairs what drifted. Each site's run is
/// recorded in the audit log as `by` (see [`run`]); the run and what it found go to the
/// bridge's metrics.
pub async fn reconcile(
    bridge: &Bridge,
    tenant: &Tenant,
    apply: bool,
) -> Result<Vec<SiteReport>, ReconcileError> {
    run(bridge, tenant, apply, "reconcile").await
}

/// The audit operation of a reconcile run; `scim-bridge status` reads the newest per site.
pub const AUDIT_OPERATION: &str = "RECONCILE";
/// The audit resource type of a reconcile run (the resource id is the site).
pub const AUDIT_RESOURCE_TYPE: &str = "Site";

/// How a site's reconcile run ended, as the audit entry's status says it.
pub mod outcome {
    /// The site matched the store.
    pub const IN_SYNC: u16 = 200;
    /// Drift was found and its repair handed to the membership engine (`--apply`).
    pub const REPAIRED: u16 = 202;
    /// Drift was found and left as it is (a report-only run).
    pub const DRIFTED: u16 = 409;
    /// The run failed at the partner.
    pub const PARTNER_FAILED: u16 = 502;
    /// The run failed at the store.
    pub const STORE_FAILED: u16 = 500;
}

/// What the store wants, read once per tenant and compared with every site.
struct Wanted {
    users: Vec<crate::store::UserRow>,
    groups: Vec<crate::store::GroupRow>,
    /// Lowercased partner names of the managed groups.
    managed: HashSet<String>,
    /// User id -> managed partner group names, from the membership index.
    desired: HashMap<String, Vec<String>>,
    /// Deleted users whose deletion has not converged at every site: (user id, partner email).
    tombstones: Vec<(String, String)>,
}

/// [`reconcile`], recording each site's run in the audit log under the credential name `by`
/// (`reconciler` for the periodic runs, `cli` for `scim-bridge reconcile`): operation
/// [`AUDIT_OPERATION`], resource [`AUDIT_RESOURCE_TYPE`] / the site, a status from [`outcome`]
/// and the drift counts as detail. The run and what it found also go to the bridge's metrics.
pub async fn run(
    bridge: &Bridge,
    tenant: &Tenant,
    apply: bool,
    by: &str,
) -> Result<Vec<SiteReport>, ReconcileError> {
    let result = reconcile_sites(bridge, tenant, apply, by).await;
    let metrics = &bridge.metrics;
    metrics.reconcile_run(tenant.name(), result.is_ok());
    for r in result.iter().flatten() {
        for (kind, count) in r.drift_counts() {
            metrics.reconcile_drift(&r.tenant, &r.site, kind, count);
        }
    }
    result
}

async fn reconcile_sites(
    bridge: &Bridge,
    tenant: &Tenant,
    apply: bool,
    by: &str,
) -> Result<Vec<SiteReport>, ReconcileError> {
    let store = &bridge.store;
    let name = tenant.name();
    let users = store.find_users(name, &[]).await?;
    let tombstones = store.user_tombstones(name).await?;
    let groups = store.find_groups(name, &[]).await?;
    // Every name the bridge gave a group counts (a former name a site still carries too).
    let managed: HashSet<String> = store
        .managed_group_names(name)
        .await?
        .into_iter()
        .map(|g| g.to_lowercase())
        .collect();
    let mut desired: HashMap<String, Vec<String>> = HashMap::new();
    for g in &groups {
        for member in store.group_member_ids(name, &g.id).await? {
            desired
                .entry(member)
                .or_default()
                .push(g.partner_name.clone());
        }
    }
    let wanted = Wanted {
        users,
        groups,
        managed,
        desired,
        tombstones,
    };
    let mut reports = Vec::new();
    for site in &tenant.sites {
        let result = reconcile_site(bridge, tenant, site, &wanted, apply).await;
        record(bridge, tenant, site, apply, by, &result).await;
        reports.push(result?);
    }
    Ok(reports)
}

/// Compares one site with what the store wants; with `apply`, repairs it.
async fn reconcile_site(
    bridge: &Bridge,
    tenant: &Tenant,
    site: &Site,
    wanted: &Wanted,
    apply: bool,
) -> Result<SiteReport, ReconcileError> {
    let store = &bridge.store;
    let name = tenant.name();
    let Wanted {
        users,
        groups,
        managed,
        desired,
        tombstones,
    } = wanted;
    let mut report = SiteReport {
        tenant: name.to_owned(),
        site: site.name.clone(),
        ..SiteReport::default()
    };
    let partner_users = site.client.list_users().await?;
    let partner_groups = site.client.list_groups().await?;
    let at_partner: HashMap<String, &crate::partner::PartnerUser> = partner_users
        .iter()
        .map(|u| (u.email.to_lowercase(), u))
        .collect();
    let partner_group_names: HashSet<String> = partner_groups
        .iter()
        .map(|g| g.name.to_lowercase())
        .collect();
    let unmapped_here = site
        .client
        .role_site()
        .is_some_and(|rs| !rs.settings.create_roles);
    for g in groups {
        if !partner_group_names.contains(&g.partner_name.to_lowercase()) {
            if unmapped_here {
                report.groups_unmapped.push(g.partner_name.clone());
            } else {
                report.groups_missing.push(g.partner_name.clone());
            }
        }
    }
    // As the engine converges the site.
    let site_managed = site.managed_here(
        managed.iter().cloned(),
        groups.iter().map(|g| g.partner_name.as_str()),
    );
    // A group unmapped here has no partner effect: its members are not missing its role.
    let unmapped: HashSet<String> = report
        .groups_unmapped
        .iter()
        .map(|g| g.to_lowercase())
        .collect();
    let compare = Compare {
        tenant,
        at_partner: &at_partner,
        site_managed: &site_managed,
        desired,
        unmapped: &unmapped,
    };
    let mut known = HashSet::new();
    let mut to_mark = Vec::new();
    for u in users {
        if u.partner_email.is_empty() {
            continue;
        }
        known.insert(u.partner_email.to_lowercase());
        if compare.user(u, &mut report) {
            to_mark.push(u.id.clone());
        }
    }
    // Deleted users whose deletion is pending somewhere. One whose email a live user holds
    // again is that user's account now (the engine skips the tombstone the same way).
    for (id, email) in tombstones {
        let email_lc = email.to_lowercase();
        if email.is_empty() || known.contains(&email_lc) {
            continue;
        }
        if compare.deleted_user(id, email, &mut report) {
            to_mark.push(id.clone());
        }
        known.insert(email_lc);
    }
    report.unknown_partner_users = partner_users
        .iter()
        .filter(|p| !known.contains(&p.email.to_lowercase()))
        .map(|p| p.email.clone())
        .collect();
    if apply {
        repair_missing_groups(
            bridge,
            tenant,
            site,
            groups,
            &partner_group_names,
            &mut report,
        )
        .await?;
        if !to_mark.is_empty() {
            let marks = store
                .mark_outbox_at(name, std::slice::from_ref(&site.name), &to_mark, now_ms())
                .await?;
            report.marked = marks.len();
            bridge.engine.kick();
        }
    }
    Ok(report)
}

/// One site's partner state, compared with what the store wants of each user.
struct Compare<'a> {
    tenant: &'a Tenant,
    /// The site's users by lowercased email.
    at_partner: &'a HashMap<String, &'a crate::partner::PartnerUser>,
    /// The lowercased names of the groups the bridge manages at the site.
    site_managed: &'a HashSet<String>,
    /// User id -> managed partner group names.
    desired: &'a HashMap<String, Vec<String>>,
    /// The lowercased names of the groups unmapped at the site (an RBAC site that does not
    /// create roles, no role for the group).
    unmapped: &'a HashSet<String>,
}

impl Compare<'_> {
    /// Reports how the site differs from live user `u` (missing, not removed, groups or names
    /// drifted); true when it does (the user is worth a convergence).
    fn user(&self, u: &crate::store::UserRow, report: &mut SiteReport) -> bool {
        let policy = self.tenant.config.deprovision;
        let present = u.active || policy != DeprovisionPolicy::Remove;
        // A protected account deprovisioned under `remove` is kept on purpose, without its
        // managed groups, as the engine converges it.
        let kept = present || self.tenant.protects(&u.partner_email);
        match (
            kept,
            present,
            self.at_partner.get(&u.partner_email.to_lowercase()),
        ) {
            (_, true, None) => {
                report.users_missing.push(u.partner_email.clone());
                true
            }
            (false, _, Some(_)) => {
                report.users_not_removed.push(u.partner_email.clone());
                true
            }
            (true, _, Some(p)) => {
                let mut want: Vec<String> = if u.active || policy == DeprovisionPolicy::Keep {
                    self.desired.get(&u.id).cloned().unwrap_or_default()
                } else {
                    Vec::new()
                };
                want.retain(|g| !self.unmapped.contains(&g.to_lowercase()));
                let mut drifted = false;
                if let Some(d) = group_drift(&u.partner_email, &want, &p.groups, self.site_managed)
                {
                    report.memberships_drifted.push(d);
                    drifted = true;
                }
                let (first, last) = wanted_names(u);
                let keeps_profile = self.tenant.keeps_profile(&u.partner_email);
                if !keeps_profile && (p.first_name != first || p.last_name != last) {
                    report.names_drifted.push(NameDrift {
                        email: u.partner_email.clone(),
                        first_name: p.first_name.clone(),
                        last_name: p.last_name.clone(),
                        want_first_name: first,
                        want_last_name: last,
                    });
                    drifted = true;
                }
                drifted
            }
            (_, false, None) => false,
        }
    }

    /// Reports a deleted user (`id`, `email`) whose account is still at the site (or, when
    /// protected, still has managed groups); true when it is (worth a convergence).
    fn deleted_user(&self, id: &str, email: &str, report: &mut SiteReport) -> bool {
        let Some(p) = self.at_partner.get(&email.to_lowercase()) else {
            return false;
        };
        if self.tenant.protects(email) {
            match group_drift(email, &[], &p.groups, self.site_managed) {
                Some(d) => {
                    report.memberships_drifted.push(d);
                    true
                }
                None => false,
            }
        } else {
            report.deleted_users_present.push(DeletedUser {
                id: id.to_owned(),
                email: email.to_owned(),
            });
            true
        }
    }
}

/// `--apply` for the groups missing at the site: each is renamed from a former name the site
/// still carries (a rename that half-happened, members and all), else created, unless another
/// writer holds its names or a rename of it may still be under way.
async fn repair_missing_groups(
    bridge: &Bridge,
    tenant: &Tenant,
    site: &Site,
    groups: &[crate::store::GroupRow],
    partner_group_names: &HashSet<String>,
    report: &mut SiteReport,
) -> Result<(), ReconcileError> {
    let store = &bridge.store;
    let name = tenant.name();
    let missing = report.groups_missing.clone();
    for g in &missing {
        let row = groups
            .iter()
            .find(|row| row.partner_name.eq_ignore_ascii_case(g));
        // One writer at a time changes a group's names (see `groups::names_lock`); a
        // group another writer is renaming is left to it (and to the next reconcile).
        let lock = match row {
            Some(row) => match super::groups::names_lock(
                store,
                name,
                &row.id,
                super::write_lock::lease_ms(bridge.options.rename_settle_ms, site),
            )
            .await?
            {
                Some(lock) => Some(lock),
                None => continue,
            },
            None => None,
        };
        let repaired =
            repair_missing_group(bridge, tenant, site, g, row, partner_group_names).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        match repaired? {
            Some(Repair::Renamed) => report.groups_renamed += 1,
            Some(Repair::Created) => report.groups_created += 1,
            None => {}
        }
    }
    Ok(())
}

/// What [`repair_missing_group`] did.
enum Repair {
    Renamed,
    Created,
}

/// One group missing at the site, under its names lock: renamed from a former name the site
/// still carries, else created; nothing when what was read before the lock is stale or a
/// rename of it may still be under way.
async fn repair_missing_group(
    bridge: &Bridge,
    tenant: &Tenant,
    site: &Site,
    g: &str,
    row: Option<&crate::store::GroupRow>,
    partner_group_names: &HashSet<String>,
) -> Result<Option<Repair>, ReconcileError> {
    let store = &bridge.store;
    let name = tenant.name();
    // What this reconcile read before it held the lock may be stale: a rename may have
    // committed, or made the group at the site, since. Only a group still under this name
    // in the store and still missing at the site is repaired.
    if let Some(row) = row {
        let current = store.get_group(name, &row.id).await?;
        if !current.is_some_and(|c| c.partner_name.eq_ignore_ascii_case(g))
            || site.client.get_group(g).await?.is_some()
        {
            return Ok(None);
        }
    }
    // A rename that half-happened left the group at the site under a name it had before:
    // finish the rename (members and all) rather than make a second group.
    let formers = store.former_names_of(name, g).await?;
    let settle = i64::try_from(bridge.options.rename_settle_ms).unwrap_or(i64::MAX);
    if formers.iter().any(|(_, since)| now_ms() - since < settle) {
        // A rename of this group may still be under way: left to it (and to the next
        // reconcile), as the engine's repair does.
        return Ok(None);
    }
    for (former, _) in formers {
        if partner_group_names.contains(&former.to_lowercase()) {
            let update = crate::partner::client::GroupUpdate {
                name: Some(g.to_owned()),
                access: None,
            };
            site.client
                .update_group(&former, &update, tenant.dry_run())
                .await?;
            return Ok(Some(Repair::Renamed));
        }
    }
    let new = NewGroup {
        name: g.to_owned(),
        access: row.map_or(tenant.config.default_access, |row| {
            group_access(tenant, row)
        }),
        created_by_email: Some(tenant.config.invited_by_email.clone()),
    };
    site.client.create_group(&new, tenant.dry_run()).await?;
    Ok(Some(Repair::Created))
}

/// The managed groups `email` has at the partner (`have`, every group it has) against those it
/// must have (`want`), when they differ.
fn group_drift(
    email: &str,
    want: &[String],
    have: &[String],
    managed: &HashSet<String>,
) -> Option<GroupDrift> {
    let have: Vec<String> = have
        .iter()
        .filter(|g| managed.contains(&g.to_lowercase()))
        .cloned()
        .collect();
    if same_groups(want, &have) {
        return None;
    }
    let want_lc: HashSet<String> = want.iter().map(|g| g.to_lowercase()).collect();
    let have_lc: HashSet<String> = have.iter().map(|g| g.to_lowercase()).collect();
    Some(GroupDrift {
        email: email.to_owned(),
        missing: want
            .iter()
            .filter(|g| !have_lc.contains(&g.to_lowercase()))
            .cloned()
            .collect(),
        extra: have
            .iter()
            .filter(|g| !want_lc.contains(&g.to_lowercase()))
            .cloned()
            .collect(),
    })
}

/// The first and last name the membership engine writes for a user (as its convergence
/// computes them).
fn wanted_names(u: &crate::store::UserRow) -> (String, String) {
    match UserView::from_resource(&u.resource) {
        Ok(v) => partner_names(&v, &u.partner_email),
        Err(_) => (u.partner_email.clone(), String::new()),
    }
}

/// The access a re-created group gets: the one stored with the group (what the bridge gave it
/// when it made it), else what the tenant's configuration gives its name.
fn group_access(tenant: &Tenant, row: &crate::store::GroupRow) -> crate::partner::Access {
    row.access
        .as_deref()
        .and_then(crate::partner::Access::parse)
        .unwrap_or_else(|| tenant.config.access_for(&row.display_name))
}

/// Appends a site's run to the audit log (a failure to write it is logged by the store).
async fn record(
    bridge: &Bridge,
    tenant: &Tenant,
    site: &Site,
    apply: bool,
    by: &str,
    result: &Result<SiteReport, ReconcileError>,
) {
    let (status, detail) = match result {
        Ok(r) => {
            let status = match (r.in_sync(), apply) {
                (true, _) => outcome::IN_SYNC,
                (false, true) => outcome::REPAIRED,
                (false, false) => outcome::DRIFTED,
            };
            let mut detail = serde_json::json!({
                "apply": apply,
                "in_sync": r.in_sync(),
                "groups_created": r.groups_created,
                "groups_renamed": r.groups_renamed,
                "marked": r.marked,
            });
            for (kind, count) in r.drift_counts() {
                detail[kind] = count.into();
            }
            (status, detail)
        }
        Err(e) => {
            let status = match e {
                ReconcileError::Partner(_) => outcome::PARTNER_FAILED,
                ReconcileError::Store(_) => outcome::STORE_FAILED,
            };
            // A refused key is named, so `status` can tell the failure gone once the key is
            // accepted again, and only that one.
            let refused_key = matches!(&e, ReconcileError::Partner(p) if p.refuses_key());
            (
                status,
                serde_json::json!({ "apply": apply, "error": e.to_string(), "refused_key": refused_key }),
            )
        }
    };
    bridge
        .store
        .record_audit(&AuditEntry {
            at_ms: now_ms(),
            tenant: tenant.name().to_owned(),
            credential: by.to_owned(),
            client: String::new(),
            request_id: String::new(),
            operation: AUDIT_OPERATION.to_owned(),
            resource_type: AUDIT_RESOURCE_TYPE.to_owned(),
            resource_id: Some(site.name.clone()),
            status,
            detail: Some(detail.to_string()),
        })
        .await;
}

/// The line that says how many of `total` items a list of 50 left out.
fn more(out: &mut String, total: usize) {
    if total > 50 {
        out.push_str(&format!("    ... and {} more\n", total - 50));
    }
}

/// The human-readable report.
pub fn render_text(reports: &[SiteReport], applied: bool) -> String {
    let mut out = String::new();
    for r in reports {
        let state = if r.in_sync() { "in sync" } else { "DRIFTED" };
        out.push_str(&format!("tenant {} / site {}: {state}\n", r.tenant, r.site));
        let list = |out: &mut String, title: &str, items: &[String]| {
            if !items.is_empty() {
                out.push_str(&format!("  {title} ({}):\n", items.len()));
                for i in items.iter().take(50) {
                    out.push_str(&format!("    {i}\n"));
                }
                more(out, items.len());
            }
        };
        // Leavers who kept access first: they are the drift that matters most.
        if r.leavers() > 0 {
            out.push_str(&format!(
                "  LEAVERS STILL AT THE PARTNER ({}): access the IdP removed is still there\n",
                r.leavers()
            ));
        }
        if !r.deleted_users_present.is_empty() {
            out.push_str(&format!(
                "  deleted users still at the partner ({}):\n",
                r.deleted_users_present.len()
            ));
            for d in r.deleted_users_present.iter().take(50) {
                out.push_str(&format!("    {} (deleted user {})\n", d.email, d.id));
            }
            more(&mut out, r.deleted_users_present.len());
        }
        list(
            &mut out,
            "deprovisioned users still at the partner",
            &r.users_not_removed,
        );
        list(&mut out, "users missing at the partner", &r.users_missing);
        list(
            &mut out,
            "managed groups missing at the partner",
            &r.groups_missing,
        );
        list(
            &mut out,
            "groups without a role at this RBAC site (unmapped: create_roles = false; create \
             the role or map the group with role_map)",
            &r.groups_unmapped,
        );
        if !r.memberships_drifted.is_empty() {
            out.push_str(&format!(
                "  users whose managed groups drifted ({}):\n",
                r.memberships_drifted.len()
            ));
            for d in r.memberships_drifted.iter().take(50) {
                out.push_str(&format!(
                    "    {}: missing [{}], extra [{}]\n",
                    d.email,
                    d.missing.join(", "),
                    d.extra.join(", ")
                ));
            }
            more(&mut out, r.memberships_drifted.len());
        }
        if !r.names_drifted.is_empty() {
            out.push_str(&format!(
                "  users whose names drifted ({}):\n",
                r.names_drifted.len()
            ));
            for d in r.names_drifted.iter().take(50) {
                out.push_str(&format!(
                    "    {}: partner has '{} {}', SCIM gives '{} {}'\n",
                    d.email, d.first_name, d.last_name, d.want_first_name, d.want_last_name
                ));
            }
            more(&mut out, r.names_drifted.len());
        }
        list(
            &mut out,
            "partner users unknown to SCIM (left alone)",
            &r.unknown_partner_users,
        );
        if applied {
            out.push_str(&format!(
                "  repaired: {} groups created, {} renamed, {} users marked for the membership engine\n",
                r.groups_created, r.groups_renamed, r.marked
            ));
        }
    }
    out
}
