//! Thin handlers for `/Users` and `/Groups` (RFC 7644 sections 3.3-3.6): extract, one
//! `bridge::` call, respond. `Location` and `ETag` headers mirror `meta.location` and
//! `meta.version`; group PATCH answers 204 unless a projection was asked for.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::error::{ApiError, ScimJson};
use super::extract::{IfMatch, IfNoneMatch, ScimBody};
use super::query::{ListQuery, ProjectionQuery};
use super::TenantState;
use crate::bridge::reads::{self, ListRequest};
use crate::bridge::users::Scope;
use crate::bridge::{groups, users, Bridge, Tenant};
use crate::scim::patch::PatchRequest;
use crate::scim::projection::Projection;
use crate::scim::schema::{ResourceType, GROUP_RESOURCE, USER_RESOURCE};
use crate::scim::version::{etag, if_none_match_hit};

/// What the resource handlers need: the tenant's HTTP state, its run-time half, the bridge.
#[derive(Clone)]
pub struct ResourceState {
    pub http: TenantState,
    pub tenant: Arc<Tenant>,
    pub bridge: Bridge,
}

impl FromRef<ResourceState> for TenantState {
    fn from_ref(s: &ResourceState) -> TenantState {
        s.http.clone()
    }
}

impl ResourceState {
    fn scope(&self) -> Scope<'_> {
        Scope {
            tenant: &self.tenant,
            base_url: &self.http.base_url,
        }
    }
}

/// The `{id}` of a resource URL. axum's own `Path` answers a segment that is not UTF-8 once
/// percent-decoded (`/Users/%FF`) with a plain-text 400; such an id names no resource, so the
/// client gets the same SCIM 404 as for any unknown id.
pub struct ResourceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(ResourceId(id)),
            Err(_) => Err(crate::scim::ScimError::not_found("The resource was not found.").into()),
        }
    }
}

/// The routes of `/Users` and `/Groups`.
pub fn routes() -> Router<ResourceState> {
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
}

/// A collection path with a trailing slash (`<base>/Users/?filter=...`, `<base>/Groups/`, as
/// the IdPs' own test suites send it) rewritten to the collection (`<base>/Users`), query kept.
/// [`super::app`] applies it before routing, so the router and the OpenAPI document
/// (`openapi/scim-bridge.yaml`, which lists every route) need no second spelling of the
/// collection routes. Only exactly these two paths change: `/Users/x/`, `/Users//` and
/// `/Users/%2F` stay what they are (an unknown id).
pub fn collection_with_trailing_slash(
    base_paths: &[String],
    mut req: axum::extract::Request,
) -> axum::extract::Request {
    let path = req.uri().path();
    let Some(collection) = base_paths.iter().find_map(|base| {
        let rest = path.strip_prefix(base.trim_end_matches('/'))?;
        matches!(rest, "/Users/" | "/Groups/").then(|| &path[..path.len() - 1])
    }) else {
        return req;
    };
    let rewritten = match req.uri().query() {
        Some(q) => format!("{collection}?{q}"),
        None => collection.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = rewritten.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

pub(crate) fn list_request(q: ListQuery, limits: &super::HttpLimits) -> ListRequest {
    ListRequest {
        filter_limits: limits.filter,
        filter: q.filter,
        sort_by: q.sort_by,
        sort_order: q.sort_order,
        paging: q.paging,
        projection: q.projection,
    }
}

/// A single resource with `ETag` (and `Location` when created).
fn resource_response(status: StatusCode, body: Value, version: Option<i64>) -> Response {
    let location = body
        .pointer("/meta/location")
        .and_then(Value::as_str)
        .and_then(|l| HeaderValue::from_str(l).ok());
    let tag = version
        .map(|v| etag(v.max(0) as u64))
        .or_else(|| {
            body.pointer("/meta/version")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .and_then(|t| HeaderValue::from_str(&t).ok());
    let mut res = ScimJson(status, body).into_response();
    let headers = res.headers_mut();
    if let Some(t) = tag {
        headers.insert(header::ETAG, t);
    }
    if status == StatusCode::CREATED {
        if let Some(l) = location {
            headers.insert(header::LOCATION, l);
        }
    }
    res
}

/// Projects a single resource but keeps `meta`: its `version` is the `ETag` the response
/// carries (scim-interop.md: `meta.version` equals `ETag`), and clients rebuild `meta` from it.
fn project_single(p: &Projection, rt: &ResourceType, full: &Value) -> Value {
    let mut v = p.apply(rt, full);
    if let (Some(obj), Some(meta)) = (v.as_object_mut(), full.get("meta")) {
        if !obj.contains_key("meta") {
            obj.insert("meta".into(), meta.clone());
        }
    }
    v
}

fn not_modified(version: i64) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(t) = HeaderValue::from_str(&etag(version.max(0) as u64)) {
        headers.insert(header::ETAG, t);
    }
    (StatusCode::NOT_MODIFIED, headers).into_response()
}

fn version_of(v: &Value) -> Option<i64> {
    v.pointer("/meta/version")
        .and_then(Value::as_str)
        .and_then(crate::scim::version::parse_etag)
        .map(|n| n as i64)
}

// ---- Users -----------------------------------------------------------------------------------

async fn list_users(State(s): State<ResourceState>, q: ListQuery) -> Result<Response, ApiError> {
    list_of_users(&s, q).await
}

/// `GET /Users` and `POST /Users/.search` alike.
async fn list_of_users(s: &ResourceState, q: ListQuery) -> Result<Response, ApiError> {
    let body = reads::list_users(&s.bridge, s.scope(), &list_request(q, &s.http.limits)).await?;
    Ok(ScimJson(StatusCode::OK, body).into_response())
}

async fn search_users(
    State(s): State<ResourceState>,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let q = ListQuery::from_search_body(body, &s.http.limits)?;
    list_of_users(&s, q).await
}

async fn get_user(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfNoneMatch(inm): IfNoneMatch,
) -> Result<Response, ApiError> {
    let (full, version) = reads::get_user(&s.bridge, s.scope(), &id, &p).await?;
    Ok(read_answer(&USER_RESOURCE, &p, inm, full, version))
}

/// A read resource's answer: 304 when `If-None-Match` names its version, else the resource
/// projected, with its version as `ETag`.
fn read_answer(
    rt: &ResourceType,
    p: &Projection,
    if_none_match: Option<String>,
    full: Value,
    version: i64,
) -> Response {
    if if_none_match.is_some_and(|h| if_none_match_hit(&h, version.max(0) as u64)) {
        return not_modified(version);
    }
    resource_response(StatusCode::OK, project_single(p, rt, &full), Some(version))
}

/// A written user's answer: projected, with its version as `ETag`.
fn user_written(status: StatusCode, p: &Projection, v: &Value) -> Response {
    resource_response(status, project_single(p, &USER_RESOURCE, v), version_of(v))
}

async fn create_user(
    State(s): State<ResourceState>,
    ProjectionQuery(p): ProjectionQuery,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let created = users::create(&s.bridge, s.scope(), body).await?;
    Ok(user_written(StatusCode::CREATED, &p, &created))
}

async fn replace_user(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfMatch(im): IfMatch,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let v = users::replace(&s.bridge, s.scope(), &id, body, im.as_deref()).await?;
    Ok(user_written(StatusCode::OK, &p, &v))
}

async fn patch_user(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfMatch(im): IfMatch,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let request = PatchRequest::from_json(&body)?;
    let v = users::patch(&s.bridge, s.scope(), &id, &request, im.as_deref()).await?;
    Ok(user_written(StatusCode::OK, &p, &v))
}

async fn delete_user(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    IfMatch(im): IfMatch,
) -> Result<Response, ApiError> {
    users::delete(&s.bridge, s.scope(), &id, im.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- Groups ----------------------------------------------------------------------------------

async fn list_groups(State(s): State<ResourceState>, q: ListQuery) -> Result<Response, ApiError> {
    list_of_groups(&s, q).await
}

/// `GET /Groups` and `POST /Groups/.search` alike.
async fn list_of_groups(s: &ResourceState, q: ListQuery) -> Result<Response, ApiError> {
    let body = reads::list_groups(&s.bridge, s.scope(), &list_request(q, &s.http.limits)).await?;
    Ok(ScimJson(StatusCode::OK, body).into_response())
}

async fn search_groups(
    State(s): State<ResourceState>,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let q = ListQuery::from_search_body(body, &s.http.limits)?;
    list_of_groups(&s, q).await
}

async fn get_group(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfNoneMatch(inm): IfNoneMatch,
) -> Result<Response, ApiError> {
    let (full, version) = reads::get_group(&s.bridge, s.scope(), &id, &p).await?;
    Ok(read_answer(&GROUP_RESOURCE, &p, inm, full, version))
}

/// Renders a group write's result with the projection.
async fn group_body(
    s: &ResourceState,
    w: &groups::GroupWrite,
    p: &Projection,
) -> Result<Value, ApiError> {
    let v = groups::render(s.scope(), &w.row, Some(&w.members(&s.bridge).await?));
    Ok(project_single(p, &GROUP_RESOURCE, &v))
}

async fn create_group(
    State(s): State<ResourceState>,
    ProjectionQuery(p): ProjectionQuery,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let w = groups::create(&s.bridge, s.scope(), body).await?;
    let body = group_body(&s, &w, &p).await?;
    Ok(resource_response(
        StatusCode::CREATED,
        body,
        Some(w.row.version),
    ))
}

async fn replace_group(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfMatch(im): IfMatch,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let w = groups::replace(&s.bridge, s.scope(), &id, body, im.as_deref()).await?;
    let body = group_body(&s, &w, &p).await?;
    Ok(resource_response(StatusCode::OK, body, Some(w.row.version)))
}

async fn patch_group(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    ProjectionQuery(p): ProjectionQuery,
    IfMatch(im): IfMatch,
    ScimBody(body): ScimBody,
) -> Result<Response, ApiError> {
    let request = PatchRequest::from_json(&body)?;
    let w = groups::patch(&s.bridge, s.scope(), &id, &request, im.as_deref()).await?;
    if p.is_empty() {
        // Entra and Okta expect 204 for group PATCH; the ETag still tells the new version.
        let mut res = StatusCode::NO_CONTENT.into_response();
        if let Ok(t) = HeaderValue::from_str(&etag(w.row.version.max(0) as u64)) {
            res.headers_mut().insert(header::ETAG, t);
        }
        return Ok(res);
    }
    let body = group_body(&s, &w, &p).await?;
    Ok(resource_response(StatusCode::OK, body, Some(w.row.version)))
}

async fn delete_group(
    State(s): State<ResourceState>,
    ResourceId(id): ResourceId,
    IfMatch(im): IfMatch,
) -> Result<Response, ApiError> {
    groups::delete(&s.bridge, s.scope(), &id, im.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn an_id_that_is_not_utf8_is_a_scim_404() {
        let app: Router = Router::new().route(
            "/Users/{id}",
            get(|ResourceId(id): ResourceId| async move { id }),
        );
        for (uri, status) in [
            ("/Users/%FF%FE", StatusCode::NOT_FOUND),
            ("/Users/%C0%AF", StatusCode::NOT_FOUND),
            ("/Users/abc%2Fdef", StatusCode::OK),
        ] {
            let res = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{uri}");
            let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
            if status == StatusCode::NOT_FOUND {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["status"], "404", "{uri}: {v}");
                assert_eq!(
                    v["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                    "{uri}"
                );
            } else {
                assert_eq!(&bytes[..], b"abc/def");
            }
        }
    }
}
