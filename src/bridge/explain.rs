//! Why a person has or lacks access: one user (or group) of a tenant as the bridge sees it,
//! for `scim-bridge explain`, `explain-group`, `GET /admin/explain` and the console.
//!
//! For each site, the state the membership engine works towards (the same rules as
//! `engine::converge`: the deprovisioning policy, protected accounts, privileged groups,
//! unmapped groups), the outbox row that carries it there, and with `live` the partner's
//! state read now with the differences named. Nothing here writes to the partner or changes
//! SCIM state; on an RBAC site a live read may refresh the bridge's record of the partner's
//! ids (`partner_links`), as every read of a user by email does.

use std::collections::HashSet;

use serde::Serialize;

use super::engine::converge::managed_names;
use super::mapping::{converge_groups, partner_names, same_groups};
use super::{now_ms, Site, Tenant};
use crate::config::DeprovisionPolicy;
use crate::partner::client::LinkKind;
use crate::scim::resource::UserView;
use crate::store::{
    audit_entry_json, AuditQuery, GroupRow, OutboxRow, Store, StoreError, Tombstone, UserRow,
};

/// How many of the newest audit entries (requests and convergences) an explanation carries.
pub const RECENT_ENTRIES: u32 = 20;
/// How many members an explanation of a group lists.
pub const LISTED_MEMBERS: usize = 200;

/// Why an explanation could not be made.
#[derive(Debug)]
pub enum ExplainError {
    /// No user or group matches (nor a deleted one).
    NotFound(String),
    Store(StoreError),
}

impl std::fmt::Display for ExplainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExplainError::NotFound(what) => f.write_str(what),
            ExplainError::Store(e) => write!(f, "cannot read the store: {e}"),
        }
    }
}

impl From<StoreError> for ExplainError {
    fn from(e: StoreError) -> Self {
        ExplainError::Store(e)
    }
}

/// One user of a tenant: its SCIM resource, what each site should hold, what it holds (when
/// read live), its outbox rows and its recent history.
#[derive(Debug, Clone, Serialize)]
pub struct UserExplanation {
    pub tenant: String,
    /// What was asked for.
    pub query: String,
    /// `None` when the user was deleted in SCIM (see `deleted`).
    pub user: Option<UserSummary>,
    /// Partner accounts of this user (or of a deleted user with this id or email) being, or
    /// having been, removed: a SCIM delete, a former email.
    pub removals: Vec<Removal>,
    /// The user's groups, from the membership index.
    pub groups: Vec<GroupRef>,
    pub sites: Vec<UserAtSite>,
    /// Newest first: the IdP's requests on this user and the engine's convergences.
    pub recent: Vec<serde_json::Value>,
    /// Whether the partner was read (`--live`).
    pub live: bool,
}

/// The SCIM user, without secrets (SCIM users carry none the bridge keeps).
#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub active: bool,
    pub display_name: Option<String>,
    pub emails: Vec<String>,
    /// The partner account this user is (empty: the user has no email and is at no site).
    pub partner_email: String,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

/// A partner account of a (possibly deleted) user whose removal is or was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    pub user_id: String,
    pub email: String,
    /// `deleted`, `retired` (a former email) or `claimed` (an email change taking it).
    pub kind: String,
    pub since: String,
    /// When every site had it removed; `None` while still pending.
    pub done: Option<String>,
}

/// A group of the user.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRef {
    pub id: String,
    pub display_name: String,
    pub partner_name: String,
}

/// One site for one user.
#[derive(Debug, Clone, Serialize)]
pub struct UserAtSite {
    pub site: String,
    /// `v1` or `roles`.
    pub api: String,
    pub desired: Desired,
    /// The partner's state read now (`live` only).
    pub actual: Option<Actual>,
    /// What differs between `desired` and `actual` (`live` only): what the next convergence
    /// changes, or what blocks it.
    pub differences: Vec<String>,
    /// The outbox row carrying the user's changes to this site.
    pub outbox: OutboxState,
}

/// What the membership engine makes of the user at a site.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    /// `present` (created when missing), `absent` (deleted when there), `stripped` (kept
    /// without managed groups when there, never created: a protected account leaving) or
    /// `unchanged` (left as it is: the email is another live user's now).
    pub account: String,
    /// The rule that decides it, in words.
    pub rule: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The managed groups (RBAC sites: roles, by the group name; see `roles`) it must hold.
    pub groups: Vec<String>,
    /// RBAC sites: the role each group maps to, as `group -> role`.
    pub roles: Vec<String>,
    /// Groups the user is in that have no partner effect at this site, with why.
    pub without_effect: Vec<String>,
    /// Protected account (owner or `protected_emails`): never deleted, profile kept.
    pub protected: bool,
    /// Other partner accounts of this user still being removed (a former email, or the
    /// account of the deleted user), each with what happens to it.
    pub removals: Vec<String>,
}

/// The partner's account, read now.
#[derive(Debug, Clone, Serialize)]
pub struct Actual {
    pub present: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub groups: Vec<String>,
    /// The read failed: why (the rest is then unknown).
    pub error: Option<String>,
}

/// The outbox row of a user at a site, in words and numbers.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxState {
    /// `in line` (nothing waits: the last change reached the site), `queued`, `failing`,
    /// `parked` (set aside; `last_error` says why), `working` (a worker holds it now) or
    /// `overdue claim` (the worker holding it stopped; another takes it over).
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub marked: Option<String>,
    pub due: Option<String>,
    pub claimed_by: Option<String>,
}

/// One group of a tenant, and what it is at each site.
#[derive(Debug, Clone, Serialize)]
pub struct GroupExplanation {
    pub tenant: String,
    pub query: String,
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub partner_name: String,
    pub member_count: u64,
    /// Up to [`LISTED_MEMBERS`] members.
    pub members: Vec<MemberRef>,
    pub sites: Vec<GroupAtSite>,
    pub recent: Vec<serde_json::Value>,
    pub live: bool,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRef {
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub active: bool,
}

/// One group at one site.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAtSite {
    pub site: String,
    pub api: String,
    /// The partner group (v1) or role (RBAC) the group maps to, by name.
    pub maps_to: String,
    /// Whether SCIM membership of this group is written at this site, and if not why.
    pub managed: bool,
    pub note: Option<String>,
    /// RBAC sites: the role the bridge has linked to the group, and whether it was adopted
    /// (found at the site) or created by the bridge.
    pub role_id: Option<String>,
    pub adopted: Option<bool>,
    /// `live` only: whether the partner has it now, its id and whether the bridge made it.
    pub actual: Option<GroupActual>,
}

/// A partner group or role read now.
#[derive(Debug, Clone, Serialize)]
pub struct GroupActual {
    pub exists: bool,
    pub name: Option<String>,
    pub role_id: Option<String>,
    /// RBAC: carries the bridge's mark (the bridge made it and may rename or delete it).
    pub made_by_bridge: Option<bool>,
    pub error: Option<String>,
}

/// RFC 3339 (UTC, milliseconds) of a store time.
pub fn at(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn api(site: &Site) -> String {
    site.client.api().as_str().to_owned()
}

/// The user `query` names in `tenant`: a SCIM id, a userName or an email (any case), and the
/// removals of a deleted user of that id or email. `NotFound` when neither exists.
pub async fn user(
    store: &Store,
    tenant: &Tenant,
    query: &str,
    live: bool,
) -> Result<UserExplanation, ExplainError> {
    let q = query.trim();
    let mut row = find_user(store, tenant.name(), q).await?;
    let mut removals = store.tombstones_matching(tenant.name(), q).await?;
    if row.is_none() {
        // A former email (or one an email change is taking) names a live user.
        for t in &removals {
            if t.kind != "deleted" {
                if let Some(u) = store.get_user(tenant.name(), &t.id).await? {
                    row = Some(u);
                    break;
                }
            }
        }
    }
    if let Some(u) = &row {
        if u.id != q {
            for t in store.tombstones_matching(tenant.name(), &u.id).await? {
                if !removals.contains(&t) {
                    removals.push(t);
                }
            }
        }
    }
    if row.is_none() && removals.is_empty() {
        return Err(ExplainError::NotFound(format!(
            "no user '{q}' in tenant '{}' (looked for a SCIM id, a userName and an email, and \
             for deleted users)",
            tenant.name()
        )));
    }
    if row.is_none() {
        // A deleted user found by one email: its other accounts (former emails) still being
        // removed belong to the explanation too.
        let ids: Vec<String> = removals.iter().map(|t| t.id.clone()).collect();
        for id in ids {
            for t in store.tombstones_matching(tenant.name(), &id).await? {
                if !removals.contains(&t) {
                    removals.push(t);
                }
            }
        }
    }
    // Pending removals first (the deleted user's own account first), then done ones.
    removals.sort_by_key(|t| (t.converged_ms.is_some(), t.kind != "deleted", -t.deleted_ms));
    // The user whose history and outbox rows are shown: the live one, else the deleted one.
    let user_id = match (&row, removals.first()) {
        (Some(u), _) => u.id.clone(),
        (None, Some(t)) => t.id.clone(),
        (None, None) => unreachable!("checked above"),
    };
    // Only that user's removals (an email may have been several deleted users').
    if row.is_none() {
        removals.retain(|t| t.id == user_id);
    }
    let groups = match &row {
        Some(u) => store.groups_of_user(tenant.name(), &u.id).await?,
        None => Vec::new(),
    };
    let outbox = store.outbox_rows_of_user(tenant.name(), &user_id).await?;
    let mut sites = Vec::new();
    for site in &tenant.sites {
        let row_here = outbox.iter().find(|o| o.site == site.name);
        sites.push(
            user_at_site(
                store,
                tenant,
                site,
                row.as_ref(),
                &removals,
                &groups,
                row_here,
                live,
            )
            .await?,
        );
    }
    let recent = recent(store, tenant.name(), &user_id).await?;
    Ok(UserExplanation {
        tenant: tenant.name().to_owned(),
        query: q.to_owned(),
        user: row.as_ref().map(summary),
        removals: removals.iter().map(removal).collect(),
        groups: groups
            .iter()
            .map(|g| GroupRef {
                id: g.id.clone(),
                display_name: g.display_name.clone(),
                partner_name: g.partner_name.clone(),
            })
            .collect(),
        sites,
        recent,
        live,
    })
}

async fn find_user(store: &Store, tenant: &str, q: &str) -> Result<Option<UserRow>, StoreError> {
    if let Some(u) = store.get_user(tenant, q).await? {
        return Ok(Some(u));
    }
    if let Some(u) = store.get_user_by_user_name(tenant, q).await? {
        return Ok(Some(u));
    }
    if let Some(u) = store
        .users_by_partner_email(tenant, q)
        .await?
        .into_iter()
        .next()
    {
        return Ok(Some(u));
    }
    Ok(store
        .find_users(tenant, &[crate::store::IndexTerm::EmailValue(q.to_owned())])
        .await?
        .into_iter()
        .next())
}

fn summary(u: &UserRow) -> UserSummary {
    let view = UserView::from_resource(&u.resource).ok();
    UserSummary {
        id: u.id.clone(),
        user_name: u.user_name.clone(),
        external_id: u.external_id.clone(),
        active: u.active,
        display_name: view.and_then(|v| v.display_name),
        emails: u.emails.clone(),
        partner_email: u.partner_email.clone(),
        created: at(u.created_ms),
        last_modified: at(u.last_modified_ms),
        version: u.version,
    }
}

fn removal(t: &Tombstone) -> Removal {
    Removal {
        user_id: t.id.clone(),
        email: t.partner_email.clone(),
        kind: t.kind.clone(),
        since: at(t.deleted_ms),
        done: t.converged_ms.map(at),
    }
}

async fn recent(
    store: &Store,
    tenant: &str,
    resource_id: &str,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let entries = store
        .search_audit(&AuditQuery {
            tenant: Some(tenant.to_owned()),
            since_ms: None,
            // An id, as `audit --resource` resolves it (a user's CSV rows, by email, too).
            resource: Some(resource_id.to_owned()),
            resource_type: None,
            limit: RECENT_ENTRIES,
        })
        .await?;
    Ok(entries.iter().map(audit_entry_json).collect())
}

/// The outbox row in words.
fn outbox_state(row: Option<&OutboxRow>, now: i64) -> OutboxState {
    let Some(r) = row else {
        // Completed rows are deleted: no row is nothing waiting.
        return OutboxState {
            state: "in line".into(),
            attempts: 0,
            last_error: None,
            marked: None,
            due: None,
            claimed_by: None,
        };
    };
    let claimed = r.claimed_until_ms.is_some_and(|u| u > now);
    let state = if r.parked_ms.is_some() {
        "parked"
    } else if r.done_generation >= r.generation {
        "in line"
    } else if claimed {
        "working"
    } else if r.claimed_by.is_some() {
        // The lease ran out with the claim still set: the worker stopped mid-work.
        "overdue claim"
    } else if r.attempts > 0 {
        "failing"
    } else {
        "queued"
    };
    let pending = r.done_generation < r.generation;
    OutboxState {
        state: state.into(),
        attempts: r.attempts,
        last_error: r
            .last_error
            .clone()
            .filter(|_| pending || r.parked_ms.is_some()),
        marked: Some(at(r.marked_ms)),
        due: pending.then(|| at(r.due_ms)),
        claimed_by: r
            .claimed_by
            .clone()
            .filter(|_| r.claimed_until_ms.is_some()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn user_at_site(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    user: Option<&UserRow>,
    removals: &[Tombstone],
    groups: &[GroupRow],
    outbox: Option<&OutboxRow>,
    live: bool,
) -> Result<UserAtSite, StoreError> {
    let policy = tenant.config.deprovision;
    let roles = site.client.role_site();
    let mut desired = Desired {
        account: "absent".into(),
        rule: String::new(),
        email: None,
        first_name: None,
        last_name: None,
        groups: Vec::new(),
        roles: Vec::new(),
        without_effect: Vec::new(),
        protected: false,
        removals: Vec::new(),
    };
    let mut wanted: Vec<String> = Vec::new();
    let email = match user {
        None => {
            // The deleted user's account: the one still being removed, else the last (the
            // removals come sorted so).
            let t = removals.first();
            if let Some(t) = t {
                let (account, rule) = removal_rule(store, tenant, &t.partner_email).await?;
                desired.account = account.into();
                desired.rule = format!("the user was deleted in SCIM: {rule}");
                desired.protected = tenant.protects(&t.partner_email);
                desired.email = Some(t.partner_email.clone());
            }
            t.map(|t| t.partner_email.clone())
        }
        Some(u) if u.partner_email.is_empty() => {
            desired.rule = "the user has no email address: it cannot be at the partner".into();
            None
        }
        Some(u) => {
            let email = u.partner_email.clone();
            let protected = tenant.protects(&email);
            desired.protected = protected;
            let present = u.active || policy != DeprovisionPolicy::Remove;
            desired.email = Some(email.clone());
            if !present && !protected {
                desired.rule = "inactive, and the tenant's deprovision policy is `remove`: the \
                                account is deleted at the site"
                    .into();
            } else {
                // A protected account deactivated under `remove` is kept but never created.
                desired.account = if present { "present" } else { "stripped" }.into();
                desired.rule = match (u.active, policy) {
                    (true, _) => "active: the account is at the site with the user's managed \
                                  groups"
                        .into(),
                    (false, DeprovisionPolicy::Keep) => "inactive, deprovision policy `keep`: \
                                                         the account and its groups are left \
                                                         as they are"
                        .into(),
                    (false, DeprovisionPolicy::Strip) => "inactive, deprovision policy `strip`: \
                                                          the account stays, without managed \
                                                          groups"
                        .into(),
                    (false, DeprovisionPolicy::Remove) => "inactive, but a protected account is \
                                                           never deleted: it stays (if it is \
                                                           there; it is not created), without \
                                                           managed groups"
                        .into(),
                };
                if protected {
                    desired.rule.push_str(
                        "; protected account (the tenant's owner or `protected_emails`): never \
                         deleted, its names and administrator rights kept",
                    );
                }
                if u.active || policy == DeprovisionPolicy::Keep {
                    wanted = groups.iter().map(|g| g.partner_name.clone()).collect();
                }
                let (first, last) = match UserView::from_resource(&u.resource) {
                    Ok(v) => partner_names(&v, &email),
                    Err(_) => (email.clone(), String::new()),
                };
                if !tenant.keeps_profile(&email) {
                    desired.first_name = Some(first);
                    desired.last_name = Some(last);
                }
            }
            Some(email)
        }
    };
    // Other accounts of the user still being removed (former emails), each with what happens
    // to it; `live` reads each one that must go.
    let mut other_removals = Vec::new();
    for t in removals.iter().filter(|t| {
        t.converged_ms.is_none()
            && email
                .as_deref()
                .is_none_or(|e| !t.partner_email.eq_ignore_ascii_case(e))
            && user.is_none_or(|u| t.id == u.id)
    }) {
        let (account, rule) = removal_rule(store, tenant, &t.partner_email).await?;
        let what = match t.kind.as_str() {
            "claimed" => "an email change in flight is taking it; if the change never ends",
            "deleted" => "an account of the deleted user",
            _ => "a former email",
        };
        desired
            .removals
            .push(format!("{} ({what}): {rule}", t.partner_email));
        if account == "absent" {
            other_removals.push(t.partner_email.clone());
        }
    }
    // Groups with no partner effect here: the group every user holds, a privileged group the
    // site keeps to its own administrators.
    let managed = managed_names(store, tenant, site).await?;
    let mut effective = Vec::new();
    for g in wanted {
        if site.is_everyones(&g) {
            desired
                .without_effect
                .push(format!("{g}: every user holds it at this site"));
        } else if !managed.contains(&g.to_lowercase()) {
            desired.without_effect.push(format!(
                "{g}: a privileged group, left to the site's administrators (allow_admin_grant \
                 is off)"
            ));
        } else {
            effective.push(g);
        }
    }
    if let Some(rs) = roles {
        for g in &effective {
            let role = rs.settings.role_name(g);
            // Role links are keyed by the group's displayName.
            let key = groups
                .iter()
                .find(|r| &r.partner_name == g)
                .map_or(g.as_str(), |r| r.display_name.as_str());
            let link = store
                .partner_link(tenant.name(), &site.name, LinkKind::Role.as_str(), key)
                .await?;
            desired.roles.push(match link {
                Some(l) => format!("{g} -> role {role} (id {})", l.partner_id),
                None => format!("{g} -> role {role} (not linked yet)"),
            });
        }
    }
    let mut actual = None;
    let mut differences = Vec::new();
    if live {
        if let Some(email) = &email {
            // Unmapped groups (an RBAC site that does not create roles) are known only from
            // the site's role list.
            if roles.is_some() && !effective.is_empty() {
                match site.client.groups_with_roles(effective.clone()).await {
                    Ok(mapped) => {
                        let mapped_lc: HashSet<String> =
                            mapped.iter().map(|g| g.to_lowercase()).collect();
                        for g in &effective {
                            if !mapped_lc.contains(&g.to_lowercase()) {
                                desired.without_effect.push(format!(
                                    "{g}: no role it can have at this site (unmapped: none \
                                     of its name and the site does not create roles, or its \
                                     role belongs to another group)"
                                ));
                            }
                        }
                        effective = mapped;
                    }
                    Err(e) => differences.push(format!("cannot read the site's roles: {e}")),
                }
            }
            let read = match site.client.get_user(email).await {
                Ok(None) if desired.account == "absent" => {
                    site.client.find_missed_user(email).await
                }
                other => other,
            };
            let (a, diffs) = compare(tenant, site, &desired, &effective, &managed, read, email);
            actual = Some(a);
            differences.extend(diffs);
        }
        for former in &other_removals {
            match site.client.get_user(former).await {
                Ok(Some(_)) => differences.push(format!(
                    "{former} (being removed) is still at the site (to be deleted)"
                )),
                Ok(None) => {}
                Err(e) => differences.push(format!("cannot read {former} at the site: {e}")),
            }
        }
    }
    desired.groups = effective;
    let outbox = outbox_state(outbox, now_ms());
    if actual.as_ref().is_some_and(|a| a.error.is_none()) && !differences.is_empty() {
        differences.push(if outbox.state == "in line" {
            "nothing is queued for this user at this site: `scim-bridge reconcile --apply` (or \
             the periodic reconcile) repairs it"
                .to_owned()
        } else if outbox.state == "parked" {
            "the user's outbox row is parked (see its last error): it runs again once the \
             site's API key is accepted (fix it and restart, or the next credential check \
             finds it fixed) or a process that serves the site takes it"
                .to_owned()
        } else {
            format!(
                "the user's outbox row ({}) carries the change: its next run brings the site in \
                 line",
                outbox.state
            )
        });
    }
    Ok(UserAtSite {
        site: site.name.clone(),
        api: api(site),
        desired,
        actual,
        differences,
        outbox,
    })
}

/// The partner's account against the desired state, as the engine's update would see it.
fn compare(
    tenant: &Tenant,
    site: &Site,
    desired: &Desired,
    effective: &[String],
    managed: &HashSet<String>,
    read: Result<Option<crate::partner::PartnerUser>, crate::partner::error::PartnerError>,
    email: &str,
) -> (Actual, Vec<String>) {
    let mut diffs = Vec::new();
    let p = match read {
        Err(e) => {
            diffs.push(format!("cannot read the account at the site: {e}"));
            return (
                Actual {
                    present: false,
                    first_name: None,
                    last_name: None,
                    groups: Vec::new(),
                    error: Some(e.to_string()),
                },
                diffs,
            );
        }
        Ok(p) => p,
    };
    let actual = Actual {
        present: p.is_some(),
        first_name: p.as_ref().map(|p| p.first_name.clone()),
        last_name: p.as_ref().map(|p| p.last_name.clone()),
        groups: p.as_ref().map(|p| p.groups.clone()).unwrap_or_default(),
        error: None,
    };
    match (desired.account.as_str(), &p) {
        ("absent", Some(_)) => diffs.push(format!("{email} is still at the site (to be deleted)")),
        ("present", None) => diffs.push(format!("{email} is missing at the site (to be created)")),
        ("present" | "stripped", Some(p)) => {
            let mut managed = managed.clone();
            if tenant.keeps_profile(email) {
                managed.retain(|g| !site.privileged(g));
            }
            let target = converge_groups(&p.groups, &managed, effective);
            if !same_groups(&p.groups, &target) {
                let have: HashSet<String> = p.groups.iter().map(|g| g.to_lowercase()).collect();
                let want: HashSet<String> = target.iter().map(|g| g.to_lowercase()).collect();
                let missing: Vec<&str> = target
                    .iter()
                    .filter(|g| !have.contains(&g.to_lowercase()))
                    .map(String::as_str)
                    .collect();
                let extra: Vec<&str> = p
                    .groups
                    .iter()
                    .filter(|g| !want.contains(&g.to_lowercase()))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    diffs.push(format!("missing at the site: {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    diffs.push(format!(
                        "held at the site but no longer granted by SCIM: {}",
                        extra.join(", ")
                    ));
                }
            }
            if let (Some(f), Some(l)) = (&desired.first_name, &desired.last_name) {
                if &p.first_name != f || &p.last_name != l {
                    diffs.push(format!(
                        "names at the site are '{} {}', SCIM gives '{f} {l}'",
                        p.first_name, p.last_name
                    ));
                }
            }
        }
        _ => {}
    }
    (actual, diffs)
}

/// The group `query` names in `tenant` (a SCIM id or a displayName, any case).
pub async fn group(
    store: &Store,
    tenant: &Tenant,
    query: &str,
    live: bool,
) -> Result<GroupExplanation, ExplainError> {
    let q = query.trim();
    let row = match store.get_group(tenant.name(), q).await? {
        Some(g) => Some(g),
        None => store.get_group_by_display_name(tenant.name(), q).await?,
    };
    let Some(g) = row else {
        return Err(ExplainError::NotFound(format!(
            "no group '{q}' in tenant '{}' (looked for a SCIM id and a displayName)",
            tenant.name()
        )));
    };
    let ids = store.group_member_ids(tenant.name(), &g.id).await?;
    let member_count = ids.len() as u64;
    let listed: Vec<String> = ids.into_iter().take(LISTED_MEMBERS).collect();
    let members = store
        .users_by_ids(tenant.name(), &listed)
        .await?
        .into_iter()
        .map(|u| MemberRef {
            id: u.id,
            user_name: u.user_name,
            email: u.partner_email,
            active: u.active,
        })
        .collect();
    let current = store.current_group_names(tenant.name()).await?;
    let mut sites = Vec::new();
    for site in &tenant.sites {
        let managed = site
            .managed_here([g.partner_name.clone()], current.iter().map(String::as_str))
            .contains(&g.partner_name.to_lowercase());
        let everyones = site.is_everyones(&g.partner_name);
        let note = if everyones {
            Some("maps to the group every user holds: membership has no effect here".into())
        } else if !managed {
            Some(
                "a privileged group: left to the site's administrators (allow_admin_grant is \
                 off)"
                    .into(),
            )
        } else {
            None
        };
        let (maps_to, link) = match site.client.role_site() {
            Some(rs) => (
                rs.settings.role_name(&g.partner_name).to_owned(),
                store
                    .partner_link(
                        tenant.name(),
                        &site.name,
                        LinkKind::Role.as_str(),
                        &g.display_name,
                    )
                    .await?,
            ),
            None => (g.partner_name.clone(), None),
        };
        let actual = if live {
            Some(group_actual(site, &maps_to, link.as_ref().map(|l| l.partner_id.as_str())).await)
        } else {
            None
        };
        sites.push(GroupAtSite {
            site: site.name.clone(),
            api: api(site),
            maps_to,
            managed: managed && !everyones,
            note,
            role_id: link.as_ref().map(|l| l.partner_id.clone()),
            adopted: link.as_ref().map(|l| l.adopted),
            actual,
        });
    }
    let recent = recent(store, tenant.name(), &g.id).await?;
    Ok(GroupExplanation {
        tenant: tenant.name().to_owned(),
        query: q.to_owned(),
        id: g.id,
        display_name: g.display_name,
        external_id: g.external_id,
        partner_name: g.partner_name,
        member_count,
        members,
        sites,
        recent,
        live,
    })
}

async fn group_actual(site: &Site, name: &str, role_id: Option<&str>) -> GroupActual {
    let failed = |e: String| GroupActual {
        exists: false,
        name: None,
        role_id: None,
        made_by_bridge: None,
        error: Some(e),
    };
    match site.client.role_site() {
        Some(rs) => match site.client.list_roles().await {
            Err(e) => failed(e.to_string()),
            Ok(all) => {
                let found = all
                    .iter()
                    .find(|r| Some(r.id.as_str()) == role_id)
                    .or_else(|| all.iter().find(|r| r.name.eq_ignore_ascii_case(name)));
                GroupActual {
                    exists: found.is_some(),
                    name: found.map(|r| r.name.clone()),
                    role_id: found.map(|r| r.id.clone()),
                    made_by_bridge: found.map(|r| rs.owns(r)),
                    error: None,
                }
            }
        },
        None => match site.client.get_group(name).await {
            Err(e) => failed(e.to_string()),
            Ok(g) => GroupActual {
                exists: g.is_some(),
                name: g.map(|g| g.name),
                role_id: None,
                made_by_bridge: None,
                error: None,
            },
        },
    }
}

/// What happens at a site to the account `email` of a deleted user or a former email, as
/// `engine::converge::remove_account` decides it: (account, rule).
async fn removal_rule(
    store: &Store,
    tenant: &Tenant,
    email: &str,
) -> Result<(&'static str, String), StoreError> {
    if let Some(holder) = store
        .users_by_partner_email(tenant.name(), email)
        .await?
        .into_iter()
        .next()
    {
        return Ok((
            "unchanged",
            format!(
                "{email} belongs to the live user {} ({}) now: the account is that user's and \
                 is not removed",
                holder.user_name, holder.id
            ),
        ));
    }
    if tenant.protects(email) {
        return Ok((
            "stripped",
            format!(
                "{email} is a protected account: never deleted; its managed groups are removed"
            ),
        ));
    }
    Ok((
        "absent",
        format!("the account {email} is deleted at the site"),
    ))
}
