//! `POST {base}/.search` across every resource type (RFC 7644 section 3.4.3) and `POST
//! {base}/Bulk` (section 3.7), both dispatching to the same bridge calls as the resource
//! handlers.

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::error::{ApiError, ScimJson};
use super::extract::ScimBody;
use super::query::ListQuery;
use super::resources::{list_request, ResourceState};
use super::HttpLimits;
use crate::bridge::users::Scope;
use crate::bridge::{groups, reads, users, Bridge, BridgeError};
use crate::scim::bulk::{
    bulk_dependency_order, resolve_bulk_id_in_path, resolve_bulk_ids, BulkMethod, BulkOperation,
    BulkOperationResponse, BulkRequest, BulkResponse,
};
use crate::scim::list::{list_response, Paging};
use crate::scim::patch::PatchRequest;
use crate::scim::ScimError;

pub fn routes(limits: &HttpLimits) -> Router<ResourceState> {
    Router::new()
        .route("/.search", post(search_all))
        // `/Bulk` has its own body limit (`bulk.maxPayloadSize`): a larger body is refused
        // while it is read, with a SCIM 413.
        .route(
            "/Bulk",
            post(bulk).layer(DefaultBodyLimit::max(limits.bulk_max_payload_bytes)),
        )
}

/// Users then groups, one filter for both; a filter that does not apply to a resource type
/// (an attribute it does not have) matches none of its resources.
async fn search_all(
    State(s): State<ResourceState>,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let q = ListQuery::from_search_body(body, &s.http.limits)?;
    let scope = Scope {
        tenant: &s.tenant,
        base_url: &s.http.base_url,
    };
    let mut all = list_request(q, &s.http.limits);
    let paging = all.paging;
    // Fetch every match of both types (up to the server maximum), then page the union.
    all.paging = Paging::from_numbers(
        Some(1),
        Some(s.http.limits.max_results as i64),
        0,
        s.http.limits.max_results,
    );
    let mut resources = Vec::new();
    let mut total = 0usize;
    let mut answered = false;
    let mut last_error = None;
    for result in [
        reads::list_users(&s.bridge, scope, &all).await,
        reads::list_groups(&s.bridge, scope, &all).await,
    ] {
        match result {
            Ok(v) => {
                answered = true;
                total += v["totalResults"].as_u64().unwrap_or(0) as usize;
                if let Some(items) = v["Resources"].as_array() {
                    resources.extend(items.iter().cloned());
                }
            }
            Err(e) if e.error.status == 400 => last_error = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    if !answered {
        if let Some(e) = last_error {
            return Err(e.into());
        }
    }
    let total = total.max(resources.len());
    let range = paging.range(resources.len());
    let page: Vec<Value> = resources.drain(range).collect();
    Ok(ScimJson(
        StatusCode::OK,
        list_response(total, paging.start_index, page),
    )
    .into_response())
}

/// `POST /Bulk`: operations in dependency order of their `bulkId` references; `failOnErrors`
/// stops after that many errors. Limits are the advertised ones (413 beyond them).
async fn bulk(
    State(s): State<ResourceState>,
    ScimBody(value): ScimBody,
) -> Result<Response, ApiError> {
    let limits = &s.http.limits;
    let request: BulkRequest = serde_json::from_value(value)
        .map_err(|e| ScimError::invalid_syntax(format!("Not a valid BulkRequest: {e}")))?;
    request.validate(limits.bulk_max_operations)?;
    let order = bulk_dependency_order(&request.operations)?;
    let scope = Scope {
        tenant: &s.tenant,
        base_url: &s.http.base_url,
    };
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut responses = Vec::new();
    let mut errors = 0usize;
    for i in order {
        let Some(op) = request.operations.get(i) else {
            continue;
        };
        let result = run_operation(&s, scope, op, &ids).await;
        match result {
            Ok((resp, created_id)) => {
                if let (Some(b), Some(id)) = (&op.bulk_id, created_id) {
                    ids.insert(b.clone(), id);
                }
                responses.push(resp);
            }
            Err(e) => {
                errors += 1;
                responses.push(BulkOperationResponse::error(op, &e.error));
                if request.should_stop(errors) {
                    break;
                }
            }
        }
    }
    Ok(ScimJson(
        StatusCode::OK,
        BulkResponse {
            operations: responses,
        }
        .to_value(),
    )
    .into_response())
}

/// Which resource an operation path names.
enum Target {
    Users(Option<String>),
    Groups(Option<String>),
}

fn target(path: &str) -> Result<Target, ScimError> {
    let p = path.trim().trim_end_matches('/');
    let mut parts = p.trim_start_matches('/').splitn(2, '/');
    let kind = parts.next().unwrap_or("");
    let id = parts.next().map(str::to_owned);
    if id
        .as_deref()
        .is_some_and(|i| i.is_empty() || i.contains('/'))
    {
        return Err(ScimError::invalid_path(format!(
            "'{path}' is not a resource path"
        )));
    }
    match kind {
        "Users" => Ok(Target::Users(id)),
        "Groups" => Ok(Target::Groups(id)),
        _ => Err(ScimError::invalid_path(format!(
            "'{path}' is not /Users or /Groups"
        ))),
    }
}

/// Runs one operation of a Bulk request: resolves its bulkIds, dispatches it, and answers
/// with its response and the id of the resource it created (for later bulkIds).
async fn run_operation(
    s: &ResourceState,
    scope: Scope<'_>,
    op: &BulkOperation,
    ids: &HashMap<String, String>,
) -> Result<(BulkOperationResponse, Option<String>), BridgeError> {
    let method = op.check()?;
    let (path, data) = resolved(op, ids)?;
    let (status, body, new_id) = dispatch(&s.bridge, scope, method, op, &path, data).await?;
    Ok((response(method, op, status, body.as_ref()), new_id))
}

/// The operation's path and data with the bulkIds of earlier operations replaced by the ids
/// they created (409 for a bulkId no earlier operation created).
fn resolved(
    op: &BulkOperation,
    ids: &HashMap<String, String>,
) -> Result<(String, Value), ScimError> {
    let path = resolve_bulk_id_in_path(&op.path, ids).map_err(|b| {
        ScimError::new(
            409,
            None,
            format!("bulkId '{b}' was not created by an earlier operation"),
        )
    })?;
    let mut data = op.data.clone().unwrap_or(Value::Null);
    resolve_bulk_ids(&mut data, ids).map_err(|missing| {
        ScimError::new(
            409,
            None,
            format!("bulkId references not resolved: {}", missing.join(", ")),
        )
    })?;
    Ok((path, data))
}

/// Runs the operation on its resource: the status, the resource as it is now (if any) and the
/// id of a created one.
async fn dispatch(
    bridge: &Bridge,
    scope: Scope<'_>,
    method: BulkMethod,
    op: &BulkOperation,
    path: &str,
    data: Value,
) -> Result<(u16, Option<Value>, Option<String>), BridgeError> {
    let version = op.version.as_deref();
    let answer = match (method, target(path)?) {
        (BulkMethod::Post, Target::Users(None)) => {
            let v = users::create(bridge, scope, data).await?;
            let id = v["id"].as_str().map(str::to_owned);
            (201, Some(v), id)
        }
        (BulkMethod::Post, Target::Groups(None)) => {
            let w = groups::create(bridge, scope, data).await?;
            let v = groups::render(scope, &w.row, Some(&w.members(bridge).await?));
            (201, Some(v), Some(w.row.id))
        }
        (BulkMethod::Put, Target::Users(Some(id))) => (
            200,
            Some(users::replace(bridge, scope, &id, data, version).await?),
            None,
        ),
        (BulkMethod::Put, Target::Groups(Some(id))) => {
            let w = groups::replace(bridge, scope, &id, data, version).await?;
            let v = groups::render(scope, &w.row, Some(&w.members(bridge).await?));
            (200, Some(v), None)
        }
        (BulkMethod::Patch, Target::Users(Some(id))) => {
            let req = PatchRequest::from_json(&data)?;
            (
                200,
                Some(users::patch(bridge, scope, &id, &req, version).await?),
                None,
            )
        }
        (BulkMethod::Patch, Target::Groups(Some(id))) => {
            let req = PatchRequest::from_json(&data)?;
            let w = groups::patch(bridge, scope, &id, &req, version).await?;
            let v = groups::render(scope, &w.row, Some(&w.members(bridge).await?));
            (200, Some(v), None)
        }
        (BulkMethod::Delete, Target::Users(Some(id))) => {
            users::delete(bridge, scope, &id, version).await?;
            (204, None, None)
        }
        (BulkMethod::Delete, Target::Groups(Some(id))) => {
            groups::delete(bridge, scope, &id, version).await?;
            (204, None, None)
        }
        _ => {
            return Err(ScimError::invalid_path(format!(
                "{} is not allowed on '{}'",
                method.as_str(),
                op.path
            ))
            .into())
        }
    };
    Ok(answer)
}

/// The operation's entry in the Bulk response, with the location and version of the resource
/// when there is one.
fn response(
    method: BulkMethod,
    op: &BulkOperation,
    status: u16,
    body: Option<&Value>,
) -> BulkOperationResponse {
    let location = body
        .and_then(|b| b.pointer("/meta/location"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let version = body
        .and_then(|b| b.pointer("/meta/version"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    BulkOperationResponse {
        method: method.as_str().to_owned(),
        bulk_id: op.bulk_id.clone(),
        version,
        location,
        status: status.to_string(),
        // RFC 7644 section 3.7.3: the response body only for errors.
        response: None,
    }
}
