//! The calls of RBAC sites over HTTP (section 4.2 of `partner-api.md`), and the 404 each kind
//! of site answers on the other kind's paths.
//!
//! | call | route |
//! |---|---|
//! | list / create user | `GET [?next_page_start=C]`, `POST` `/api/v2/users` |
//! | get / update / delete user | `GET`, `PUT`, `DELETE` `/api/v2/users/<percent-encoded id>` |
//! | list / create role | `GET`, `POST` `/api/v1/roles` |
//! | get / update / delete role | `GET`, `PUT`, `DELETE` `/api/v1/roles/<percent-encoded id>` |
//!
//! The order of work is that of a v1 call (`router.rs`): log its start, authenticate (401),
//! count it, apply faults, run it under the site lock, shape the answer. A call of the wrong kind
//! of site is answered 404 before all of that, like a path that is no route: it is neither
//! logged nor counted. In the call log, `email` is the user's (of the body on a create, else of
//! the user the id names) and `group` the role's name (likewise).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::super::router::{
    carry_out, error_response, json_body, method_not_allowed, not_found, test_mode, Recorder,
};
use super::super::state::ApiError;
use super::super::{lock, CallRecord, Emulator, Site, SiteKind, Switches, WireShape};
use super::state::{RbacReply, RbacState};
use crate::partner::{CallKind, PartnerRole, PartnerUserV2};

const USERS_PATH: &str = "/api/v2/users";
const ROLES_PATH: &str = "/api/v1/roles";

/// The routes of RBAC sites, to be merged into the partner routes.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route(USERS_PATH, any(users))
        .route("/api/v2/users/{*id}", any(user))
        .route(ROLES_PATH, any(roles))
        .route("/api/v1/roles/{*id}", any(role))
}

/// 404 when the request authenticates as a site whose kind is not `route_kind`, naming what
/// the site uses; `None` otherwise (an unauthenticated request goes on, to be answered 401).
pub(crate) fn wrong_kind(
    em: &Emulator,
    headers: &HeaderMap,
    route_kind: SiteKind,
) -> Option<Response> {
    let site = em.authenticate(headers).ok()?;
    let message = match site.kind() {
        kind if kind == route_kind => return None,
        SiteKind::Rbac => format!(
            "site `{}` uses roles (RBAC): its users are under /api/v2/users and its roles under /api/v1/roles",
            site.name
        ),
        SiteKind::V1 => format!(
            "site `{}` uses groups: its users are under /api/v1/users and its groups under /api/v1/groups",
            site.name
        ),
    };
    Some(error_response(StatusCode::NOT_FOUND, &message))
}

/// The id after `prefix/` in the raw path, percent-decoded; `None` when empty or holding an
/// unencoded `/` (404), `Some(Err)` when not valid percent-encoded UTF-8 (400).
fn path_id(uri: &Uri, prefix: &str) -> Option<Result<String, ()>> {
    let raw = uri
        .path()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or_default();
    if raw.is_empty() || raw.contains('/') {
        return None;
    }
    Some(
        percent_decode_str(raw)
            .decode_utf8()
            .map(|id| id.into_owned())
            .map_err(|_| ()),
    )
}

/// A query parameter, percent-decoded; the last occurrence wins.
fn query_value(uri: &Uri, name: &str) -> Option<String> {
    let mut value = None;
    for pair in uri.query().unwrap_or_default().split('&') {
        let (key, val) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            value = Some(percent_decode_str(val).decode_utf8_lossy().into_owned());
        }
    }
    value
}

async fn users(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::Rbac) {
        return answer;
    }
    let call = match method {
        Method::GET => CallKind::ListUsersV2,
        Method::POST => CallKind::CreateUserV2,
        _ => return method_not_allowed("GET, POST"),
    };
    em.handle_rbac(call, &uri, &headers, &body, None).await
}

async fn user(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::Rbac) {
        return answer;
    }
    let Some(id) = path_id(&uri, USERS_PATH) else {
        return not_found().await;
    };
    let call = match method {
        Method::GET => CallKind::GetUserV2,
        Method::PUT => CallKind::UpdateUserV2,
        Method::DELETE => CallKind::DeleteUserV2,
        _ => return method_not_allowed("GET, PUT, DELETE"),
    };
    em.handle_rbac(call, &uri, &headers, &body, Some(id)).await
}

async fn roles(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::Rbac) {
        return answer;
    }
    let call = match method {
        Method::GET => CallKind::ListRoles,
        Method::POST => CallKind::CreateRole,
        _ => return method_not_allowed("GET, POST"),
    };
    em.handle_rbac(call, &uri, &headers, &body, None).await
}

async fn role(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::Rbac) {
        return answer;
    }
    let Some(id) = path_id(&uri, ROLES_PATH) else {
        return not_found().await;
    };
    let call = match method {
        Method::GET => CallKind::GetRole,
        Method::PUT => CallKind::UpdateRole,
        Method::DELETE => CallKind::DeleteRole,
        _ => return method_not_allowed("GET, PUT, DELETE"),
    };
    em.handle_rbac(call, &uri, &headers, &body, Some(id)).await
}

/// Everything an RBAC call needs once the request is taken apart.
struct RbacRequest {
    call: CallKind,
    test_mode: Result<bool, ApiError>,
    /// The id in the path.
    id: Option<Result<String, ()>>,
    /// `next_page_start` of a user list.
    cursor: Option<String>,
    body: Result<Value, ApiError>,
}

impl RbacRequest {
    /// What the call log says of the call: the user's email and the role's name, from the body
    /// of a create or from the user or role the id names.
    fn labels(&self, state: &RbacState) -> (Option<String>, Option<String>) {
        let body_field = |field: &str| {
            self.body
                .as_ref()
                .ok()
                .and_then(|b| b.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let id = self.id.as_ref().and_then(|id| id.as_deref().ok());
        match self.call {
            CallKind::CreateUserV2 => (body_field("email"), None),
            CallKind::GetUserV2 | CallKind::UpdateUserV2 | CallKind::DeleteUserV2 => (
                id.and_then(|id| state.user(id)).map(|u| u.email.clone()),
                None,
            ),
            CallKind::CreateRole => (None, body_field("name")),
            CallKind::GetRole | CallKind::UpdateRole | CallKind::DeleteRole => (
                None,
                id.and_then(|id| state.role(id)).map(|r| r.name.clone()),
            ),
            _ => (None, None),
        }
    }
}

impl Emulator {
    /// One RBAC call, from the request to the answer (the counterpart of the v1 `handle`).
    async fn handle_rbac(
        &self,
        call: CallKind,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        id: Option<Result<String, ()>>,
    ) -> Response {
        let started_us = self.now_us();
        let body = if matches!(
            call,
            CallKind::CreateUserV2
                | CallKind::UpdateUserV2
                | CallKind::CreateRole
                | CallKind::UpdateRole
        ) {
            json_body(body)
        } else {
            Ok(Value::Null)
        };
        let request = RbacRequest {
            call,
            test_mode: test_mode(uri),
            id,
            cursor: query_value(uri, "next_page_start"),
            body,
        };
        let mut recorder = Recorder {
            emulator: self,
            record: CallRecord {
                seq: 0,
                site: String::new(),
                call,
                test_mode: request.test_mode.clone().unwrap_or(false),
                email: None,
                group: None,
                status: 0,
                started_us,
                finished_us: 0,
            },
            status: None,
        };

        let site = match self.authenticate(headers) {
            Ok(site) => site,
            Err(err) => {
                recorder.status = Some(err.status.as_u16());
                return error_response(err.status, &err.message);
            }
        };
        recorder.record.site.clone_from(&site.name);
        if let Some(state) = &site.rbac {
            let (email, role) = request.labels(&lock(state));
            recorder.record.email = email;
            recorder.record.group = role;
        }
        if let Some(counter) = site.counter(call, recorder.record.test_mode) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        let plan = lock(&site.injector).plan(call, tokio::time::Instant::now());
        let after = match self.before_call(plan, &mut recorder).await {
            Ok(after) => after,
            Err(response) => return response,
        };
        carry_out(site, after, &mut recorder, || site.execute_rbac(request))
    }
}

impl Site {
    /// Runs an RBAC call under the site's RBAC lock (the switches are read first, under the
    /// other lock, never both held) and serializes its answer outside it.
    fn execute_rbac(&self, request: RbacRequest) -> (StatusCode, Bytes) {
        let switches = lock(&self.state).switches.clone();
        let result = match &self.rbac {
            Some(state) => run(&mut lock(state), &switches, request),
            None => Err(ApiError::not_found(format!(
                "site `{}` uses groups, not roles",
                self.name
            ))),
        };
        let body = match result {
            Ok(reply) => Ok(render(reply, switches.wire_shape)),
            Err(err) => Err(err),
        };
        let (status, body) = match body {
            Ok(body) => (StatusCode::OK, body),
            Err(err) => (err.status, json!({ "error": err.message })),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        (status, Bytes::from(bytes))
    }
}

fn required_id(id: Option<Result<String, ()>>) -> Result<String, ApiError> {
    match id {
        Some(Ok(id)) => Ok(id),
        _ => Err(ApiError::bad_request(
            "the id in the path is not valid percent-encoded UTF-8",
        )),
    }
}

fn run(
    state: &mut RbacState,
    switches: &Switches,
    request: RbacRequest,
) -> Result<RbacReply, ApiError> {
    let test_mode = request.test_mode?;
    match request.call {
        CallKind::ListUsersV2 => state.list_users(
            request.cursor.as_deref(),
            switches.wire_shape != WireShape::Bare,
        ),
        CallKind::GetUserV2 => state.get_user(&required_id(request.id)?),
        CallKind::CreateUserV2 => state.create_user(&request.body?, test_mode),
        CallKind::UpdateUserV2 => {
            let body = request.body?;
            state.update_user(&required_id(request.id)?, &body, switches, test_mode)
        }
        CallKind::DeleteUserV2 => state.delete_user(&required_id(request.id)?, test_mode),
        CallKind::ListRoles => state.list_roles(),
        CallKind::GetRole => state.get_role(&required_id(request.id)?),
        CallKind::CreateRole => state.create_role(&request.body?, test_mode),
        CallKind::UpdateRole => {
            let body = request.body?;
            state.update_role(&required_id(request.id)?, &body, test_mode)
        }
        CallKind::DeleteRole => state.delete_role(&required_id(request.id)?, test_mode),
        CallKind::ListUsers
        | CallKind::GetUser
        | CallKind::CreateUser
        | CallKind::UpdateUser
        | CallKind::DeleteUser
        | CallKind::ListGroups
        | CallKind::GetGroup
        | CallKind::CreateGroup
        | CallKind::UpdateGroup
        | CallKind::DeleteGroup => Err(ApiError::not_found(format!(
            "`{}` is a call of v1 sites",
            request.call
        ))),
    }
}

fn user_value(user: &PartnerUserV2) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "roles": user.roles,
    })
}

fn role_value(role: &PartnerRole) -> Value {
    json!({
        "id": role.id,
        "name": role.name,
        "description": role.description,
        "privileges": role.privileges,
        "permissions": role.permissions,
    })
}

/// Shapes an answer per the site's [`WireShape`]: `standard` as the contract; `bare` lists as
/// arrays (the user list then unpaged); `wrapped` lists under `data` (the user list's cursor and
/// count beside it) and single objects under `user` / `role`.
fn render(reply: RbacReply, shape: WireShape) -> Value {
    let single = |key: &str, item: Value| match shape {
        WireShape::Wrapped => json!({ key: item }),
        WireShape::Standard | WireShape::Bare => item,
    };
    match reply {
        RbacReply::UserPage {
            users,
            next_page_start,
        } => {
            let items: Vec<Value> = users.iter().map(user_value).collect();
            let count = items.len();
            match shape {
                WireShape::Bare => Value::Array(items),
                WireShape::Standard => json!({
                    "users": items,
                    "next_page_start": next_page_start,
                    "items_this_page": count,
                }),
                WireShape::Wrapped => json!({
                    "data": items,
                    "next_page_start": next_page_start,
                    "items_this_page": count,
                }),
            }
        }
        RbacReply::User(user) => single("user", user_value(&user)),
        RbacReply::Roles(roles) => {
            let items: Vec<Value> = roles.iter().map(role_value).collect();
            match shape {
                WireShape::Standard => json!({ "roles": items }),
                WireShape::Bare => Value::Array(items),
                WireShape::Wrapped => json!({ "data": items }),
            }
        }
        RbacReply::Role(role) => single("role", role_value(&role)),
        RbacReply::Empty => json!({}),
    }
}
