//! The HTTP layer without the bridge: discovery endpoints, `/Me`, authentication, the SCIM body
//! extractor and list parameters, driven through `http::app` in process and over loopback.

use std::time::Duration;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use scim_bridge::config::{BearerTokenConfig, CredentialsConfig, TenantConfig};
use scim_bridge::http::extract::ScimBody;
use scim_bridge::http::{self, AppState, HttpLimits, TenantState, SCIM_CONTENT_TYPE};
use scim_bridge::secret::Secret;

const TOKEN: &str = "discovery-test-token";
const PUBLIC: &str = "http://127.0.0.1:8080";
const BASE: &str = "/scim/v2";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

fn tenant_config() -> TenantConfig {
    TenantConfig {
        name: "acme".into(),
        base_path: BASE.into(),
        credentials: CredentialsConfig {
            bearer_tokens: vec![BearerTokenConfig {
                name: "okta".into(),
                token: Some(Secret::new(TOKEN)),
                ..BearerTokenConfig::default()
            }],
            ..CredentialsConfig::default()
        },
        ..TenantConfig::default()
    }
}

fn state(limits: HttpLimits) -> AppState {
    AppState {
        tenants: vec![TenantState::new(&tenant_config(), PUBLIC)].into(),
        limits,
        bridge: None,
    }
}

/// One request through the whole app, with the tenant's token unless `auth` is false.
async fn call(app: &Router, method: Method, path: &str, auth: bool) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, ct, body)
}

async fn get(path: &str) -> (StatusCode, String, Value) {
    call(
        &http::app(state(HttpLimits::default())),
        Method::GET,
        path,
        true,
    )
    .await
}

fn assert_scim_error(status: StatusCode, ct: &str, body: &Value, expected: u16) {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(ct, SCIM_CONTENT_TYPE);
    assert_eq!(body["schemas"], json!([ERROR]));
    assert_eq!(body["status"], expected.to_string());
    assert!(!body["detail"].as_str().unwrap().is_empty());
}

fn attr<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no attribute {name}"))
}

#[tokio::test]
async fn service_provider_config_advertises_the_enforced_limits() {
    let limits = HttpLimits {
        bulk_max_operations: 50,
        max_results: 250,
        ..HttpLimits::default()
    };
    let app = http::app(state(limits));
    let (status, ct, doc) = call(&app, Method::GET, "/scim/v2/ServiceProviderConfig", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, SCIM_CONTENT_TYPE);
    assert_eq!(doc["patch"], json!({"supported": true}));
    assert_eq!(
        doc["bulk"],
        json!({"supported": true, "maxOperations": 50, "maxPayloadSize": 1_048_576})
    );
    assert_eq!(doc["filter"], json!({"supported": true, "maxResults": 250}));
    assert_eq!(doc["changePassword"], json!({"supported": false}));
    assert_eq!(doc["sort"], json!({"supported": true}));
    assert_eq!(doc["etag"], json!({"supported": true}));
    let scheme = &doc["authenticationSchemes"][0];
    assert_eq!(scheme["type"], "oauthbearertoken");
    assert_eq!(scheme["primary"], true);
    assert_eq!(
        doc["meta"]["location"],
        "http://127.0.0.1:8080/scim/v2/ServiceProviderConfig"
    );
}

#[tokio::test]
async fn resource_types_is_a_list_response_and_each_is_reachable_by_name() {
    let (status, ct, doc) = get("/scim/v2/ResourceTypes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, SCIM_CONTENT_TYPE);
    assert_eq!(doc["schemas"], json!([LIST]));
    assert!(doc["totalResults"].is_u64() && doc["startIndex"].is_u64());
    assert!(doc["itemsPerPage"].is_u64());
    assert_eq!(doc["totalResults"], 2);
    let user = &doc["Resources"][0];
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(
        user["meta"]["location"],
        "http://127.0.0.1:8080/scim/v2/ResourceTypes/User"
    );

    let (status, _, group) = get("/scim/v2/ResourceTypes/Group").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["schema"], GROUP);
    let (status, _, user) = get("/scim/v2/ResourceTypes/user").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["schemaExtensions"][0]["schema"], ENTERPRISE);
}

#[tokio::test]
async fn schemas_state_the_attribute_characteristics_clients_rely_on() {
    let (status, ct, doc) = get("/scim/v2/Schemas").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, SCIM_CONTENT_TYPE);
    assert_eq!(doc["schemas"], json!([LIST]));
    assert_eq!(doc["totalResults"], 3);
    assert_eq!(doc["startIndex"], 1);
    assert_eq!(doc["itemsPerPage"], 3);
    let user = doc["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == USER)
        .unwrap();
    let user_name = attr(user, "userName");
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let password = attr(user, "password");
    assert_eq!(password["mutability"], "writeOnly");
    assert_eq!(password["returned"], "never");
    let id = attr(user, "id");
    assert_eq!(id["mutability"], "readOnly");
    assert_eq!(id["returned"], "always");
    assert_eq!(attr(user, "groups")["mutability"], "readOnly");
}

#[tokio::test]
async fn a_single_schema_is_reachable_by_its_urn() {
    let (status, ct, doc) = get(&format!("/scim/v2/Schemas/{ENTERPRISE}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, SCIM_CONTENT_TYPE);
    assert_eq!(doc["id"], ENTERPRISE);
    assert_eq!(
        doc["meta"]["location"],
        format!("http://127.0.0.1:8080/scim/v2/Schemas/{ENTERPRISE}")
    );
    let (status, _, doc) = get(&format!("/scim/v2/Schemas/{GROUP}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(attr(&doc, "displayName")["required"], true);
}

#[tokio::test]
async fn unknown_resource_types_and_schemas_are_404_scim_errors() {
    for path in [
        "/scim/v2/ResourceTypes/Device",
        "/scim/v2/Schemas/urn:example:nope",
        "/scim/v2/Schemas/%FF",
        "/scim/v2/NoSuchEndpoint",
    ] {
        let (status, ct, body) = get(path).await;
        assert_scim_error(status, &ct, &body, 404);
    }
}

#[tokio::test]
async fn a_filter_on_discovery_endpoints_is_403() {
    for path in [
        "/scim/v2/ServiceProviderConfig?filter=patch.supported+eq+true",
        "/scim/v2/ResourceTypes?filter=name%20eq%20%22User%22",
        "/scim/v2/ResourceTypes/User?FILTER=id+pr",
        "/scim/v2/Schemas?Filter=id+pr",
        "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User?filter=id+pr",
    ] {
        let (status, ct, body) = get(path).await;
        assert_scim_error(status, &ct, &body, 403);
    }
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    for path in [
        "/scim/v2/ServiceProviderConfig?aadOptscim062020",
        "/scim/v2/Schemas?aadOptscim062020&x=y",
        "/scim/v2/ResourceTypes?filter=",
    ] {
        let (status, ct, _) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(ct, SCIM_CONTENT_TYPE);
    }
}

#[tokio::test]
async fn me_is_501_for_every_method() {
    let app = http::app(state(HttpLimits::default()));
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let (status, ct, body) = call(&app, method.clone(), "/scim/v2/Me", true).await;
        assert_scim_error(status, &ct, &body, 501);
    }
}

#[tokio::test]
async fn other_methods_on_discovery_endpoints_are_405_scim_errors() {
    let app = http::app(state(HttpLimits::default()));
    let (status, ct, body) = call(&app, Method::POST, "/scim/v2/Schemas", true).await;
    assert_scim_error(status, &ct, &body, 405);
    let (status, ct, body) = call(&app, Method::DELETE, "/scim/v2/ResourceTypes/User", true).await;
    assert_scim_error(status, &ct, &body, 405);
}

#[tokio::test]
async fn discovery_requires_the_bearer_token() {
    let app = http::app(state(HttpLimits::default()));
    for path in [
        "/scim/v2/ServiceProviderConfig",
        "/scim/v2/Schemas",
        "/scim/v2/Me",
    ] {
        let res = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(res.headers()[header::CONTENT_TYPE], SCIM_CONTENT_TYPE);
        let body: Value =
            serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await.unwrap())
                .unwrap();
        assert_eq!(body["status"], "401");
    }
    let res = app
        .oneshot(
            Request::get("/scim/v2/Schemas")
                .header(header::AUTHORIZATION, "Bearer wrong")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn discovery_works_over_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState {
        tenants: vec![TenantState::new(
            &tenant_config(),
            &format!("http://{addr}"),
        )]
        .into(),
        limits: HttpLimits::default(),
        bridge: None,
    };
    let server = tokio::spawn(http::run(listener, state, async {
        let _ = stopped.await;
    }));
    let res = reqwest::Client::new()
        .get(format!(
            "http://{addr}/scim/v2/ServiceProviderConfig?aadOptscim062020"
        ))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert_eq!(res.headers()["content-type"], SCIM_CONTENT_TYPE);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(
        doc["meta"]["location"],
        format!("http://{addr}/scim/v2/ServiceProviderConfig")
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// ---- the SCIM body extractor, on a test route behind the same body limit layer ----

fn echo_app(limit: usize) -> Router {
    Router::new()
        .route(
            "/echo",
            post(|ScimBody(v): ScimBody| async move {
                http::ScimJson(StatusCode::OK, json!({"got": v}))
            }),
        )
        .layer(DefaultBodyLimit::max(limit))
}

async fn echo(content_type: Option<&str>, body: impl Into<Body>) -> (StatusCode, String, Value) {
    let mut req = Request::post("/echo");
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let res = echo_app(4096)
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ct, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn scim_body_accepts_json_media_types_and_a_missing_one() {
    for ct in [
        Some("application/scim+json"),
        Some("application/scim+json; charset=utf-8"),
        Some("application/json"),
        Some("application/json;charset=UTF-8"),
        None,
    ] {
        let (status, _, body) = echo(ct, r#"{"userName":"a@x.io"}"#).await;
        assert_eq!(status, StatusCode::OK, "{ct:?}");
        assert_eq!(body["got"]["userName"], "a@x.io");
    }
}

#[tokio::test]
async fn scim_body_refuses_other_media_types_with_415() {
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, ctype, body) = echo(Some(ct), "{}").await;
        assert_scim_error(status, &ctype, &body, 415);
    }
}

#[tokio::test]
async fn malformed_json_is_400_invalid_syntax_saying_where() {
    let (status, ct, body) = echo(None, "{\"userName\": \"a\",\n \"active\": tru }").await;
    assert_scim_error(status, &ct, &body, 400);
    assert_eq!(body["scimType"], "invalidSyntax");
    assert!(
        body["detail"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    let (status, ct, body) = echo(None, b"{\"a\":\"\xc3\x28\"}".to_vec()).await;
    assert_scim_error(status, &ct, &body, 400);
    let (status, ct, body) = echo(None, "[{\"a\":1}]").await;
    assert_scim_error(status, &ct, &body, 400);
    assert_eq!(body["scimType"], "invalidSyntax");
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_crash() {
    let app = echo_app(1 << 20);
    for body in [
        "[".repeat(100_000),
        format!("{{\"a\":{}", "{\"a\":".repeat(50_000)),
    ] {
        let res = app
            .clone()
            .oneshot(Request::post("/echo").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["scimType"], "invalidSyntax");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_a_scim_body() {
    let big = format!("{{\"userName\":\"{}\"}}", "x".repeat(8192));
    let (status, ct, body) = echo(Some("application/scim+json"), big).await;
    assert_scim_error(status, &ct, &body, 413);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_over_loopback_too() {
    // hyper, not only the in-process service: the client reads the SCIM 413 before the server
    // has read the whole body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = echo_app(1024);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/echo"))
        .header("content-type", "application/scim+json")
        .body(format!("{{\"a\":\"{}\"}}", "x".repeat(4000)))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()["content-type"], SCIM_CONTENT_TYPE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "413");
    server.abort();
}
