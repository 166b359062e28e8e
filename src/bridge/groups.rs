//! Group flows. A group itself (create, rename, access, delete) is written partner first at
//! every site; its membership goes through the membership engine: `memberships` and `outbox`
//! in one transaction, then a write that stands alone waits for the workers up to the
//! deadline, and one among concurrent writes of its tenant answers at once (its marks
//! coalesce with theirs; see `engine`).

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{json, Value};

use super::engine::{Pace, Writing};
use super::mapping::validate_group_name;
use super::users::{check_if_match, from_ms, Scope};
use super::write_lock::{tenant_lease_ms, InFlight, WriteLock};
use super::{for_each_site, now_ms, Bridge, BridgeError, BridgeResult, Site, Tenant};
use crate::config::UnknownMembersPolicy;
use crate::partner::client::{GroupUpdate, NewGroup};
use crate::partner::error::{OrGone, PartnerError, PartnerErrorKind};
use crate::partner::record::note;
use crate::partner::wire::message_says_builtin;
use crate::partner::{is_builtin_group, Access, ADMINISTRATORS_GROUP, ALL_USERS_GROUP};
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::patch::{apply_patch, PatchOpKind, PatchRequest};
use crate::scim::path::Path;
use crate::scim::resource::{canonicalize, with_server_attributes, GroupView, InputMode, Meta};
use crate::scim::schema::GROUP_RESOURCE;
use crate::scim::ScimError;
use crate::store::{GroupRow, IndexTerm, MembershipChange, OutboxMark, StoreError};

mod delete;
mod rename;

pub use delete::delete;
pub(crate) use rename::names_lock;
use rename::write;

/// What a group write returns: the stored group and whether the membership work finished
/// before the answer. Its members are read only when the answer shows them
/// ([`GroupWrite::members`]): a PATCH of a large group answered 204 never reads them.
pub struct GroupWrite {
    pub row: GroupRow,
    /// The member ids after the write, when the write had them at hand (an empty list spares
    /// the answer a read; otherwise the answer reads the members for their `display`).
    known_members: Option<Vec<String>>,
    pub settled: bool,
}

impl GroupWrite {
    /// The group's members after the write, as the answer shows them.
    pub async fn members(&self, bridge: &Bridge) -> BridgeResult<Vec<Member>> {
        match &self.known_members {
            Some(ids) if ids.is_empty() => Ok(Vec::new()),
            _ => members(bridge, &self.row.tenant, &self.row.id).await,
        }
    }
}

/// A group member as SCIM shows it: the user's id and its `display` (the user's displayName,
/// or its userName when it has none, as Okta and Entra show members in their consoles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub display: String,
}

/// The members of a group with their `display`, sorted by id: one store query, whatever the
/// group's size.
pub async fn members(bridge: &Bridge, tenant: &str, group_id: &str) -> BridgeResult<Vec<Member>> {
    Ok(bridge
        .store
        .group_members_shown(tenant, group_id)
        .await?
        .into_iter()
        .map(|(id, display)| Member { id, display })
        .collect())
}

/// A write whose membership work is marked but not yet waited for.
struct Pending {
    row: GroupRow,
    marks: Vec<OutboxMark>,
    pace: Pace,
}

impl Pending {
    /// Waits for the workers when the write stands alone (without holding the resource
    /// lock).
    async fn settle(self, bridge: &Bridge) -> BridgeResult<GroupWrite> {
        // Every site of the work known unable to take it (key refused, circuit open): the
        // change is stored; the IdP hears 503 at once rather than after the whole wait. With
        // other sites among them, the write waits for those (a partial success, 2xx).
        if bridge.all_blocked(&self.marks) {
            return Err(bridge.blocked_error(&self.marks).unwrap_or_else(|| {
                BridgeError::in_progress("The partner sites are unavailable.")
            }));
        }
        let settled = match self.pace {
            Pace::Now => {
                let settled = bridge
                    .engine
                    .settle(&self.marks, bridge.wait_deadline())
                    .await?;
                if !settled && bridge.all_blocked(&self.marks) {
                    if let Some(e) = bridge.blocked_error(&self.marks) {
                        return Err(e);
                    }
                }
                settled
            }
            Pace::Coalesce => self.marks.is_empty(),
        };
        Ok(GroupWrite {
            row: self.row,
            known_members: None,
            settled,
        })
    }
}

/// Renders a stored group as SCIM. `members` is `None` when the client excluded it, so the
/// membership index is not read at all. A member's `display` is the user's current name
/// ([`members`]), never what an IdP sent.
pub fn render(scope: Scope<'_>, row: &GroupRow, members: Option<&[Member]>) -> Value {
    let mut resource = row.resource.clone();
    if let Some(members) = members {
        if !members.is_empty() {
            let list: Vec<Value> = members
                .iter()
                .map(|m| {
                    json!({
                        "value": m.id,
                        "$ref": format!("{}/Users/{}", scope.base_url, m.id),
                        "type": "User",
                        "display": m.display,
                    })
                })
                .collect();
            if let Some(obj) = resource.as_object_mut() {
                obj.insert("members".into(), Value::Array(list));
            }
        }
    }
    with_meta(scope, row, resource)
}

fn with_meta(scope: Scope<'_>, row: &GroupRow, resource: Value) -> Value {
    let meta = Meta {
        resource_type: "Group".into(),
        created: from_ms(row.created_ms),
        last_modified: from_ms(row.last_modified_ms),
        location: Meta::location_for(scope.base_url, &GROUP_RESOURCE, &row.id),
        version: row.version.max(0) as u64,
    };
    with_server_attributes(resource, &row.id, &meta)
}

/// The stored form: no server attributes, no members (they live in `memberships`).
fn storable(mut resource: Value) -> Value {
    if let Some(obj) = resource.as_object_mut() {
        obj.remove("id");
        obj.remove("meta");
        obj.remove("members");
    }
    resource
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|i| seen.insert(i.as_str()))
        .cloned()
        .collect()
}

/// Most skipped member ids an audit entry lists (the count is always whole).
const SKIPPED_IDS_SHOWN: usize = 20;

/// A write's member ids split into users of the tenant and the rest (the partner has no
/// nested groups, so a group id is not a user either).
#[derive(Debug, Default)]
struct Members {
    known: Vec<String>,
    unknown: Vec<String>,
}

/// Splits `ids` into users of the tenant and the rest. Under `unknown_members = "reject"` any
/// unknown id is 400 `invalidValue` (nothing written yet); under `skip` the caller applies the
/// known ones and reports the others with [`report_skipped`] once the write succeeded.
async fn resolve_members(
    bridge: &Bridge,
    tenant: &Tenant,
    ids: &[String],
) -> BridgeResult<Members> {
    if ids.is_empty() {
        return Ok(Members::default());
    }
    let found: HashSet<String> = bridge
        .store
        .users_by_ids(tenant.name(), ids)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    let (known, unknown): (Vec<String>, Vec<String>) =
        ids.iter().cloned().partition(|i| found.contains(i));
    if let (UnknownMembersPolicy::Reject, Some(missing)) =
        (tenant.config.unknown_members, unknown.first())
    {
        let is_group = bridge
            .store
            .get_group(tenant.name(), missing)
            .await?
            .is_some();
        let detail = if is_group {
            format!("member '{missing}' is a group; nested groups are not supported by the partner")
        } else {
            format!("member '{missing}' is not a user of this tenant")
        };
        return Err(ScimError::invalid_value(detail).into());
    }
    Ok(Members { known, unknown })
}

/// Logs, counts and audits the member ids a successful write of `group_id` skipped. The ids
/// go to the debug log and (the first few) to the audit entry; the warning has the count.
fn report_skipped(bridge: &Bridge, tenant: &Tenant, group_id: &str, unknown: &[String]) {
    if unknown.is_empty() {
        return;
    }
    tracing::warn!(
        tenant = %tenant.name(),
        group = %group_id,
        count = unknown.len(),
        "skipped group members that are not users of this tenant"
    );
    tracing::debug!(group = %group_id, ids = ?unknown, "skipped group members");
    bridge
        .metrics
        .unknown_members_skipped(tenant.name(), unknown.len());
    let shown = &unknown[..unknown.len().min(SKIPPED_IDS_SHOWN)];
    note(
        "skipped_members",
        json!({
            "group": group_id,
            "count": unknown.len(),
            "ids": shown,
            "truncated": shown.len() < unknown.len(),
        }),
    );
}

/// The access level of a group the bridge creates: the tenant's default or its override.
fn access_for(tenant: &Tenant, name: &str) -> Access {
    tenant.config.access_for(name)
}

pub(crate) async fn create_or_adopt_group(
    tenant: &Tenant,
    site: &Site,
    name: &str,
) -> Result<(), PartnerError> {
    let new = NewGroup {
        name: name.to_owned(),
        access: access_for(tenant, name),
        created_by_email: Some(tenant.config.invited_by_email.clone()),
    };
    match site.client.create_group(&new, tenant.dry_run()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == PartnerErrorKind::Conflict => {
            tracing::info!(site = %site.name, "partner group exists; adopting it");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Group writes need every site: a group missing at one site would make every membership
/// write there fail. Any failure answers the client (503 for transient ones), whose retry is
/// safe because creation adopts and deletion tolerates 404.
fn all_sites<T>(results: Vec<(&Site, Result<T, PartnerError>)>) -> BridgeResult<()> {
    for (site, r) in results {
        if let Err(e) = r {
            tracing::warn!(site = %site.name, error = %e, "group write failed at a site");
            return Err(BridgeError::from(&e));
        }
    }
    Ok(())
}

/// `POST /Groups`.
pub async fn create(bridge: &Bridge, scope: Scope<'_>, body: Value) -> BridgeResult<GroupWrite> {
    let tenant = scope.tenant;
    let writing = bridge.engine.writing(tenant.name());
    let resource = canonicalize(&GROUP_RESOURCE, body, InputMode::Create)?;
    let view = GroupView::from_resource(&resource)?;
    validate_group_name(&view.display_name)?;
    check_grantable(tenant, &view.display_name)?;
    // The displayName is held from before the check and partner calls until the group and
    // its members commit: the IdP's retry of a POST it gave up on (which goes on) waits (503)
    // and then finds the group, instead of getting one of its own that the IdP may delete
    // before the first commits a second group, its members holding it at the partner.
    let keys = vec![crate::store::group_name_key(&view.display_name)];
    let lease = tenant_lease_ms(0, tenant);
    let Some(lock) = WriteLock::take(&bridge.store, tenant.name(), keys, lease).await? else {
        return Err(BridgeError::contended(
            "Another request is creating or renaming a group of this displayName; retry shortly.",
        ));
    };
    if let Err(e) = check_display_name(bridge, tenant, &view.display_name, None).await {
        lock.release().await;
        return Err(e);
    }
    let in_flight = InFlight::default();
    let created = create_checked(bridge, tenant, resource, &view, &writing, &in_flight).await;
    let (row, members, pending) = super::write_lock::end(Some(lock), created, &in_flight).await?;
    let settled = match pending {
        Some(pending) => pending.settle(bridge).await?.settled,
        None => true,
    };
    Ok(GroupWrite {
        row,
        known_members: Some(members),
        settled,
    })
}

/// Refuses a displayName another group of the tenant has (any case), `except` the group
/// being renamed.
pub(super) async fn check_display_name(
    bridge: &Bridge,
    tenant: &Tenant,
    display_name: &str,
    except: Option<&str>,
) -> BridgeResult<()> {
    if bridge
        .store
        .find_groups(
            tenant.name(),
            &[IndexTerm::DisplayName(display_name.to_owned())],
        )
        .await?
        .iter()
        .any(|g| Some(g.id.as_str()) != except)
    {
        return Err(ScimError::uniqueness(format!(
            "displayName '{display_name}' is already taken in this tenant"
        ))
        .into());
    }
    Ok(())
}

/// The rest of [`create`], its checks passed under the displayName's lock: the group at
/// every site, then its row, then its members (their work pending, when it has any).
async fn create_checked(
    bridge: &Bridge,
    tenant: &Tenant,
    resource: Value,
    view: &GroupView,
    writing: &Writing,
    in_flight: &InFlight,
) -> BridgeResult<(GroupRow, Vec<String>, Option<Pending>)> {
    let Members {
        known: mut members,
        unknown,
    } = resolve_members(bridge, tenant, &dedup(&view.member_ids)).await?;
    let name = view.display_name.clone();
    let results = for_each_site(tenant, |site| create_or_adopt_group(tenant, site, &name)).await;
    in_flight.note(&results);
    all_sites(results)?;
    let now = now_ms();
    let row = GroupRow {
        tenant: tenant.name().to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        display_name: view.display_name.clone(),
        external_id: view.external_id.clone(),
        partner_name: view.display_name.clone(),
        access: Some(access_for(tenant, &view.display_name).as_str().to_owned()),
        resource: storable(resource),
        created_ms: now,
        last_modified_ms: now,
        version: 1,
    };
    bridge.store.insert_group(&row).await?;
    report_skipped(bridge, tenant, &row.id, &unknown);
    if members.is_empty() {
        return Ok((row, members, None));
    }
    let pace = writing.pace();
    let (marks, gone) = change(bridge, tenant, &row.id, None, &members, &[], pace).await?;
    members.retain(|m| !gone.contains(m));
    let pending = Pending {
        row: row.clone(),
        marks,
        pace,
    };
    Ok((row, members, Some(pending)))
}

/// Runs the membership transaction. A member deleted between the caller's check and the
/// commit makes the store refuse the whole change: under `unknown_members = "reject"` that is
/// 400; under `skip` the change is retried once without the members that are gone, which are
/// reported and returned.
async fn change(
    bridge: &Bridge,
    tenant: &Tenant,
    group_id: &str,
    group: Option<(&GroupRow, i64)>,
    add: &[String],
    remove: &[String],
    pace: Pace,
) -> BridgeResult<(Vec<OutboxMark>, Vec<String>)> {
    let sites = tenant.site_names();
    let mut add = std::borrow::Cow::Borrowed(add);
    let mut gone = Vec::new();
    loop {
        let result = bridge
            .store
            .change_memberships(&MembershipChange {
                tenant: tenant.name(),
                group,
                group_id,
                add: &add,
                remove,
                also_mark: &[],
                sites: &sites,
                now_ms: now_ms(),
            })
            .await;
        match result {
            Ok(marks) => {
                bridge.engine.marked(tenant.name(), pace);
                report_skipped(bridge, tenant, group_id, &gone);
                return Ok((marks, gone));
            }
            Err(StoreError::NotFound)
                if gone.is_empty()
                    && !add.is_empty()
                    && tenant.config.unknown_members == UnknownMembersPolicy::Skip =>
            {
                let members = resolve_members(bridge, tenant, &add).await?;
                if members.unknown.is_empty() {
                    // Not a member that went: the group itself is gone.
                    return Err(StoreError::NotFound.into());
                }
                gone = members.unknown;
                add = std::borrow::Cow::Owned(members.known);
            }
            Err(StoreError::NotFound) => {
                return Err(ScimError::invalid_value(
                    "a member is not a user of this tenant (it may have been deleted meanwhile)",
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn get_row(bridge: &Bridge, scope: Scope<'_>, id: &str) -> BridgeResult<GroupRow> {
    bridge
        .store
        .get_group(scope.tenant.name(), id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("Group {id} not found")).into())
}

/// How often a write without `If-Match` is re-applied after another replica changed the group
/// between its read and its commit.
const VERSION_RETRIES: u32 = 5;

/// True for the store's version mismatch (409 without `scimType`), as opposed to a uniqueness
/// conflict.
fn version_mismatch(e: &BridgeError) -> bool {
    e.error.status == 409 && e.error.scim_type.is_none()
}

/// `PATCH /Groups/{id}`. The in-process lock serializes writes to one group in this process;
/// another replica's concurrent write shows as a version mismatch at commit. Without
/// `If-Match` the client asked for its operations, not for a version, so they are re-applied
/// to the new state instead of answering 409.
pub async fn patch(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    request: &PatchRequest,
    if_match: Option<&str>,
) -> BridgeResult<GroupWrite> {
    let writing = bridge.engine.writing(scope.tenant.name());
    again_if_changed(id, if_match, "PATCH", || {
        patch_once(bridge, scope, id, request, if_match, &writing)
    })
    .await
}

/// Runs a group write again while another replica's write to the group commits first (a
/// version mismatch), at most [`VERSION_RETRIES`] times, unless the client named a version
/// with `If-Match` (then the mismatch is its answer).
async fn again_if_changed<F, Fut>(
    id: &str,
    if_match: Option<&str>,
    what: &str,
    mut write: F,
) -> BridgeResult<GroupWrite>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BridgeResult<GroupWrite>>,
{
    let mut tries = 0;
    loop {
        match write().await {
            Err(e) if if_match.is_none() && version_mismatch(&e) && tries < VERSION_RETRIES => {
                tries += 1;
                tracing::debug!(group = %id, tries, "group changed meanwhile; re-applying {what}");
            }
            other => return other,
        }
    }
}

async fn patch_once(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    request: &PatchRequest,
    if_match: Option<&str>,
    writing: &Writing,
) -> BridgeResult<GroupWrite> {
    let guard = bridge.lock(scope.tenant.name(), id).await;
    let old = get_row(bridge, scope, id).await?;
    check_if_match(if_match, old.version)?;
    // A PATCH that only adds or removes named members sees the group with just those of them
    // that are members: the outcome is the same, and the cost does not grow with the group.
    let named = named_members(request);
    let members = match &named {
        Some(ids) => {
            bridge
                .store
                .members_among(scope.tenant.name(), id, ids)
                .await?
        }
        None => {
            bridge
                .store
                .group_member_ids(scope.tenant.name(), id)
                .await?
        }
    };
    let mut current = old.resource.clone();
    if let Some(obj) = current.as_object_mut() {
        obj.insert("id".into(), Value::String(old.id.clone()));
        if !members.is_empty() {
            obj.insert(
                "members".into(),
                Value::Array(members.iter().map(|m| json!({ "value": m })).collect()),
            );
        }
    }
    let outcome = apply_patch(&GROUP_RESOURCE, &current, request)?;
    if !outcome.changed {
        return Ok(GroupWrite {
            row: old,
            known_members: named.is_none().then_some(members),
            settled: true,
        });
    }
    let view = GroupView::from_resource(&outcome.resource)?;
    let Members {
        known: add,
        unknown,
    } = resolve_members(bridge, scope.tenant, &dedup(&outcome.summary.members_added)).await?;
    let remove = dedup(&outcome.summary.members_removed);
    if add.is_empty() && remove.is_empty() && storable(outcome.resource.clone()) == old.resource {
        // Only unknown members were added: nothing changes, no version bump.
        report_skipped(bridge, scope.tenant, &old.id, &unknown);
        return Ok(GroupWrite {
            row: old,
            known_members: named.is_none().then_some(members),
            settled: true,
        });
    }
    let pending = write(
        bridge,
        scope,
        old,
        outcome.resource,
        &view,
        (&add, &remove),
        writing.pace(),
    )
    .await?;
    drop(guard);
    report_skipped(bridge, scope.tenant, &pending.row.id, &unknown);
    pending.settle(bridge).await
}

/// The member ids a PATCH names, when each of its operations adds or removes members by id
/// (`add` or `remove` of `members` with a list of `{"value": id}`, Entra's form, or `remove` of
/// `members[value eq "id"]`, Okta's): its outcome depends only on which of those users are
/// members (`members.value` is case-exact). `None` for any other PATCH (other attributes,
/// `replace`, removing every member, other filters), which sees the whole group.
fn named_members(request: &PatchRequest) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for op in &request.operations {
        let path = Path::parse(op.path.as_deref()?).ok()?;
        let attr = &path.attr;
        let core = attr
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(GROUP_RESOURCE.schema.id));
        if !core || !attr.name.eq_ignore_ascii_case("members") || path.sub_name().is_some() {
            return None;
        }
        match (op.op, &path.filter, &op.value) {
            (PatchOpKind::Add | PatchOpKind::Remove, None, Some(value)) => {
                let items = match value {
                    Value::Array(list) => list.as_slice(),
                    one @ Value::Object(_) => std::slice::from_ref(one),
                    _ => return None,
                };
                for item in items {
                    ids.push(item.as_object()?.get("value")?.as_str()?.to_owned());
                }
            }
            (
                PatchOpKind::Remove,
                Some(Filter::Compare {
                    attr: on,
                    op: CompareOp::Eq,
                    value: Value::String(id),
                }),
                None,
            ) if on.urn.is_none() && on.sub.is_none() && on.name.eq_ignore_ascii_case("value") => {
                ids.push(id.clone());
            }
            _ => return None,
        }
    }
    Some(ids)
}

/// `PUT /Groups/{id}`: a full replace, members included; re-applied like PATCH when another
/// replica changed the group meanwhile and there is no `If-Match`.
pub async fn replace(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    body: Value,
    if_match: Option<&str>,
) -> BridgeResult<GroupWrite> {
    let writing = bridge.engine.writing(scope.tenant.name());
    again_if_changed(id, if_match, "PUT", || {
        replace_once(bridge, scope, id, body.clone(), if_match, &writing)
    })
    .await
}

async fn replace_once(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    body: Value,
    if_match: Option<&str>,
    writing: &Writing,
) -> BridgeResult<GroupWrite> {
    let guard = bridge.lock(scope.tenant.name(), id).await;
    let old = get_row(bridge, scope, id).await?;
    check_if_match(if_match, old.version)?;
    let resource = canonicalize(&GROUP_RESOURCE, body, InputMode::Replace)?;
    let view = GroupView::from_resource(&resource)?;
    let current: HashSet<String> = bridge
        .store
        .group_member_ids(scope.tenant.name(), id)
        .await?
        .into_iter()
        .collect();
    let mut wanted = dedup(&view.member_ids);
    let new: Vec<String> = wanted
        .iter()
        .filter(|m| !current.contains(*m))
        .cloned()
        .collect();
    // Current members are users; only the new ones need a look.
    let Members {
        known: add,
        unknown,
    } = resolve_members(bridge, scope.tenant, &new).await?;
    if !unknown.is_empty() {
        let skipped: HashSet<&String> = unknown.iter().collect();
        wanted.retain(|m| !skipped.contains(m));
    }
    let wanted_set: HashSet<&String> = wanted.iter().collect();
    let remove: Vec<String> = current
        .iter()
        .filter(|m| !wanted_set.contains(m))
        .cloned()
        .collect();
    if storable(resource.clone()) == old.resource && add.is_empty() && remove.is_empty() {
        report_skipped(bridge, scope.tenant, &old.id, &unknown);
        return Ok(GroupWrite {
            row: old,
            known_members: Some(wanted),
            settled: true,
        });
    }
    let pending = write(
        bridge,
        scope,
        old,
        resource,
        &view,
        (&add, &remove),
        writing.pace(),
    )
    .await?;
    drop(guard);
    report_skipped(bridge, scope.tenant, &pending.row.id, &unknown);
    pending.settle(bridge).await
}

/// Refuses a SCIM group that would map to a partner group SCIM must not manage: `All Users`
/// (every user's, always; `Everyone` on an RBAC site), and the privileged `Administrators`
/// (the `Admin` role on an RBAC site) at any site that does not set `allow_admin_grant` (its
/// members are site administrators).
fn check_grantable(tenant: &Tenant, name: &str) -> Result<(), ScimError> {
    if let Some(site) = tenant.sites.iter().find(|s| s.is_everyones(name)) {
        return Err(ScimError::invalid_value(format!(
            "'{}' is the group of every user of site '{}'; it cannot be managed through SCIM",
            site.everyones_group(),
            site.name
        )));
    }
    if name.trim().eq_ignore_ascii_case(ALL_USERS_GROUP) {
        return Err(ScimError::invalid_value(format!(
            "'{ALL_USERS_GROUP}' is the partner's group of every user; it cannot be managed through SCIM"
        )));
    }
    if let Some(site) = tenant
        .sites
        .iter()
        .find(|s| !s.allow_admin_grant && s.privileged(name))
    {
        let what = if site.client.role_site().is_some() {
            format!("the role '{}'", crate::partner::rbac::ADMIN_ROLE)
        } else {
            format!("'{ADMINISTRATORS_GROUP}'")
        };
        return Err(ScimError::invalid_value(format!(
            "{what} makes its members administrators of site '{}'; a SCIM group may map to it \
             only where the site sets allow_admin_grant = true",
            site.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
