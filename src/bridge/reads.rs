//! Reads: every `GET` and `.search` is served from the store, never by listing the partner.
//! A filter on an indexed attribute becomes a query (the filter's index plan); what the index
//! cannot answer is evaluated by the SCIM evaluator on the candidates. `excludedAttributes=
//! members` never touches the membership index.

use serde_json::Value;

use super::users::Scope;
use super::{groups, users, Bridge, BridgeResult};
use crate::scim::filter::{parse_filter, Filter, FilterLimits, IndexPlan, IndexedAttr};
use crate::scim::list::{list_response, Paging};
use crate::scim::projection::Projection;
use crate::scim::schema::{AttrRef, ResourceType, GROUP_RESOURCE, USER_RESOURCE};
use crate::scim::sort::{sort_resources, validate_sort_by, SortOrder};
use crate::store::{GroupRow, IndexTerm, UserRow};

/// A list or search request, parsed.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub sort_by: Option<AttrRef>,
    pub sort_order: SortOrder,
    pub paging: Paging,
    pub projection: Projection,
    /// Length and depth limits of the filter.
    pub filter_limits: FilterLimits,
}

fn parse(rt: &ResourceType, req: &ListRequest) -> BridgeResult<Option<(Filter, IndexPlan)>> {
    let Some(text) = req
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    else {
        return Ok(None);
    };
    let f = parse_filter(text, &req.filter_limits)?;
    f.validate(rt)?;
    let plan = f.index_plan(rt);
    Ok(Some((f, plan)))
}

fn store_terms(plan: &IndexPlan) -> Vec<IndexTerm> {
    plan.terms
        .iter()
        .map(|t| match t.attr {
            IndexedAttr::Id => IndexTerm::Id(t.value.clone()),
            IndexedAttr::UserName => IndexTerm::UserName(t.value.clone()),
            IndexedAttr::ExternalId => IndexTerm::ExternalId(t.value.clone()),
            IndexedAttr::DisplayName => IndexTerm::DisplayName(t.value.clone()),
            IndexedAttr::EmailValue => IndexTerm::EmailValue(t.value.clone()),
            IndexedAttr::MemberValue => IndexTerm::MemberValue(t.value.clone()),
        })
        .collect()
}

fn sort_ref(rt: &ResourceType, req: &ListRequest) -> BridgeResult<Option<AttrRef>> {
    match &req.sort_by {
        None => Ok(None),
        Some(s) => {
            validate_sort_by(rt, s)?;
            Ok(Some(s.clone()))
        }
    }
}

/// Whether rendering must include the membership-derived attribute (`groups` of a user,
/// `members` of a group): asked for by the projection, or used by the filter or the sort.
fn needs(
    rt: &ResourceType,
    req: &ListRequest,
    filter: Option<&Filter>,
    sort: Option<&AttrRef>,
    attr: &str,
) -> bool {
    req.projection.wants(rt, attr)
        || filter.is_some_and(|f| {
            f.to_string()
                .to_ascii_lowercase()
                .contains(&attr.to_ascii_lowercase())
        })
        || sort.is_some_and(|s| s.name.eq_ignore_ascii_case(attr))
}

/// A list request's filter with its index plan.
type Parsed = Option<(Filter, IndexPlan)>;

/// What a list request asks of one resource type: its filter with the index plan, its sort,
/// and whether the answer needs `attr` (a user's groups, a group's members: a read per
/// resource), asked for or filtered or sorted on.
fn query(
    rt: &ResourceType,
    req: &ListRequest,
    attr: &str,
) -> BridgeResult<(Parsed, Option<AttrRef>, bool)> {
    let parsed = parse(rt, req)?;
    let sort = sort_ref(rt, req)?;
    let with = needs(
        rt,
        req,
        parsed.as_ref().map(|(f, _)| f),
        sort.as_ref(),
        attr,
    );
    Ok((parsed, sort, with))
}

/// `GET /Users` and `POST /Users/.search`.
pub async fn list_users(
    bridge: &Bridge,
    scope: Scope<'_>,
    req: &ListRequest,
) -> BridgeResult<Value> {
    let rt = &USER_RESOURCE;
    let tenant = scope.tenant.name();
    let (parsed, sort, with_groups) = query(rt, req, "groups")?;

    // No filter, no sort: page in the database.
    if parsed.is_none() && sort.is_none() {
        let total = bridge.store.count_users(tenant).await? as usize;
        let range = req.paging.range(total);
        let rows = if range.is_empty() {
            Vec::new()
        } else {
            bridge
                .store
                .list_users_page(tenant, range.start as u64, range.len() as u64)
                .await?
        };
        let out = render_users(bridge, scope, rows, with_groups)
            .await?
            .iter()
            .map(|v| req.projection.apply(rt, v))
            .collect();
        return Ok(list_response(total, req.paging.start_index, out));
    }

    let mut rows = match &parsed {
        Some((_, plan)) => bridge.store.find_users(tenant, &store_terms(plan)).await?,
        None => bridge.store.find_users(tenant, &[]).await?,
    };
    // A `userName eq` that misses may import the partner user of that email.
    if rows.is_empty() {
        if let Some((_, plan)) = &parsed {
            if let ([t], None) = (plan.terms.as_slice(), &plan.residual) {
                if t.attr == IndexedAttr::UserName {
                    if let Some(row) = users::import_on_lookup(bridge, scope, &t.value).await? {
                        rows.push(row);
                    }
                }
            }
        }
    }
    let resources = render_users(bridge, scope, rows, with_groups).await?;
    finish(rt, req, parsed.as_ref(), sort.as_ref(), resources)
}

/// Users as resources, with their groups (one query for all) when `with_groups`.
async fn render_users(
    bridge: &Bridge,
    scope: Scope<'_>,
    rows: Vec<UserRow>,
    with_groups: bool,
) -> BridgeResult<Vec<Value>> {
    if with_groups {
        users::render_many(bridge, scope, rows).await
    } else {
        Ok(rows
            .iter()
            .map(|row| users::with_meta(scope, row))
            .collect())
    }
}

/// Residual filter, sort, page, project.
fn finish(
    rt: &ResourceType,
    req: &ListRequest,
    parsed: Option<&(Filter, IndexPlan)>,
    sort: Option<&AttrRef>,
    mut resources: Vec<Value>,
) -> BridgeResult<Value> {
    if let Some((_, plan)) = parsed {
        if let Some(residual) = &plan.residual {
            resources.retain(|r| residual.matches(rt, r));
        }
    }
    if let Some(s) = sort {
        sort_resources(rt, &mut resources, s, req.sort_order);
    }
    let total = resources.len();
    let range = req.paging.range(total);
    let page: Vec<Value> = resources
        .drain(range)
        .map(|r| req.projection.apply(rt, &r))
        .collect();
    Ok(list_response(total, req.paging.start_index, page))
}

/// `GET /Groups` and `POST /Groups/.search`.
pub async fn list_groups(
    bridge: &Bridge,
    scope: Scope<'_>,
    req: &ListRequest,
) -> BridgeResult<Value> {
    let rt = &GROUP_RESOURCE;
    let tenant = scope.tenant.name();
    let (parsed, sort, with_members) = query(rt, req, "members")?;
    let render = |row: GroupRow| async move {
        let members = if with_members {
            Some(groups::members(bridge, tenant, &row.id).await?)
        } else {
            None
        };
        BridgeResult::Ok(groups::render(scope, &row, members.as_deref()))
    };
    if parsed.is_none() && sort.is_none() {
        let total = bridge.store.count_groups(tenant).await? as usize;
        let range = req.paging.range(total);
        let rows = if range.is_empty() {
            Vec::new()
        } else {
            bridge
                .store
                .list_groups_page(tenant, range.start as u64, range.len() as u64)
                .await?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(req.projection.apply(rt, &render(row).await?));
        }
        return Ok(list_response(total, req.paging.start_index, out));
    }
    let rows = match &parsed {
        Some((_, plan)) => bridge.store.find_groups(tenant, &store_terms(plan)).await?,
        None => bridge.store.find_groups(tenant, &[]).await?,
    };
    let mut resources = Vec::with_capacity(rows.len());
    for row in rows {
        resources.push(render(row).await?);
    }
    finish(rt, req, parsed.as_ref(), sort.as_ref(), resources)
}

/// `GET /Users/{id}`: the resource, not yet projected (the projection only decides whether
/// `groups` is read), and its version (for `ETag`).
pub async fn get_user(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    projection: &Projection,
) -> BridgeResult<(Value, i64)> {
    let row = users::get_row(bridge, scope, id).await?;
    let v = if projection.wants(&USER_RESOURCE, "groups") {
        users::render(bridge, scope, &row).await?
    } else {
        users::with_meta(scope, &row)
    };
    Ok((v, row.version))
}

/// `GET /Groups/{id}`: the resource, not yet projected (the projection only decides whether
/// `members` is read), and its version.
pub async fn get_group(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    projection: &Projection,
) -> BridgeResult<(Value, i64)> {
    let row = groups::get_row(bridge, scope, id).await?;
    let members = if projection.wants(&GROUP_RESOURCE, "members") {
        Some(groups::members(bridge, scope.tenant.name(), id).await?)
    } else {
        None
    };
    let v = groups::render(scope, &row, members.as_deref());
    Ok((v, row.version))
}
