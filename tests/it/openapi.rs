//! `openapi/scim-bridge.yaml` describes exactly the routes the server has.
//!
//! axum cannot list a router's routes, so the test takes them from two sides and holds both to
//! the spec:
//! - the source: every `.route("<path>", <methods>)` in `src/http/**/*.rs` (outside test
//!   modules), under the prefix `http::app` nests that file's router at ([`MOUNTS`]); a route
//!   the parser cannot read, or a routing call it does not know, fails the test rather than
//!   being skipped;
//! - the running server (OAuth and admin configured, so every optional route exists): each
//!   documented or source-declared (path, method) must be answered by a handler, never by the
//!   router's fallbacks (404 "No such endpoint.", or 405), and every other method of a
//!   documented path must get the 405, so a route added in a way the parser does not see still
//!   fails the test.
//!
//! HEAD is not listed in the spec: axum answers it wherever GET is routed (RFC 9110 section
//! 9.3.2 makes it GET without a body), and the test checks exactly that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use scim_bridge::config::{AdminConfig, BearerTokenConfig, OAuthClientConfig, OAuthConfig};
use scim_bridge::secret::Secret;
use serde_json::Value;

use crate::support::{Harness, Options, TOKEN};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/scim-bridge.yaml");
const HTTP_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
const ADMIN_TOKEN: &str = "openapi-admin-token-0123456789";

/// Where `http::app` mounts the router each file builds: the root, the tenant's base path (the
/// harness tenant's, which the spec documents), or `/admin`.
const MOUNTS: &[(&str, &str)] = &[
    ("mod.rs", ""),
    ("discovery.rs", "/scim/v2"),
    ("resources.rs", "/scim/v2"),
    ("search.rs", "/scim/v2"),
    ("auth/token.rs", "/scim/v2"),
    ("admin.rs", "/admin"),
];

/// Routers that are not API: the web console (`/console`) serves HTML pages and forms to
/// browsers; `tests/it/console.rs` holds it to its routes, and the spec says it is not covered.
const NOT_API: &[&str] = &["console/mod.rs"];

/// The methods an OpenAPI 3.1 path item can hold besides HEAD, which the test derives.
const METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"];

type Operations = BTreeSet<(String, String)>;

fn spec() -> Value {
    let text = std::fs::read_to_string(SPEC).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Every (path, METHOD) the spec documents.
fn spec_operations(spec: &Value) -> Operations {
    let mut out = Operations::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            let method = key.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) || method == "HEAD" {
                out.insert((path.clone(), method));
            }
        }
    }
    out
}

// ---- The routes in the source ----------------------------------------------------------------

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text before the unit-test module, without `//` comments (a `//` right after `:` is a
/// URL, not a comment).
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .map(|line| {
            let mut cut = line.len();
            let bytes = line.as_bytes();
            for i in 0..bytes.len().saturating_sub(1) {
                if &bytes[i..i + 2] == b"//" && (i == 0 || bytes[i - 1] != b':') {
                    cut = i;
                    break;
                }
            }
            &line[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text between the parenthesis at `open` and its partner, skipping string literals.
fn balanced(code: &str, open: usize) -> &str {
    let bytes = code.as_bytes();
    assert_eq!(bytes[open], b'(');
    let (mut depth, mut i, mut in_str) = (0usize, open, false);
    while i < bytes.len() {
        match (in_str, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'(' | b'[' | b'{') => depth += 1,
            (false, b')' | b']' | b'}') => {
                depth -= 1;
                if depth == 0 {
                    return &code[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}");
}

/// The names of the calls at the top level of an expression: `get(a).post(b).layer(x(y))`
/// gives `get`, `post`, `layer`.
fn top_level_calls(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let (mut depth, mut in_str, mut calls) = (0usize, false, Vec::new());
    for (i, &b) in bytes.iter().enumerate() {
        match (in_str, b) {
            (true, b'"') if i == 0 || bytes[i - 1] != b'\\' => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'(') => {
                if depth == 0 {
                    let name: String = expr[..i]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    calls.push(name);
                }
                depth += 1;
            }
            (false, b'[' | b'{') => depth += 1,
            (false, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    calls
}

/// The `.route(...)` calls of one file: (path as written, methods).
fn routes_in(file: &str, code: &str) -> Vec<(String, Vec<String>)> {
    for unsupported in [".route_service(", ".nest_service(", "on(MethodFilter"] {
        assert!(
            !code.contains(unsupported),
            "{file} uses `{unsupported}`: teach tests/it/openapi.rs to read it"
        );
    }
    let mut out = Vec::new();
    for (at, _) in code.match_indices(".route(") {
        let args = balanced(code, at + ".route".len());
        let (path, methods) = split_top_level_comma(args)
            .unwrap_or_else(|| panic!("{file}: cannot read `.route({args})`"));
        let path = path.trim();
        assert!(
            path.len() >= 2 && path.starts_with('"') && path.ends_with('"'),
            "{file}: a route path must be a string literal for tests/it/openapi.rs: {path}"
        );
        let path = path[1..path.len() - 1].to_owned();
        let mut verbs = Vec::new();
        for call in top_level_calls(methods) {
            match call.as_str() {
                "get" | "post" | "put" | "patch" | "delete" | "head" | "options" | "trace" => {
                    verbs.push(call.to_ascii_uppercase())
                }
                "any" => verbs.extend(METHODS.iter().map(|m| m.to_string())),
                // Layers and state change no method.
                "layer" | "route_layer" | "with_state" => {}
                other => panic!(
                    "{file}: route {path} calls `{other}`; teach tests/it/openapi.rs which methods it adds"
                ),
            }
        }
        assert!(!verbs.is_empty(), "{file}: route {path} has no method");
        out.push((path, verbs));
    }
    out
}

fn split_top_level_comma(args: &str) -> Option<(&str, &str)> {
    let (mut depth, mut in_str) = (0usize, false);
    for (i, b) in args.bytes().enumerate() {
        match (in_str, b) {
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'(' | b'[' | b'{') => depth += 1,
            (false, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            (false, b',') if depth == 0 => return Some((&args[..i], &args[i + 1..])),
            _ => {}
        }
    }
    None
}

/// axum's `{*rest}` wildcard is an OpenAPI `{rest}` parameter.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// Every (path, METHOD) the routers in `src/http` declare.
fn source_operations() -> Operations {
    let mut files = Vec::new();
    rust_files(Path::new(HTTP_SRC), &mut files);
    let mounts: BTreeMap<&str, &str> = MOUNTS.iter().copied().collect();
    let mut out = Operations::new();
    let mut seen_files = BTreeSet::new();
    for file in files {
        let rel = file
            .strip_prefix(HTTP_SRC)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // A test module of its own (`foo/tests.rs`, `mod tests;` behind `#[cfg(test)]`)
        // builds test servers, not the service's routes.
        if rel == "tests.rs" || rel.ends_with("/tests.rs") || NOT_API.contains(&rel.as_str()) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let routes = routes_in(&rel, &code);
        if routes.is_empty() {
            continue;
        }
        let mount = mounts.get(rel.as_str()).unwrap_or_else(|| {
            panic!("src/http/{rel} builds routes: add where http::app mounts them to MOUNTS")
        });
        seen_files.insert(rel.clone());
        for (path, verbs) in routes {
            for verb in verbs {
                out.insert((format!("{mount}{}", openapi_path(&path)), verb));
            }
        }
    }
    let stale: Vec<_> = mounts
        .keys()
        .filter(|f| !seen_files.contains(**f))
        .collect();
    assert!(
        stale.is_empty(),
        "MOUNTS names files without routes: {stale:?}"
    );
    out
}

// ---- The running server ----------------------------------------------------------------------

/// A bridge with every optional route: the tenant's OAuth token endpoint and the admin endpoint.
async fn full_harness() -> Harness {
    let mut opts = Options::default();
    opts.credentials.oauth = Some(OAuthConfig {
        clients: vec![OAuthClientConfig {
            name: "oauth".into(),
            client_id: "openapi-client".into(),
            client_secret: Some(Secret::new("openapi-client-secret-0123456789")),
            ..OAuthClientConfig::default()
        }],
        signing_key: Some(Secret::new("openapi-signing-key-0123456789abcdef0123")),
        ..OAuthConfig::default()
    });
    opts.admin = AdminConfig {
        bearer_tokens: vec![BearerTokenConfig {
            name: "ops".into(),
            token: Some(Secret::new(ADMIN_TOKEN)),
            ..BearerTokenConfig::default()
        }],
        ..AdminConfig::default()
    };
    Harness::start(opts).await
}

/// A concrete URL path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-4000-8000-000000000000")
        .replace("{name}", "User")
        .replace("{urn}", "urn:ietf:params:scim:schemas:core:2.0:User")
        .replace("{rest}", "anything/below")
}

/// Who a request to `path` is from: the admin, the tenant's IdP, or nobody (the token endpoint
/// authenticates its clients itself; health endpoints are open).
fn authorization(path: &str) -> Option<String> {
    if path.starts_with("/admin/") {
        Some(format!("Bearer {ADMIN_TOKEN}"))
    } else if path.starts_with("/scim/v2/") && path != "/scim/v2/oauth/token" {
        Some(format!("Bearer {TOKEN}"))
    } else {
        None
    }
}

/// How the server answers `method path` with an empty JSON object as body: the status and the
/// error detail, if any.
async fn probe(h: &Harness, method: &str, path: &str) -> (StatusCode, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = h
        .http
        .request(method.clone(), format!("{}{}", h.root, concrete(path)));
    if let Some(a) = authorization(path) {
        req = req.header("Authorization", a);
    }
    if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        req = req
            .header("Content-Type", "application/scim+json")
            .body("{}");
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let detail = body["detail"].as_str().unwrap_or_default().to_owned();
    assert_ne!(
        status,
        StatusCode::UNAUTHORIZED,
        "{path}: the probe's credentials were refused: {detail}"
    );
    (status, detail)
}

/// True when a handler answered, not the router's fallbacks.
fn answered(status: StatusCode, detail: &str) -> bool {
    status != StatusCode::METHOD_NOT_ALLOWED
        && !(status == StatusCode::NOT_FOUND && detail == "No such endpoint.")
}

fn describe(ops: &Operations) -> String {
    ops.iter()
        .map(|(p, m)| format!("  {m} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_spec_documents_exactly_the_routes_of_the_server() {
    let spec = spec();
    let documented = spec_operations(&spec);
    let declared = source_operations();
    assert!(
        documented.len() > 20,
        "the spec lists too few operations: {documented:?}"
    );
    assert!(
        !documented.iter().any(|(_, m)| m == "HEAD"),
        "HEAD is implied by GET; do not list it"
    );
    let undocumented: Operations = declared.difference(&documented).cloned().collect();
    let unrouted: Operations = documented.difference(&declared).cloned().collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes in src/http missing from the spec:\n{}\noperations in the spec with no route in src/http:\n{}",
        describe(&undocumented),
        describe(&unrouted)
    );

    let h = full_harness().await;
    let mut wrong = Vec::new();
    let paths: BTreeSet<&String> = documented.iter().map(|(p, _)| p).collect();
    for path in paths {
        let methods: BTreeSet<&str> = documented
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.as_str())
            .collect();
        for method in METHODS.iter().copied().chain(["HEAD"]) {
            let expected = if method == "HEAD" {
                methods.contains("GET")
            } else {
                methods.contains(method)
            };
            let (status, detail) = probe(&h, method, path).await;
            if answered(status, &detail) != expected {
                wrong.push(format!(
                    "{method} {path}: {status} {detail:?}, expected {}",
                    if expected {
                        "a handler's answer"
                    } else {
                        "405 (not in the spec)"
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_reference_in_the_spec_resolves() {
    fn walk(root: &Value, v: &Value, bad: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let found = r
                        .strip_prefix('#')
                        .and_then(|pointer| root.pointer(pointer));
                    if found.is_none() {
                        bad.push(r.clone());
                    }
                }
                map.values().for_each(|x| walk(root, x, bad));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(root, x, bad)),
            _ => {}
        }
    }
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut bad = Vec::new();
    walk(&spec, &spec, &mut bad);
    assert!(bad.is_empty(), "unresolved references: {bad:?}");
}

#[test]
fn the_route_parser_reads_the_forms_the_routers_use() {
    let code = code_of(
        r#"
        Router::new()
            .route("/a", get(list).post(create)) // a comment with .route("/x", get(y))
            .route(
                "/a/{id}",
                get(read)
                    .put(replace)
                    .layer(DefaultBodyLimit::max(limits.get(1))),
            )
            .route("/b/{*rest}", any(me))
            .route_layer(x)
        "#,
    );
    let routes = routes_in("x.rs", &code);
    assert_eq!(routes.len(), 3, "{routes:?}");
    assert_eq!(
        routes[0],
        ("/a".to_owned(), vec!["GET".into(), "POST".into()])
    );
    assert_eq!(
        routes[1],
        ("/a/{id}".to_owned(), vec!["GET".into(), "PUT".into()])
    );
    assert_eq!(routes[2].1.len(), METHODS.len());
    assert_eq!(openapi_path(&routes[2].0), "/b/{rest}");
    assert!(
        std::panic::catch_unwind(|| routes_in("x.rs", r#".route(PATH, get(x))"#)).is_err(),
        "a path that is not a literal must fail"
    );
    assert!(
        std::panic::catch_unwind(|| routes_in("x.rs", r#".route("/p", on(f, x))"#)).is_err(),
        "an unknown routing call must fail"
    );
}
