//! The emulator's admin API under `/_emulator/`, for tests, benchmarks and people poking at a
//! running emulator. It has **no authentication**: the emulator is a test tool.
//!
//! | route | does |
//! |---|---|
//! | `GET /_emulator/calls` | the call log (JSON list of `CallRecord`) |
//! | `DELETE /_emulator/calls` | empties the call log |
//! | `GET /_emulator/counters` | calls per site, kind and `test_mode` |
//! | `GET /_emulator/sites` | site names |
//! | `GET /_emulator/sites/{site}` | users, groups, faults and switches of a site; of an RBAC site: `"kind": "rbac"`, users, roles, faults and switches |
//! | `GET`/`PUT /_emulator/sites/{site}/faults` | a site's `Faults` (PUT replaces them, resetting the generator, bucket and script) |
//! | `GET`/`PUT /_emulator/sites/{site}/switches` | a site's `Switches` |
//! | `PUT /_emulator/sites/{site}/key` | the API key the site accepts from now on (`{"api_key": "..."}`; answered without it) |
//!
//! An unknown site is 404; a body that does not parse is 400; errors are `{"error": ...}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::faults::Faults;
use super::router::{error_response, json_response};
use super::{Emulator, Switches};

/// The admin routes, relative to `/_emulator`.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/calls", get(get_calls).delete(delete_calls))
        .route("/counters", get(get_counters))
        .route("/sites", get(get_sites))
        .route("/sites/{site}", get(get_site))
        .route("/sites/{site}/faults", get(get_faults).put(put_faults))
        .route(
            "/sites/{site}/switches",
            get(get_switches).put(put_switches),
        )
        .route("/sites/{site}/key", axum::routing::put(put_key))
}

/// The body of `PUT /_emulator/sites/{site}/key`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    api_key: String,
}

async fn put_key(State(em): State<Emulator>, Path(site): Path<String>, body: Bytes) -> Response {
    let key: NewKey = match parse(&body) {
        Ok(k) => k,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    if key.api_key.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "api_key must not be empty");
    }
    if !em.set_site_key(&site, &key.api_key) {
        return unknown_site(&site);
    }
    json_response(StatusCode::OK, &json!({"site": site, "key": "changed"}))
}

fn to_json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(err) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

fn unknown_site(site: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, &format!("unknown site `{site}`"))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|err| format!("invalid body: {err}"))
}

async fn get_calls(State(em): State<Emulator>) -> Response {
    to_json(&em.call_log())
}

async fn delete_calls(State(em): State<Emulator>) -> Response {
    em.clear_call_log();
    json_response(StatusCode::OK, &json!({}))
}

async fn get_counters(State(em): State<Emulator>) -> Response {
    to_json(&em.counters())
}

async fn get_sites(State(em): State<Emulator>) -> Response {
    to_json(&em.site_names())
}

async fn get_site(State(em): State<Emulator>, Path(site): Path<String>) -> Response {
    if let Some(body) = super::rbac::admin_site(&em, &site) {
        return json_response(StatusCode::OK, &body);
    }
    let (Some(faults), Some(switches)) = (em.faults(&site), em.switches(&site)) else {
        return unknown_site(&site);
    };
    let body: Value = json!({
        "name": site,
        "users": em.users(&site),
        "groups": em.groups(&site),
        "faults": faults,
        "switches": switches,
    });
    json_response(StatusCode::OK, &body)
}

async fn get_faults(State(em): State<Emulator>, Path(site): Path<String>) -> Response {
    match em.faults(&site) {
        Some(faults) => to_json(&faults),
        None => unknown_site(&site),
    }
}

async fn put_faults(State(em): State<Emulator>, Path(site): Path<String>, body: Bytes) -> Response {
    if em.faults(&site).is_none() {
        return unknown_site(&site);
    }
    let faults: Faults = match parse(&body) {
        Ok(faults) => faults,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    if let Err(message) = faults.validate() {
        return error_response(StatusCode::BAD_REQUEST, &message);
    }
    em.set_faults(&site, faults.clone());
    to_json(&faults)
}

async fn get_switches(State(em): State<Emulator>, Path(site): Path<String>) -> Response {
    match em.switches(&site) {
        Some(switches) => to_json(&switches),
        None => unknown_site(&site),
    }
}

async fn put_switches(
    State(em): State<Emulator>,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    if em.switches(&site).is_none() {
        return unknown_site(&site);
    }
    let switches: Switches = match parse(&body) {
        Ok(switches) => switches,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    if em.set_switches(&site, switches.clone()) {
        to_json(&switches)
    } else {
        unknown_site(&site)
    }
}
