//! The partner API over HTTP: routes, authentication, `test_mode`, fault application, wire
//! shapes and the call log (section 2 of `partner-api.md`).
//!
//! | call | route |
//! |---|---|
//! | list / get / create / update / delete user | `GET`, `GET`+`HTTP-X-EMAIL`, `POST`, `PUT`+`HTTP-X-EMAIL`, `DELETE`+`HTTP-X-EMAIL` `/api/v1/users` |
//! | list / create group | `GET`, `POST` `/api/v1/groups` |
//! | get / update / delete group | `GET`, `PUT`, `DELETE` `/api/v1/groups/<percent-encoded name>` |
//!
//! Order of work for a call: log its start, authenticate (401), count it, apply faults (latency,
//! then a scripted / rate-limit / random fault), run it under the site lock, shape the answer.
//! The group name is taken from the raw path and percent-decoded here, so `%2F` stays part of a
//! name; an unencoded `/` inside a name is a 404, as it would be on a path-routed server.
//!
//! The routes of RBAC sites live in [`super::rbac::router`]; an RBAC site that calls a route
//! here is answered 404 by [`super::rbac::router::wrong_kind`] before anything else.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::injector::{Action, Plan};
use super::rbac::router::wrong_kind;
use super::state::{ApiError, Reply};
use super::{lock, CallRecord, Emulator, Site, SiteKind, WireShape};
use crate::partner::{CallKind, PartnerGroup, PartnerUser};

/// The authentication header: `<site_name>:<api_key>`.
pub const AUTH_HEADER: &str = "http-x-partner-auth";
/// The header that addresses one user.
pub const EMAIL_HEADER: &str = "http-x-email";

const USERS_PATH: &str = "/api/v1/users";
const GROUPS_PATH: &str = "/api/v1/groups";

/// After a dropped answer's first bytes are sent, wait this long (so they reach the client) before
/// closing the connection.
const DROP_AFTER: Duration = Duration::from_millis(20);

/// The partner routes, to be given the emulator as state.
pub(crate) fn partner_routes() -> Router<Emulator> {
    Router::new()
        .route(USERS_PATH, any(users))
        .route(GROUPS_PATH, any(groups))
        .route("/api/v1/groups/{*name}", any(group))
        .merge(super::rbac::router::routes())
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    bytes_response(status, Bytes::from(bytes))
}

pub(super) fn bytes_response(status: StatusCode, bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}` with the status.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// The answer to a path that is no route.
pub(crate) async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found")
}

pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A header's value as UTF-8 (`None` when absent, `Some(Err)` when not UTF-8).
pub(super) fn header_text(headers: &HeaderMap, name: &str) -> Option<Result<String, ()>> {
    headers
        .get(name)
        .map(|v| String::from_utf8(v.as_bytes().to_vec()).map_err(|_| ()))
}

async fn users(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::V1) {
        return answer;
    }
    let has_email = headers.contains_key(EMAIL_HEADER);
    let call = match method {
        Method::GET if has_email => CallKind::GetUser,
        Method::GET => CallKind::ListUsers,
        Method::POST => CallKind::CreateUser,
        Method::PUT => CallKind::UpdateUser,
        Method::DELETE => CallKind::DeleteUser,
        _ => return method_not_allowed("GET, POST, PUT, DELETE"),
    };
    em.handle(call, &uri, &headers, &body, None).await
}

async fn groups(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::V1) {
        return answer;
    }
    let call = match method {
        Method::GET => CallKind::ListGroups,
        Method::POST => CallKind::CreateGroup,
        _ => return method_not_allowed("GET, POST"),
    };
    em.handle(call, &uri, &headers, &body, None).await
}

async fn group(
    State(em): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = wrong_kind(&em, &headers, SiteKind::V1) {
        return answer;
    }
    let raw = uri
        .path()
        .strip_prefix(GROUPS_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or_default();
    if raw.is_empty() || raw.contains('/') {
        return not_found().await;
    }
    let call = match method {
        Method::GET => CallKind::GetGroup,
        Method::PUT => CallKind::UpdateGroup,
        Method::DELETE => CallKind::DeleteGroup,
        _ => return method_not_allowed("GET, PUT, DELETE"),
    };
    let name = percent_decode_str(raw)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| ());
    em.handle(call, &uri, &headers, &body, Some(name)).await
}

/// `test_mode` from the query: `true`/`1` (any case) is a dry run, `false`/`0`/absent applies,
/// anything else is 400 (a typo must not apply a change). The last occurrence wins.
pub(super) fn test_mode(uri: &Uri) -> Result<bool, ApiError> {
    let mut value = None;
    for pair in uri.query().unwrap_or_default().split('&') {
        let (key, val) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "test_mode" {
            value = Some(percent_decode_str(val).decode_utf8_lossy().into_owned());
        }
    }
    match value {
        None => Ok(false),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::bad_request(format!(
                "test_mode must be true or false, got `{v}`"
            ))),
        },
    }
}

/// The request body as JSON; an empty body is `{}`.
pub(super) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("malformed JSON body: {err}")))
}

/// Logs a call when dropped: with the status set, or 0 when the answer never completed (a
/// dropped connection, or a client that went away while the call hung).
pub(super) struct Recorder<'a> {
    pub(super) emulator: &'a Emulator,
    pub(super) record: CallRecord,
    pub(super) status: Option<u16>,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        let mut record = self.record.clone();
        record.status = self.status.unwrap_or(0);
        record.finished_us = self.emulator.now_us();
        self.emulator.push_record(record);
    }
}

/// Everything a call needs once the request is taken apart.
struct Request {
    call: CallKind,
    test_mode: Result<bool, ApiError>,
    email: Option<Result<String, ()>>,
    group: Option<Result<String, ()>>,
    body: Result<Value, ApiError>,
}

impl Request {
    /// Takes a request apart: the JSON body of the calls that have one, the user's email or
    /// the group's name the call is about, and `test_mode`.
    fn new(
        call: CallKind,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        path_group: Option<Result<String, ()>>,
    ) -> Self {
        let body = if matches!(
            call,
            CallKind::CreateUser
                | CallKind::UpdateUser
                | CallKind::CreateGroup
                | CallKind::UpdateGroup
        ) {
            json_body(body)
        } else {
            Ok(Value::Null)
        };
        let body_field = |field: &str| {
            body.as_ref()
                .ok()
                .and_then(|b| b.get(field))
                .and_then(Value::as_str)
                .map(|s| Ok(s.to_owned()))
        };
        let (email, group) = match call {
            CallKind::GetUser | CallKind::UpdateUser | CallKind::DeleteUser => {
                (header_text(headers, EMAIL_HEADER), None)
            }
            CallKind::CreateUser => (body_field("email"), None),
            CallKind::CreateGroup => (None, body_field("name")),
            CallKind::GetGroup | CallKind::UpdateGroup | CallKind::DeleteGroup => {
                (None, path_group)
            }
            CallKind::ListUsers | CallKind::ListGroups => (None, None),
            // Calls of RBAC sites are handled by `rbac::router`, never here.
            CallKind::ListUsersV2
            | CallKind::GetUserV2
            | CallKind::CreateUserV2
            | CallKind::UpdateUserV2
            | CallKind::DeleteUserV2
            | CallKind::ListRoles
            | CallKind::GetRole
            | CallKind::CreateRole
            | CallKind::UpdateRole
            | CallKind::DeleteRole => (None, None),
        };
        Request {
            call,
            test_mode: test_mode(uri),
            email,
            group,
            body,
        }
    }
}

impl<'a> Recorder<'a> {
    /// A recorder of `request`, started at `started_us`, with no site and no status yet.
    fn new(emulator: &'a Emulator, request: &Request, started_us: u64) -> Self {
        Recorder {
            emulator,
            record: CallRecord {
                seq: 0,
                site: String::new(),
                call: request.call,
                test_mode: request.test_mode.clone().unwrap_or(false),
                email: request.email.clone().and_then(Result::ok),
                group: request.group.clone().and_then(Result::ok),
                status: 0,
                started_us,
                finished_us: 0,
            },
            status: None,
        }
    }
}

/// What an injected fault leaves to do once the call is carried out.
#[derive(Default)]
pub(super) struct AfterCall {
    /// Close the connection in the middle of the answer.
    drop_answer: bool,
    /// Answer with this status as if the call had failed.
    applied_status: Option<StatusCode>,
}

/// Carries out a call its fault plan let through (`execute`), counted as executed, then the
/// part of the plan that comes after: the answer cut off, or replaced by an injected status.
pub(super) fn carry_out(
    site: &Site,
    after: AfterCall,
    recorder: &mut Recorder<'_>,
    execute: impl FnOnce() -> (StatusCode, Bytes),
) -> Response {
    if let Some(counter) = site.executed_counter(recorder.record.call, recorder.record.test_mode) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let (status, bytes) = execute();
    if let Some(status) = after.applied_status {
        recorder.status = Some(status.as_u16());
        return error_response(status, "injected fault after the call was carried out");
    }
    if after.drop_answer {
        recorder.status = Some(0);
        return dropped_response(status, bytes);
    }
    recorder.status = Some(status.as_u16());
    bytes_response(status, bytes)
}

impl Emulator {
    /// Answers one partner call: authenticates it, applies the site's injected faults around
    /// it, carries it out and records it.
    async fn handle(
        &self,
        call: CallKind,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        path_group: Option<Result<String, ()>>,
    ) -> Response {
        let started_us = self.now_us();
        let request = Request::new(call, uri, headers, body, path_group);
        let mut recorder = Recorder::new(self, &request, started_us);

        let site = match self.authenticate(headers) {
            Ok(site) => site,
            Err(err) => {
                recorder.status = Some(err.status.as_u16());
                return error_response(err.status, &err.message);
            }
        };
        recorder.record.site.clone_from(&site.name);
        if let Some(counter) = site.counter(call, recorder.record.test_mode) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        let plan = lock(&site.injector).plan(call, tokio::time::Instant::now());
        let after = match self.before_call(plan, &mut recorder).await {
            Ok(after) => after,
            Err(response) => return response,
        };

        carry_out(site, after, &mut recorder, || site.execute(request))
    }

    /// Carries out the part of a fault plan that comes before the call: its latency, an
    /// injected status, a hang. `Err` is the answer instead of the call (its status recorded).
    pub(super) async fn before_call(
        &self,
        plan: Plan,
        recorder: &mut Recorder<'_>,
    ) -> Result<AfterCall, Response> {
        let shutting_down = || {
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the emulator is shutting down",
            )
        };
        if !plan.latency.is_zero() && !self.sleep_unless_stopping(plan.latency).await {
            recorder.status = Some(503);
            return Err(shutting_down());
        }
        let mut after = AfterCall::default();
        match plan.action {
            None => {}
            Some(Action::Status {
                status,
                retry_after_secs,
                message,
            }) => {
                recorder.status = Some(status.as_u16());
                let mut response = error_response(status, &message);
                if let Some(secs) = retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                }
                return Err(response);
            }
            Some(Action::Hang(duration)) if !self.sleep_unless_stopping(duration).await => {
                recorder.status = Some(503);
                return Err(shutting_down());
            }
            Some(Action::Hang(_)) => {}
            Some(Action::Drop) => after.drop_answer = true,
            Some(Action::Applied(status)) => after.applied_status = Some(status),
        }
        Ok(after)
    }

    /// The site named by `HTTP-X-PARTNER-AUTH`, if its key matches; else 401 (the key is never
    /// echoed).
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> Result<&Site, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let value = match header_text(headers, AUTH_HEADER) {
            None => return Err(unauthorized("missing HTTP-X-PARTNER-AUTH header")),
            Some(Err(())) => return Err(unauthorized("invalid HTTP-X-PARTNER-AUTH header")),
            Some(Ok(value)) => value,
        };
        let (site, key) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| unauthorized("HTTP-X-PARTNER-AUTH must be <site_name>:<api_key>"))?;
        match self.site(site) {
            Some(site) if site.key_matches(key) => Ok(site),
            _ => Err(unauthorized("invalid site name or API key")),
        }
    }
}

impl Site {
    /// Runs a call under the site lock and serializes its answer outside it.
    fn execute(&self, request: Request) -> (StatusCode, Bytes) {
        let (result, shape) = {
            let mut state = lock(&self.state);
            let shape = state.switches.wire_shape;
            let result = run(&mut state, request);
            (result, shape)
        };
        match result {
            Ok(reply) => {
                let body = render(reply, shape);
                let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
                (StatusCode::OK, Bytes::from(bytes))
            }
            Err(err) => {
                let bytes = serde_json::to_vec(&json!({ "error": err.message }))
                    .unwrap_or_else(|_| b"{}".to_vec());
                (err.status, Bytes::from(bytes))
            }
        }
    }
}

fn required_header(value: Option<Result<String, ()>>) -> Result<String, ApiError> {
    match value {
        Some(Ok(email)) => Ok(email),
        Some(Err(())) => Err(ApiError::bad_request("HTTP-X-EMAIL is not valid UTF-8")),
        None => Err(ApiError::bad_request("missing HTTP-X-EMAIL header")),
    }
}

fn path_name(value: Option<Result<String, ()>>) -> Result<String, ApiError> {
    match value {
        Some(Ok(name)) => Ok(name),
        _ => Err(ApiError::bad_request(
            "group name in the path is not valid percent-encoded UTF-8",
        )),
    }
}

fn run(state: &mut super::state::SiteState, request: Request) -> Result<Reply, ApiError> {
    let test_mode = request.test_mode?;
    match request.call {
        CallKind::ListUsers => state.list_users(),
        CallKind::GetUser => state.get_user(&required_header(request.email)?),
        CallKind::CreateUser => state.create_user(&request.body?, test_mode),
        CallKind::UpdateUser => {
            let body = request.body?;
            state.update_user(&required_header(request.email)?, &body, test_mode)
        }
        CallKind::DeleteUser => state.delete_user(&required_header(request.email)?, test_mode),
        CallKind::ListGroups => state.list_groups(),
        CallKind::GetGroup => state.get_group(&path_name(request.group)?),
        CallKind::CreateGroup => state.create_group(&request.body?, test_mode),
        CallKind::UpdateGroup => {
            let body = request.body?;
            state.update_group(&path_name(request.group)?, &body, test_mode)
        }
        CallKind::DeleteGroup => state.delete_group(&path_name(request.group)?, test_mode),
        CallKind::ListUsersV2
        | CallKind::GetUserV2
        | CallKind::CreateUserV2
        | CallKind::UpdateUserV2
        | CallKind::DeleteUserV2
        | CallKind::ListRoles
        | CallKind::GetRole
        | CallKind::CreateRole
        | CallKind::UpdateRole
        | CallKind::DeleteRole => Err(ApiError::not_found(format!(
            "`{}` is a call of RBAC sites",
            request.call
        ))),
    }
}

fn user_value(user: &PartnerUser, shape: WireShape) -> Value {
    let groups: Vec<Value> = match shape {
        WireShape::Wrapped => user.groups.iter().map(|g| json!({ "name": g })).collect(),
        WireShape::Standard | WireShape::Bare => user
            .groups
            .iter()
            .map(|g| Value::from(g.as_str()))
            .collect(),
    };
    json!({
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "groups": groups,
    })
}

fn group_value(group: &PartnerGroup) -> Value {
    json!({ "name": group.name, "access": group.access.as_str() })
}

/// Shapes an answer per the site's [`WireShape`].
fn render(reply: Reply, shape: WireShape) -> Value {
    let list = |key: &str, items: Vec<Value>| match shape {
        WireShape::Standard => json!({ key: items }),
        WireShape::Bare => Value::Array(items),
        WireShape::Wrapped => json!({ "data": items }),
    };
    let single = |key: &str, item: Value| match shape {
        WireShape::Wrapped => json!({ key: item }),
        WireShape::Standard | WireShape::Bare => item,
    };
    match reply {
        Reply::Users(users) => list(
            "users",
            users.iter().map(|u| user_value(u, shape)).collect(),
        ),
        Reply::User(user) => single("user", user_value(&user, shape)),
        Reply::Groups(groups) => list("groups", groups.iter().map(group_value).collect()),
        Reply::Group(group) => single("group", group_value(&group)),
        Reply::Empty => json!({}),
    }
}

/// An answer whose headers promise the whole body but whose connection closes after part of it.
pub(super) fn dropped_response(status: StatusCode, bytes: Bytes) -> Response {
    let full_len = bytes.len();
    let sent = bytes.slice(..full_len.div_ceil(2).min(full_len));
    let stream = futures::stream::unfold(0u8, move |step| {
        let sent = sent.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(sent), 1)),
                1 => {
                    tokio::time::sleep(DROP_AFTER).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "injected fault: connection dropped",
                        )),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len + 16));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mode_values() {
        let tm = |q: &str| test_mode(&format!("/api/v1/users{q}").parse::<Uri>().unwrap());
        assert_eq!(tm(""), Ok(false));
        assert_eq!(tm("?test_mode=true"), Ok(true));
        assert_eq!(tm("?test_mode=TRUE"), Ok(true));
        assert_eq!(tm("?test_mode=1"), Ok(true));
        assert_eq!(tm("?test_mode=False"), Ok(false));
        assert_eq!(tm("?a=b&test_mode=0"), Ok(false));
        assert_eq!(
            tm("?test_mode=yes").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn wrapped_shape_wraps_singles_and_group_entries() {
        let user = PartnerUser {
            email: "a@x.io".into(),
            first_name: "A".into(),
            last_name: "B".into(),
            groups: vec!["All Users".into()],
        };
        let v = render(Reply::User(user.clone()), WireShape::Wrapped);
        assert_eq!(v["user"]["groups"][0]["name"], "All Users");
        let v = render(Reply::Users(vec![user]), WireShape::Bare);
        assert_eq!(v[0]["groups"][0], "All Users");
    }
}
