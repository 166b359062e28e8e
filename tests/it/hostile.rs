//! Hostile and broken input (issue 8): a table of adversarial requests against `/Users`,
//! `/Groups`, `/Bulk`, `.search` and PATCH, on SQLite and (when configured) PostgreSQL.
//!
//! What it proves, case by case: the answer is either a 4xx with a SCIM error body (the Error
//! schema, `status` equal to the HTTP status, `scimType` where one applies) or a correct result
//! (checked against the bridge's own reads and the emulator's state); never a 5xx (a panic
//! becomes a 500 through the catch-panic layer, so "no 5xx" also means "no panic"); the server
//! answers normally after every case and a sentinel user and group are unchanged at the end;
//! and a refused request causes no partner call at all (the emulator's call counters do not
//! move, checked after the outbox has drained so an asynchronous membership write would show).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use scim_bridge::config::{HttpConfig, RateLimitConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{create_group, create_user, for_each_backend_url, Harness, Options, TOKEN};

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The body limit of these harnesses: large enough that arrays of 100,000 elements are parsed
/// and judged by the bridge (not cut off by the limit), small enough that "far over the
/// limit" stays cheap to send.
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Longest any one request may take; a hang is a failure, not a stuck test.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

fn options(store_url: String) -> Options {
    let mut o = Options {
        store_url: Some(store_url),
        http: HttpConfig {
            max_body_bytes: BODY_LIMIT,
            bulk_max_payload_bytes: BODY_LIMIT,
            // Hundreds of cases per test: the tenant's request budget is not under test here.
            rate_limit: RateLimitConfig {
                per_second: 0.0,
                burst: 0,
            },
            ..HttpConfig::default()
        },
        ..Options::default()
    };
    // The emulator is local: no client-side partner rate limit to wait on.
    o.bridge.partner.rate_per_second = 0.0;
    o
}

/// What a case may answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A 4xx SCIM error (with this `scimType` when given) and no partner call.
    Refused(Option<&'static str>),
    /// This exact 4xx status with a SCIM error, and no partner call.
    Status(u16),
    /// A 4xx SCIM error or a success; the caller checks a success for correctness.
    Either,
}

/// One answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// A harness with a sentinel user and group that every case must leave alone.
struct Target {
    h: Harness,
    sentinel_user: String,
    sentinel_group: String,
    sentinel_user_body: Value,
    sentinel_group_body: Value,
}

impl Target {
    async fn start(url: String) -> Target {
        let h = Harness::start(options(url)).await;
        let sentinel_user = create_user(&h, "sentinel@acme.example.com", "Sen", "Tinel").await;
        let sentinel_group = create_group(&h, "Sentinels", &[&sentinel_user]).await;
        h.settle(Duration::from_secs(10)).await;
        let sentinel_user_body = h.get(&format!("/Users/{sentinel_user}")).await.1;
        let sentinel_group_body = h.get(&format!("/Groups/{sentinel_group}")).await.1;
        Target {
            h,
            sentinel_user,
            sentinel_group,
            sentinel_user_body,
            sentinel_group_body,
        }
    }

    /// Every partner call the emulator has counted (faulted and refused ones included).
    fn partner_calls(&self) -> u64 {
        self.h.emulator.counters().iter().map(|c| c.count).sum()
    }

    /// Sends one request with raw bytes and the given `Content-Type` (none when `None`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.h.base)
        };
        let mut req = self
            .h
            .http
            .request(method, url)
            .bearer_auth(TOKEN)
            .header("Accept", "application/scim+json");
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = tokio::time::timeout(REQUEST_DEADLINE, req.send())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within {REQUEST_DEADLINE:?}"))?;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Runs one case: sends it, judges the answer against `expect`, checks the server is
    /// still healthy, and for refused input that the partner heard nothing.
    async fn case(
        &self,
        name: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        expect: Expect,
    ) -> Answer {
        let calls_before = self.partner_calls();
        let a = self
            .send(method, path, body, content_type)
            .await
            .unwrap_or_else(|e| panic!("{name}: the request failed at the transport: {e}"));
        judge(name, &a, expect);
        self.assert_healthy(name).await;
        if a.status.is_client_error() {
            // Drain the outbox first: a membership write queued by a refused request would
            // reach the partner only now.
            self.h.settle(Duration::from_secs(10)).await;
            assert_eq!(
                self.partner_calls(),
                calls_before,
                "{name}: refused input ({}) reached the partner: {:?}",
                a.status,
                self.h.emulator.call_log().last()
            );
        }
        a
    }

    /// A case with a JSON body sent as `application/scim+json`.
    async fn json_case(
        &self,
        name: &str,
        method: Method,
        path: &str,
        body: &Value,
        expect: Expect,
    ) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        self.case(
            name,
            method,
            path,
            Some(bytes),
            Some("application/scim+json"),
            expect,
        )
        .await
    }

    /// The server answers a discovery read and a store read normally.
    async fn assert_healthy(&self, name: &str) {
        let (s, b) = self.h.get("/ServiceProviderConfig").await;
        assert_eq!(s, StatusCode::OK, "{name}: unhealthy after the case: {b}");
        let (s, b) = self.h.get(&format!("/Users/{}", self.sentinel_user)).await;
        assert_eq!(s, StatusCode::OK, "{name}: the store does not answer: {b}");
    }

    /// The sentinel user and group are exactly as they were, here and at the partner.
    async fn assert_sentinels_intact(&self) {
        let u = self
            .h
            .get(&format!("/Users/{}", self.sentinel_user))
            .await
            .1;
        assert_eq!(u, self.sentinel_user_body, "the sentinel user changed");
        let g = self
            .h
            .get(&format!("/Groups/{}", self.sentinel_group))
            .await
            .1;
        assert_eq!(g, self.sentinel_group_body, "the sentinel group changed");
        assert_eq!(
            self.h.partner_groups("acme", "sentinel@acme.example.com"),
            vec!["Sentinels".to_owned()]
        );
    }
}

/// Judges one answer: never a 5xx; a 4xx carries a SCIM error body; `expect` holds. A `/Bulk`
/// answer's operations are judged the same way.
fn judge(name: &str, a: &Answer, expect: Expect) {
    assert!(
        !a.status.is_server_error(),
        "{name}: a server error: {} {}",
        a.status,
        a.body
    );
    if a.status.is_client_error() {
        assert_scim_error(name, a.status.as_u16(), &a.body);
        let ct = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/scim+json"),
            "{name}: an error as {ct:?}"
        );
    }
    match expect {
        Expect::Refused(scim_type) => {
            assert!(
                a.status.is_client_error(),
                "{name}: accepted ({}): {}",
                a.status,
                a.body
            );
            if let Some(t) = scim_type {
                assert_eq!(a.body["scimType"], t, "{name}: {}", a.body);
            }
        }
        Expect::Status(s) => {
            assert_eq!(a.status.as_u16(), s, "{name}: {}", a.body);
        }
        Expect::Either => {
            assert!(
                a.status.is_success()
                    || a.status.is_client_error()
                    || a.status == StatusCode::NOT_MODIFIED,
                "{name}: {} {}",
                a.status,
                a.body
            );
        }
    }
    if let Some(ops) = a.body.get("Operations").and_then(Value::as_array) {
        for op in ops {
            let status: u16 = match &op["status"] {
                Value::String(s) => s.parse().unwrap_or(0),
                Value::Number(n) => n.as_u64().unwrap_or(0) as u16,
                _ => continue,
            };
            assert!(status < 500, "{name}: a bulk operation failed with {op}");
            if status >= 400 {
                assert_scim_error(name, status, &op["response"]);
            }
        }
    }
}

fn assert_scim_error(name: &str, status: u16, body: &Value) {
    assert_eq!(
        body["schemas"],
        json!([ERROR_SCHEMA]),
        "{name}: not a SCIM error body: {body}"
    );
    assert_eq!(
        body["status"],
        status.to_string(),
        "{name}: the error's status: {body}"
    );
    if let Some(t) = body.get("scimType") {
        assert!(t.is_string(), "{name}: scimType {t}");
    }
}

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "displayName": "Given Family",
        "externalId": format!("ext-{user_name}"),
        "active": true,
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A successful user write is what the bridge now serves, and a user with an email is at the
/// partner.
async fn check_user_result(t: &Target, name: &str, a: &Answer) {
    if !a.status.is_success() {
        return;
    }
    let id = a.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no id: {}", a.body));
    let (s, stored) = t.h.get(&format!("/Users/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{name}: {stored}");
    assert_eq!(stored, a.body, "{name}: the answer is not what is stored");
    t.h.settle(Duration::from_secs(10)).await;
    let user_name = stored["userName"].as_str().unwrap_or_default();
    if user_name.contains('@') && stored["active"] != json!(false) {
        assert!(
            t.h.partner_user("acme", user_name).is_some(),
            "{name}: accepted {user_name} is not at the partner"
        );
    }
}

// ---- Sizes: over the limit, 100,000 elements, deep nesting ---------------------------------

/// Sends `head` and `body` over a plain TCP connection and reads whatever answer comes; with
/// `shut`, the write half is closed after the body (a client that gives up mid-body).
async fn raw_tcp(h: &Harness, head: String, body: &[u8], shut: bool) -> Option<(u16, Value)> {
    let addr = h.root.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before the whole body is written.
    let _ = s.write_all(body).await;
    if shut {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("no answer and no close within the deadline");
    if read.is_err() && out.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked answer: the JSON sits between the chunk sizes.
    let json_text = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .unwrap_or("");
    Some((
        status,
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    ))
}

/// Sends `head` (which asks `Expect: 100-continue`), and `body` only if the server answers
/// `100 Continue`; returns the final status and body.
async fn expect_continue(h: &Harness, head: String, body: &[u8]) -> (u16, Value) {
    let addr = h.root.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(REQUEST_DEADLINE, s.read(&mut chunk))
            .await
            .expect("no answer within the deadline")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.starts_with("HTTP/1.1 100") && text.contains("\r\n\r\n") {
            // Invited: send the body, then read the real answer.
            buf.clear();
            let _ = s.write_all(body).await;
            continue;
        }
        if n == 0 || parse_answer(&text).is_some_and(|(_, v)| !v.is_null()) {
            return parse_answer(&text).unwrap_or((0, Value::Null));
        }
    }
}

/// The status and JSON body of a raw HTTP/1.1 answer.
fn parse_answer(text: &str) -> Option<(u16, Value)> {
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let json_text = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .unwrap_or("");
    Some((
        status,
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    ))
}

fn request_head(h: &Harness, method: &str, path: &str, extra: &str) -> String {
    let host = h.root.trim_start_matches("http://");
    format!(
        "{method} /scim/v2{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nConnection: close\r\n{extra}\r\n"
    )
}

async fn sizes(t: &Target) {
    let h = &t.h;
    // Far over the limit, with a Content-Length: refused before it is read. The client asks
    // `Expect: 100-continue` and sends the body only if invited: a server that refuses while
    // a client is still writing may reset the connection before the client reads the answer,
    // which would make the case flaky rather than wrong.
    let far = format!(
        "{{\"userName\":\"far@acme.example.com\",\"displayName\":\"{}\"}}",
        "x".repeat(BODY_LIMIT * 5)
    );
    let sentinel_path = format!("/Users/{}", t.sentinel_user);
    for (method, path) in [
        ("POST", "/Users"),
        ("POST", "/Groups"),
        ("POST", "/Bulk"),
        ("POST", "/Users/.search"),
        ("PATCH", sentinel_path.as_str()),
        ("PUT", sentinel_path.as_str()),
    ] {
        let name = format!("{method} {path} far over the limit");
        let calls = t.partner_calls();
        let head = request_head(
            h,
            method,
            path,
            &format!("Content-Length: {}\r\nExpect: 100-continue\r\n", far.len()),
        );
        let (status, b) = expect_continue(h, head, far.as_bytes()).await;
        assert_eq!(status, 413, "{name}: {b}");
        assert_scim_error(&name, 413, &b);
        t.assert_healthy(&name).await;
        assert_eq!(t.partner_calls(), calls, "{name}");
    }
    // Far over the limit without a length (chunked): refused while it is read.
    let head = request_head(h, "POST", "/Users", "Transfer-Encoding: chunked\r\n");
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "y".repeat(1 << 20));
    let mut body = b"{\"userName\":\"chunked@acme.example.com\",\"x\":\"".to_vec();
    body = [
        format!("{:x}\r\n", body.len()).into_bytes(),
        body,
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..((BODY_LIMIT * 3) >> 20) {
        body.extend_from_slice(chunk.as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    if let Some((status, b)) = raw_tcp(h, head, &body, false).await {
        assert_eq!(status, 413, "chunked far over the limit: {b}");
        assert_scim_error("chunked far over the limit", 413, &b);
    }
    t.assert_healthy("chunked far over the limit").await;
    assert!(h.partner_user("acme", "chunked@acme.example.com").is_none());
    // 100,000 elements, inside the body limit, so the bridge itself must cope. The bodies are
    // built as text: a debug build of serde_json takes seconds to build and write 100,000
    // values.
    let n = 100_000;
    let sentinel = t.sentinel_user.clone();
    let json_ct = Some("application/scim+json");
    let a = t
        .case(
            "a user with 100,000 emails",
            Method::POST,
            "/Users",
            many(
                r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"many-emails@acme.example.com","emails":["#,
                n,
                |i| format!(r#"{{"value":"e{i}@acme.example.com","type":"other"}}"#),
                "]}",
            ),
            json_ct,
            Expect::Either,
        )
        .await;
    check_user_result(t, "a user with 100,000 emails", &a).await;
    // Unknown members are skipped (`unknown_members = "skip"`, the default): the group is
    // created empty, and no membership reaches the partner.
    let a = t
        .case(
            "a group with 100,000 unknown members",
            Method::POST,
            "/Groups",
            many(
                r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Ghosts","members":["#,
                n,
                |i| format!(r#"{{"value":"no-such-user-{i}"}}"#),
                "]}",
            ),
            json_ct,
            Expect::Either,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body.get("members").is_none(), "{}", a.body);
    let ghosts = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.delete(&format!("/Groups/{ghosts}")).await.0,
        StatusCode::NO_CONTENT
    );
    // The same member 100,000 times is one member.
    let a = t
        .case(
            "a group with one member 100,000 times",
            Method::POST,
            "/Groups",
            many(
                r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Echoes","members":["#,
                n,
                |_| format!(r#"{{"value":"{sentinel}"}}"#),
                "]}",
            ),
            json_ct,
            Expect::Either,
        )
        .await;
    if a.status.is_success() {
        let id = a.body["id"].as_str().unwrap();
        let g = h.get(&format!("/Groups/{id}")).await.1;
        assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");
        h.settle(Duration::from_secs(10)).await;
        assert_eq!(
            h.partner_groups("acme", "sentinel@acme.example.com"),
            vec!["Echoes".to_owned(), "Sentinels".to_owned()]
        );
        assert_eq!(
            h.delete(&format!("/Groups/{id}")).await.0,
            StatusCode::NO_CONTENT
        );
        h.settle(Duration::from_secs(10)).await;
    }
    // Skipped as well: the PATCH succeeds and changes nothing (the sentinel checks below).
    let a = t
        .case(
            "a group PATCH adding 100,000 unknown members",
            Method::PATCH,
            &format!("/Groups/{}", t.sentinel_group),
            many(
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":["#,
                n,
                |i| format!(r#"{{"value":"ghost-{i}"}}"#),
                "]}]}",
            ),
            json_ct,
            Expect::Either,
        )
        .await;
    assert!(a.status.is_success(), "{} {}", a.status, a.body);
    // 100,000 operations, the last one invalid: nothing of it may be applied.
    t.case(
        "a PATCH of 100,000 operations, the last unknown",
        Method::PATCH,
        &format!("/Users/{}", t.sentinel_user),
        many(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":["#,
            n,
            |i| {
                let op = if i == n - 1 { "frobnicate" } else { "replace" };
                format!(r#"{{"op":"{op}","path":"displayName","value":"D{i}"}}"#)
            },
            "]}",
        ),
        json_ct,
        Expect::Refused(None),
    )
    .await;
    t.case(
        "a bulk request of 100,000 operations",
        Method::POST,
        "/Bulk",
        many(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":["#,
            n,
            |i| {
                format!(
                    r#"{{"method":"POST","path":"/Users","bulkId":"b{i}","data":{{"userName":"b{i}@acme.example.com"}}}}"#
                )
            },
            "]}",
        ),
        json_ct,
        Expect::Refused(None),
    )
    .await;
    let a = t
        .case(
            ".search with 100,000 attributes",
            Method::POST,
            "/Users/.search",
            many(
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"attributes":["#,
                n,
                |i| format!(r#""a{i}""#),
                "]}",
            ),
            json_ct,
            Expect::Either,
        )
        .await;
    if a.status.is_success() {
        assert!(a.body["totalResults"].as_u64().is_some(), "{}", a.body);
    }
    // Deep nesting, in every body-taking endpoint.
    let depth = 10_000;
    let arrays = format!(
        "{{\"userName\":\"deep@acme.example.com\",\"x\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let objects = format!(
        "{{\"userName\":\"deep@acme.example.com\",\"x\":{}1{}}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    let unclosed = "[".repeat(depth * 10);
    for (what, body) in [
        ("arrays", &arrays),
        ("objects", &objects),
        ("unclosed", &unclosed),
    ] {
        for (method, path) in [
            (Method::POST, "/Users".to_owned()),
            (Method::POST, "/Groups".to_owned()),
            (Method::POST, "/Bulk".to_owned()),
            (Method::POST, "/.search".to_owned()),
            (Method::PATCH, format!("/Users/{}", t.sentinel_user)),
            (Method::PUT, format!("/Groups/{}", t.sentinel_group)),
        ] {
            t.case(
                &format!("{method} {path} nested {depth} levels of {what}"),
                method,
                &path,
                Some(body.clone().into_bytes()),
                Some("application/scim+json"),
                Expect::Refused(Some("invalidSyntax")),
            )
            .await;
        }
    }
    assert!(h.partner_user("acme", "deep@acme.example.com").is_none());
}

/// `head`, then `n` items joined by commas, then `tail`.
fn many(head: &str, n: usize, item: impl Fn(usize) -> String, tail: &str) -> Option<Vec<u8>> {
    let mut out = head.to_owned();
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item(i));
    }
    out.push_str(tail);
    Some(out.into_bytes())
}

#[tokio::test]
async fn sizes_over_the_limit_huge_arrays_and_deep_nesting() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        sizes(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}

// ---- Malformed bodies and media types ------------------------------------------------------

async fn malformed(t: &Target) {
    let h = &t.h;
    let user = t.sentinel_user.clone();
    let group = t.sentinel_group.clone();
    let valid_user = bytes(&user_body("malformed@acme.example.com"));
    let valid_patch = bytes(&json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Changed"}]}));
    let endpoints: Vec<(Method, String, Vec<u8>)> = vec![
        (Method::POST, "/Users".into(), valid_user.clone()),
        (Method::PUT, format!("/Users/{user}"), valid_user.clone()),
        (Method::PATCH, format!("/Users/{user}"), valid_patch.clone()),
        (
            Method::POST,
            "/Groups".into(),
            bytes(&json!({"schemas": [GROUP_SCHEMA], "displayName": "Malformed"})),
        ),
        (
            Method::PATCH,
            format!("/Groups/{group}"),
            valid_patch.clone(),
        ),
        (
            Method::POST,
            "/Bulk".into(),
            bytes(&json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "m",
                 "data": user_body("malformed@acme.example.com")}]})),
        ),
        (
            Method::POST,
            "/Users/.search".into(),
            bytes(&json!({"schemas": [SEARCH_REQUEST], "filter": "userName eq \"x\""})),
        ),
    ];
    for (method, path, valid) in &endpoints {
        let label = format!("{method} {path}");
        // Truncated at several points: never valid JSON.
        for cut in [1, valid.len() / 3, valid.len() / 2, valid.len() - 1] {
            t.case(
                &format!("{label} truncated to {cut} bytes"),
                method.clone(),
                path,
                Some(valid[..cut].to_vec()),
                Some("application/scim+json"),
                Expect::Refused(Some("invalidSyntax")),
            )
            .await;
        }
        // Invalid UTF-8 inside a string, and a lone surrogate escape.
        let text = String::from_utf8(valid.clone()).unwrap();
        let mut bad = valid.clone();
        let quote = text.rfind('"').unwrap();
        bad.splice(quote..quote, [0xff, 0xfe, 0xc3]);
        t.case(
            &format!("{label} with invalid UTF-8"),
            method.clone(),
            path,
            Some(bad),
            Some("application/scim+json"),
            Expect::Refused(Some("invalidSyntax")),
        )
        .await;
        let surrogate =
            text.replacen("Malformed", "\\ud800", 1)
                .replacen("malformed@", "\\udc00x@", 1);
        if surrogate != text {
            t.case(
                &format!("{label} with a lone surrogate"),
                method.clone(),
                path,
                Some(surrogate.into_bytes()),
                Some("application/scim+json"),
                Expect::Refused(Some("invalidSyntax")),
            )
            .await;
        }
        // Not an object; empty; trailing garbage; a number out of range.
        for (what, body) in [
            ("an array", b"[{}]".to_vec()),
            ("a string", b"\"{}\"".to_vec()),
            ("empty", Vec::new()),
            ("trailing garbage", [valid.clone(), b"}{".to_vec()].concat()),
            ("a number out of range", b"{\"startIndex\": 1e400}".to_vec()),
        ] {
            t.case(
                &format!("{label} with {what}"),
                method.clone(),
                path,
                Some(body),
                Some("application/scim+json"),
                Expect::Refused(Some("invalidSyntax")),
            )
            .await;
        }
        // Media types that are not JSON are 415; JSON ones and none are read.
        for ct in [
            "text/plain",
            "application/xml",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json-patch+json",
            "scim+json",
        ] {
            t.case(
                &format!("{label} as {ct}"),
                method.clone(),
                path,
                Some(valid.clone()),
                Some(ct),
                Expect::Status(415),
            )
            .await;
        }
    }
    // A valid body without a Content-Type is read as JSON (documented in http/extract.rs).
    let a = t
        .case(
            "POST /Users without a Content-Type",
            Method::POST,
            "/Users",
            Some(bytes(&user_body("no-ct@acme.example.com"))),
            None,
            Expect::Either,
        )
        .await;
    check_user_result(t, "POST /Users without a Content-Type", &a).await;
    // Duplicate keys: one of the values wins and what is stored is what the partner has.
    let dup = br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName":"dup-a@acme.example.com","userName":"dup-b@acme.example.com",
        "active":false,"active":true,
        "name":{"givenName":"A","givenName":"B"}}"#;
    let a = t
        .case(
            "POST /Users with duplicate keys",
            Method::POST,
            "/Users",
            Some(dup.to_vec()),
            Some("application/scim+json"),
            Expect::Either,
        )
        .await;
    check_user_result(t, "POST /Users with duplicate keys", &a).await;
    if a.status.is_success() {
        let stored = a.body["userName"].as_str().unwrap();
        let other = if stored == "dup-a@acme.example.com" {
            "dup-b@acme.example.com"
        } else {
            "dup-a@acme.example.com"
        };
        assert!(h.partner_user("acme", other).is_none(), "both names");
    }
    // A body that promises more than it sends, then the client gives up: no answer needed,
    // but nothing is created and the server stays healthy.
    let body = bytes(&user_body("truncated-tcp@acme.example.com"));
    let head = request_head(
        h,
        "POST",
        "/Users",
        &format!("Content-Length: {}\r\n", body.len() + 100),
    );
    if let Some((status, b)) = raw_tcp(h, head, &body, true).await {
        assert!(
            (400..500).contains(&status),
            "truncated on the wire: {status} {b}"
        );
        assert_scim_error("truncated on the wire", status, &b);
    }
    t.assert_healthy("truncated on the wire").await;
    h.settle(Duration::from_secs(10)).await;
    assert!(h
        .partner_user("acme", "truncated-tcp@acme.example.com")
        .is_none());
    assert!(h
        .partner_user("acme", "malformed@acme.example.com")
        .is_none());
}

#[tokio::test]
async fn malformed_bodies_and_wrong_media_types() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        malformed(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}

// ---- Wrong types everywhere ----------------------------------------------------------------

/// A value of every JSON type.
fn wrong_values() -> Vec<(&'static str, Value)> {
    vec![
        ("null", Value::Null),
        ("a number", json!(42)),
        ("a string", json!("wrong-type")),
        ("a bool", json!(true)),
        ("an array", json!([1, "x", null])),
        ("an object", json!({"k": "v"})),
    ]
}

/// Every JSON pointer into `v` (objects and arrays, depth first), without the root.
fn pointers(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        _ => {}
    }
}

/// Replaces each field of `template` (every pointer) with each wrong value and sends it. With
/// `users`, an accepted write is checked at once (the next case may change the same user);
/// the other successful answers are returned with their case names for the caller to check.
async fn each_field_wrong(
    t: &Target,
    what: &str,
    method: Method,
    path: &str,
    users: bool,
    template: impl Fn(usize) -> Value,
) -> Vec<(String, Answer)> {
    let mut ptrs = Vec::new();
    pointers(&template(0), "", &mut ptrs);
    let mut accepted = Vec::new();
    let mut n = 0;
    for p in &ptrs {
        for (kind, wrong) in wrong_values() {
            n += 1;
            let mut body = template(n);
            *body.pointer_mut(p).unwrap() = wrong.clone();
            if body == template(n) {
                continue;
            }
            let name = format!("{what}: {p} as {kind}");
            let a = t
                .json_case(&name, method.clone(), path, &body, Expect::Either)
                .await;
            if a.status.is_success() {
                if users {
                    check_user_result(t, &name, &a).await;
                    assert_user_types(&name, &a.body);
                } else {
                    accepted.push((name, a));
                }
            }
        }
    }
    accepted
}

/// Wrong-typed values are never stored as such: each attribute the answer shows has its
/// schema type.
fn assert_user_types(name: &str, u: &Value) {
    assert!(u["userName"].is_string(), "{name}: {u}");
    for key in ["displayName", "externalId"] {
        assert!(u[key].is_string() || u[key].is_null(), "{name}: {key} {u}");
    }
    assert!(
        u["active"].is_boolean() || u["active"].is_null(),
        "{name}: {u}"
    );
    if let Some(emails) = u.get("emails") {
        for e in emails.as_array().unwrap_or_else(|| panic!("{name}: {u}")) {
            let v = e.get("value").unwrap_or(&Value::Null);
            assert!(v.is_string() || v.is_null(), "{name}: {u}");
            assert!(
                e["primary"].is_boolean() || e["primary"].is_null(),
                "{name}: {u}"
            );
        }
    }
}

async fn wrong_types(t: &Target) {
    let h = &t.h;
    let target = create_user(h, "wt-target@acme.example.com", "Wt", "Target").await;
    let group = create_group(h, "Wrong Types", &[]).await;
    h.settle(Duration::from_secs(10)).await;

    each_field_wrong(t, "POST /Users", Method::POST, "/Users", true, |n| {
        user_body(&format!("wt-{n}@acme.example.com"))
    })
    .await;
    each_field_wrong(
        t,
        "PUT /Users/{id}",
        Method::PUT,
        &format!("/Users/{target}"),
        true,
        |_| user_body("wt-target@acme.example.com"),
    )
    .await;
    let patch_user = |_: usize| {
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "displayName", "value": "Patched"},
            {"op": "replace", "value": {"name": {"givenName": "G"}, "active": true}},
        ]})
    };
    each_field_wrong(
        t,
        "PATCH /Users/{id}",
        Method::PATCH,
        &format!("/Users/{target}"),
        true,
        patch_user,
    )
    .await;
    let group_body = |n: usize| {
        json!({"schemas": [GROUP_SCHEMA], "displayName": format!("WT {n}"),
               "externalId": format!("wt-{n}"), "members": [{"value": target}]})
    };
    let accepted = each_field_wrong(
        t,
        "POST /Groups",
        Method::POST,
        "/Groups",
        false,
        group_body,
    )
    .await;
    for (name, a) in &accepted {
        let id = a.body["id"].as_str().unwrap();
        let (s, g) = h.get(&format!("/Groups/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{name}: {g}");
        assert!(g["displayName"].is_string(), "{name}: {g}");
    }
    let patch_group = |_: usize| {
        json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": target}]},
            {"op": "replace", "path": "displayName", "value": "Wrong Types"},
        ]})
    };
    each_field_wrong(
        t,
        "PATCH /Groups/{id}",
        Method::PATCH,
        &format!("/Groups/{group}"),
        false,
        patch_group,
    )
    .await;
    let search = |_: usize| {
        json!({"schemas": [SEARCH_REQUEST], "filter": "userName sw \"wt\"",
               "startIndex": 1, "count": 5, "attributes": ["userName"],
               "excludedAttributes": ["emails"], "sortBy": "userName",
               "sortOrder": "descending"})
    };
    for (name, a) in each_field_wrong(
        t,
        "POST .search",
        Method::POST,
        "/Users/.search",
        false,
        search,
    )
    .await
    {
        assert!(a.body["totalResults"].is_u64(), "{name}: {}", a.body);
    }
    // The bulk envelope and one operation (the data inside is what the cases above cover).
    let bulk = |n: usize| {
        json!({"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": format!("b{n}"),
             "data": {"schemas": [USER_SCHEMA], "userName": format!("wt-bulk-{n}@acme.example.com")}},
        ]})
    };
    each_field_wrong(t, "POST /Bulk", Method::POST, "/Bulk", false, bulk).await;
    // Whatever was accepted, the bridge and the partner agree on the group's members.
    h.settle(Duration::from_secs(20)).await;
    let g = h.get(&format!("/Groups/{group}")).await.1;
    let display = g["displayName"].as_str().unwrap().to_owned();
    for m in g["members"].as_array().cloned().unwrap_or_default() {
        let u = h
            .get(&format!("/Users/{}", m["value"].as_str().unwrap()))
            .await
            .1;
        let email = u["userName"].as_str().unwrap();
        assert!(
            h.partner_groups("acme", email).contains(&display),
            "{email} is a member of {display} here but not at the partner"
        );
    }
}

#[tokio::test]
async fn wrong_types_in_every_field() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        wrong_types(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}

// ---- Text: emoji, right-to-left, control characters ----------------------------------------

async fn text(t: &Target) {
    let h = &t.h;
    // Valid text must round-trip exactly, here and at the partner.
    let given = "Zoë 🦀👩🏽‍💻";
    let family = "שלום \u{202E}עולם مرحبا";
    let display = "🏳️‍🌈 \u{200F}RTL\u{200E} mark";
    let mut u = user_body("unicode@acme.example.com");
    u["name"] = json!({"givenName": given, "familyName": family});
    u["displayName"] = json!(display);
    let a = t
        .json_case(
            "emoji and RTL names",
            Method::POST,
            "/Users",
            &u,
            Expect::Status(201),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    check_user_result(t, "emoji and RTL names", &a).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let stored = h.get(&format!("/Users/{id}")).await.1;
    assert_eq!(stored["name"]["givenName"], given);
    assert_eq!(stored["name"]["familyName"], family);
    assert_eq!(stored["displayName"], display);
    let p = h.partner_user("acme", "unicode@acme.example.com").unwrap();
    assert_eq!(p.first_name, given);
    assert_eq!(p.last_name, family);
    // Filters find it by its non-ASCII value.
    let f = format!(
        "/Users?filter=displayName%20eq%20%22{}%22",
        urlencode(display)
    );
    let (s, list) = h.get(&f).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["totalResults"], 1, "{list}");
    // A group name in Hebrew and emoji goes to the partner as is.
    let gname = "צוות 🚀 / ../ team";
    let a = t
        .json_case(
            "an emoji, RTL and slash group name",
            Method::POST,
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": gname, "members": [{"value": id}]}),
            Expect::Either,
        )
        .await;
    if a.status.is_success() {
        h.settle(Duration::from_secs(10)).await;
        assert_eq!(
            h.partner_groups("acme", "unicode@acme.example.com"),
            vec![gname.to_owned()]
        );
        let gid = a.body["id"].as_str().unwrap();
        assert_eq!(
            h.get(&format!("/Groups/{gid}")).await.1["displayName"],
            gname
        );
    }

    // CR, LF, NUL and other controls in emails are refused before any partner call.
    for (what, bad) in [
        ("CR LF", "crlf\r\nX-Injected: 1@acme.example.com"),
        ("LF", "lf\n@acme.example.com"),
        ("CR", "c\rr@acme.example.com"),
        ("NUL", "nul\u{0}@acme.example.com"),
        ("TAB", "tab\t@acme.example.com"),
        ("DEL", "del\u{7f}@acme.example.com"),
        ("a space", "spa ce@acme.example.com"),
        ("a non-ASCII letter", "zoë@acme.example.com"),
    ] {
        t.json_case(
            &format!("{what} in userName"),
            Method::POST,
            "/Users",
            &user_body(bad),
            Expect::Refused(None),
        )
        .await;
        let mut u = user_body("ok-name@acme.example.com");
        u["userName"] = json!("no-at-sign");
        u["emails"][0]["value"] = json!(bad);
        t.json_case(
            &format!("{what} in the primary email"),
            Method::POST,
            "/Users",
            &u,
            Expect::Refused(None),
        )
        .await;
        t.json_case(
            &format!("{what} in a PATCHed userName"),
            Method::PATCH,
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "userName", "value": bad}]}),
            Expect::Refused(None),
        )
        .await;
    }
    // NUL in names is refused; CR/LF in names is text: refused or kept exactly.
    for (what, name) in [
        ("NUL", "Na\u{0}me"),
        ("CR LF", "Line\r\nBreak"),
        ("LF", "Line\nBreak"),
    ] {
        let email = format!(
            "name-{}@acme.example.com",
            what.replace(' ', "-").to_lowercase()
        );
        let mut u = user_body(&email);
        u["name"]["givenName"] = json!(name);
        let expect = if what == "NUL" {
            Expect::Refused(Some("invalidValue"))
        } else {
            Expect::Either
        };
        let a = t
            .json_case(
                &format!("{what} in givenName"),
                Method::POST,
                "/Users",
                &u,
                expect,
            )
            .await;
        check_user_result(t, &format!("{what} in givenName"), &a).await;
        if a.status.is_success() {
            assert_eq!(a.body["name"]["givenName"], name);
            assert_eq!(h.partner_user("acme", &email).unwrap().first_name, name);
        }
        let g = json!({"schemas": [GROUP_SCHEMA], "displayName": format!("G {name}")});
        let a = t
            .json_case(
                &format!("{what} in a group name"),
                Method::POST,
                "/Groups",
                &g,
                expect,
            )
            .await;
        if a.status.is_success() {
            assert_eq!(a.body["displayName"], g["displayName"]);
        }
        t.json_case(
            &format!("{what} in a PATCHed displayName"),
            Method::PATCH,
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": name}]}),
            expect,
        )
        .await;
    }
    // A trailing CR or LF is trimmed like other surrounding whitespace: the partner never sees
    // a control character in an email (it travels in an HTTP header).
    for bad in ["trail@acme.example.com\r", "trail2@acme.example.com\r\n"] {
        t.json_case(
            &format!("{bad:?} as userName"),
            Method::POST,
            "/Users",
            &user_body(bad),
            Expect::Either,
        )
        .await;
    }
    h.settle(Duration::from_secs(10)).await;
    for u in h.emulator.users("acme") {
        assert!(
            u.email.bytes().all(|b| b.is_ascii_graphic()),
            "the partner has the email {:?}",
            u.email
        );
    }
    // NUL escaped in the URL.
    for path in [
        format!("/Users/{id}%00"),
        "/Users?filter=userName%20eq%20%22a%00%22".to_owned(),
        "/Groups/%00".to_owned(),
    ] {
        t.case(
            &format!("GET {path}"),
            Method::GET,
            &path,
            None,
            None,
            Expect::Refused(None),
        )
        .await;
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn emoji_and_rtl_round_trip_control_characters_are_refused() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        text(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}

// ---- URL paths and SQL metacharacters ------------------------------------------------------

async fn paths_and_sql(t: &Target) {
    let h = &t.h;
    let user = t.sentinel_user.clone();
    let group = t.sentinel_group.clone();
    let sql = [
        "' OR 1=1 --",
        "\"; DROP TABLE users; --",
        "'; DROP TABLE groups; --",
        "1' UNION SELECT * FROM users --",
        "%' OR '%'='",
        "\\'; SELECT pg_sleep(30); --",
        "*",
        "%",
        "_",
    ];
    // SQL in ids: no such resource, for every method.
    for s in sql {
        let enc = urlencode(s);
        for kind in ["Users", "Groups"] {
            let path = format!("/{kind}/{enc}");
            for (method, body) in [
                (Method::GET, None),
                (Method::DELETE, None),
                (
                    Method::PATCH,
                    Some(bytes(&json!({"schemas": [PATCH_OP], "Operations": [
                        {"op": "replace", "path": "displayName", "value": "x"}]}))),
                ),
                (
                    Method::PUT,
                    Some(bytes(&user_body("sql-put@acme.example.com"))),
                ),
            ] {
                t.case(
                    &format!("{method} {path}"),
                    method,
                    &path,
                    body,
                    Some("application/scim+json"),
                    Expect::Status(404),
                )
                .await;
            }
        }
        // SQL in filter values: matches nothing, matched literally.
        for attr in [
            "userName",
            "externalId",
            "emails.value",
            "id",
            "displayName",
        ] {
            let filter = format!(
                "{attr} eq \"{}\"",
                s.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let a = t
                .case(
                    &format!("filter {filter}"),
                    Method::GET,
                    &format!("/Users?filter={}", urlencode(&filter)),
                    None,
                    None,
                    Expect::Either,
                )
                .await;
            if a.status.is_success() {
                assert_eq!(a.body["totalResults"], 0, "{filter}: {}", a.body);
            }
            for op in ["sw", "co", "ew"] {
                let filter = format!(
                    "{attr} {op} \"{}\"",
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                );
                let a = t
                    .json_case(
                        &format!(".search {filter}"),
                        Method::POST,
                        "/.search",
                        &json!({"schemas": [SEARCH_REQUEST], "filter": filter}),
                        Expect::Either,
                    )
                    .await;
                if a.status.is_success() {
                    assert_eq!(a.body["totalResults"], 0, "{filter}: {}", a.body);
                }
            }
        }
        // SQL in the filter's syntax: a filter error, not a query.
        for filter in [
            format!("userName eq \"x\" {s}"),
            format!("{s} eq \"x\""),
            format!("userName {s} \"x\""),
        ] {
            t.case(
                &format!("filter {filter}"),
                Method::GET,
                &format!("/Groups?filter={}", urlencode(&filter)),
                None,
                None,
                Expect::Refused(None),
            )
            .await;
        }
        // SQL in sortBy and attributes.
        for q in [
            format!("sortBy={}", urlencode(s)),
            format!("attributes={}", urlencode(s)),
            format!("excludedAttributes={}", urlencode(s)),
        ] {
            t.case(
                &format!("GET /Users?{q}"),
                Method::GET,
                &format!("/Users?{q}"),
                None,
                None,
                Expect::Either,
            )
            .await;
        }
    }
    // SQL as a userName: stored and found literally.
    let a = t
        .json_case(
            "a userName with SQL",
            Method::POST,
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "o'brien\"; DROP TABLE users; --"}),
            Expect::Status(201),
        )
        .await;
    let id = a.body["id"].as_str().unwrap();
    let f = urlencode("userName eq \"o'brien\\\"; DROP TABLE users; --\"");
    let list = h.get(&format!("/Users?filter={f}")).await.1;
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], id);

    // `%2F`, `..` and friends in ids: no traversal to another route or resource.
    let tricky = [
        format!("..%2F{user}"),
        format!("..%2F..%2FGroups%2F{group}"),
        format!("%2E%2E%2F{user}"),
        "..".to_owned(),
        "%2E%2E".to_owned(),
        ".".to_owned(),
        format!("{user}%2F.."),
        format!("{user}%2Fmembers"),
        format!("{user}%2F"),
        "%2F".to_owned(),
        format!("{user}%3Fattributes%3Did"),
        format!("{user}%23"),
        "%FF%FE".to_owned(),
        "%C0%AF".to_owned(),
        "%25".to_owned(),
        "%".to_owned(),
        "a%2Fb%5Cc".to_owned(),
        format!("%20{user}"),
        format!("{user}%0D%0AX-Injected:%201"),
    ];
    for id in &tricky {
        for kind in ["Users", "Groups"] {
            let path = format!("/{kind}/{id}");
            let a = t
                .case(
                    &format!("GET {path}"),
                    Method::GET,
                    &path,
                    None,
                    None,
                    Expect::Either,
                )
                .await;
            if a.status.is_success() {
                // Only an id that names the resource itself may answer, and with that resource;
                // or `.`, which the client's URL parser resolves to the collection (`/Users/`),
                // served as the collection (a list, read-only).
                let list = a.body["schemas"][0] == json!(LIST_RESPONSE);
                assert!(
                    a.body["id"] == json!(user)
                        || a.body["id"] == json!(group)
                        || (id == "." && list),
                    "GET {path}: {}",
                    a.body
                );
            }
            for (method, body) in [
                (Method::DELETE, None),
                (
                    Method::PATCH,
                    Some(bytes(&json!({"schemas": [PATCH_OP], "Operations": [
                        {"op": "replace", "path": "displayName", "value": "Traversed"}]}))),
                ),
            ] {
                let a = t
                    .case(
                        &format!("{method} {path}"),
                        method.clone(),
                        &path,
                        body,
                        Some("application/scim+json"),
                        Expect::Either,
                    )
                    .await;
                assert!(
                    !a.status.is_success(),
                    "{method} {path} changed something: {} {}",
                    a.status,
                    a.body
                );
            }
        }
    }
    // `/` and `..` in group names: the name reaches the partner exactly, as one path segment.
    let uid = create_user(h, "slash@acme.example.com", "Sl", "Ash").await;
    for name in [
        "a/b",
        "../../users",
        "..",
        ".",
        "a%2Fb",
        "x/../y",
        "%2e%2e",
        "a?b#c",
        "a\\b",
    ] {
        let a = t
            .json_case(
                &format!("group named {name:?}"),
                Method::POST,
                "/Groups",
                &json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": uid}]}),
                Expect::Either,
            )
            .await;
        if a.status.is_success() {
            h.settle(Duration::from_secs(10)).await;
            assert!(
                h.partner_groups("acme", "slash@acme.example.com")
                    .contains(&name.to_owned()),
                "group {name:?}: the partner has {:?}",
                h.emulator
                    .groups("acme")
                    .iter()
                    .map(|g| g.name.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
    // Groups whose names look like partner routes did not touch other groups or users.
    let names: Vec<String> = h
        .emulator
        .groups("acme")
        .iter()
        .map(|g| g.name.clone())
        .collect();
    assert!(names.contains(&"Sentinels".to_owned()), "{names:?}");
    assert!(h
        .partner_user("acme", "sentinel@acme.example.com")
        .is_some());
}

#[tokio::test]
async fn path_tricks_and_sql_metacharacters_are_harmless() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        paths_and_sql(&t).await;
        t.assert_sentinels_intact().await;
        // The tables are all still there and whole.
        let (s, list) = t.h.get("/Users?count=1000").await;
        assert_eq!(s, StatusCode::OK);
        assert!(list["totalResults"].as_u64().unwrap() >= 3, "{list}");
    })
    .await;
}

// ---- Paging extremes -----------------------------------------------------------------------

async fn paging(t: &Target) {
    let h = &t.h;
    for i in 0..4 {
        create_user(h, &format!("page{i}@acme.example.com"), "Pa", "Ge").await;
    }
    let total = 5u64; // with the sentinel
    let values = [
        "0",
        "-1",
        "-9223372036854775808",
        "9223372036854775807",
        "9223372036854775808",
        "99999999999999999999999999",
        "1e3",
        "1.5",
        "0x10",
        "+3",
        " 2",
        "NaN",
        "abc",
        "",
    ];
    for start in values {
        for count in values {
            let q = format!("startIndex={}&count={}", urlencode(start), urlencode(count));
            for kind in ["Users", "Groups"] {
                let a = t
                    .case(
                        &format!("GET /{kind}?{q}"),
                        Method::GET,
                        &format!("/{kind}?{q}"),
                        None,
                        None,
                        Expect::Either,
                    )
                    .await;
                if a.status.is_success() {
                    check_page(
                        &format!("GET /{kind}?{q}"),
                        &a.body,
                        if kind == "Users" { total } else { 1 },
                    );
                }
            }
        }
    }
    let numbers = [
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e300),
        json!(-1e300),
        json!(2.5),
        json!("3"),
        json!(null),
        json!([1]),
        json!({"n": 1}),
        json!(true),
    ];
    for start in &numbers {
        for count in &numbers {
            let name = format!(".search startIndex {start} count {count}");
            let a = t
                .json_case(
                    &name,
                    Method::POST,
                    "/Users/.search",
                    &json!({"schemas": [SEARCH_REQUEST], "startIndex": start, "count": count}),
                    Expect::Either,
                )
                .await;
            if a.status.is_success() {
                check_page(&name, &a.body, total);
            }
        }
    }
}

/// A list answer is consistent: the total, a page no larger than asked and than what is left.
fn check_page(name: &str, body: &Value, total: u64) {
    assert_eq!(body["totalResults"], total, "{name}: {body}");
    let items = body["Resources"].as_array().map(Vec::len).unwrap_or(0) as u64;
    assert_eq!(body["itemsPerPage"], items, "{name}: {body}");
    let start = body["startIndex"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: {body}"));
    assert!(start >= 1, "{name}: {body}");
    assert!(items <= total.saturating_sub(start - 1), "{name}: {body}");
}

#[tokio::test]
async fn huge_and_negative_paging_is_clamped_or_refused() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        paging(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}

// ---- PATCH: unknown ops, read-only paths ---------------------------------------------------

async fn patch_ops(t: &Target) {
    let h = &t.h;
    let uid = create_user(h, "patchme@acme.example.com", "Pat", "Ch").await;
    let gid = create_group(h, "Patch Me", &[&uid]).await;
    h.settle(Duration::from_secs(10)).await;
    let user_before = h.get(&format!("/Users/{uid}")).await.1;
    let group_before = h.get(&format!("/Groups/{gid}")).await.1;
    let user_path = format!("/Users/{uid}");
    let group_path = format!("/Groups/{gid}");
    let unknown_ops = [
        json!("frobnicate"),
        json!("move"),
        json!("copy"),
        json!("test"),
        json!(""),
        json!("a dd"),
        json!("ad\u{0430}"), // Cyrillic a
        json!(null),
        json!(1),
    ];
    for op in &unknown_ops {
        for (path, valid_first) in [
            (
                &user_path,
                json!({"op": "replace", "path": "displayName", "value": "First"}),
            ),
            (&group_path, json!({"op": "remove", "path": "members"})),
        ] {
            // The unknown op comes after a valid one: the request is refused as a whole.
            t.json_case(
                &format!("PATCH {path} op {op}"),
                Method::PATCH,
                path,
                &json!({"schemas": [PATCH_OP], "Operations": [
                    valid_first, {"op": op, "path": "displayName", "value": "x"}]}),
                Expect::Refused(None),
            )
            .await;
        }
    }
    // Missing or wrong envelope pieces.
    for body in [
        json!({"schemas": [PATCH_OP]}),
        json!({"schemas": [PATCH_OP], "Operations": []}),
        json!({"schemas": ["urn:example:not-patch"], "Operations": [
            {"op": "replace", "path": "displayName", "value": "x"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"path": "displayName", "value": "x"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "nosuchattr", "value": 1}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "emails[value eq", "value": 1}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "name.givenName.x", "value": "x"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "urn:example:x:attr", "value": "x"}]}),
    ] {
        for path in [&user_path, &group_path] {
            t.json_case(
                &format!("PATCH {path} {body}"),
                Method::PATCH,
                path,
                &body,
                Expect::Either,
            )
            .await;
        }
    }
    // Read-only attributes: id, meta and its parts, groups on a user.
    let read_only = [
        ("id", json!("00000000-0000-0000-0000-000000000000")),
        ("meta", json!({"created": "2000-01-01T00:00:00Z"})),
        ("meta.created", json!("2000-01-01T00:00:00Z")),
        ("meta.lastModified", json!("2000-01-01T00:00:00Z")),
        ("meta.version", json!("W/\"999\"")),
        ("meta.location", json!("http://evil.example.com/x")),
        ("meta.resourceType", json!("Group")),
        ("groups", json!([{"value": gid}])),
        ("schemas", json!(["urn:example:x"])),
    ];
    for (attr, value) in &read_only {
        for op in ["add", "replace", "remove"] {
            for path in [&user_path, &group_path] {
                if *attr == "groups" && path == &group_path {
                    continue;
                }
                let mut operation = json!({"op": op, "path": attr});
                if op != "remove" {
                    operation["value"] = value.clone();
                }
                let name = format!("PATCH {path} {op} {attr}");
                let a = t
                    .json_case(
                        &name,
                        Method::PATCH,
                        path,
                        &json!({"schemas": [PATCH_OP], "Operations": [operation]}),
                        Expect::Either,
                    )
                    .await;
                if a.status.is_client_error() {
                    if let Some(tp) = a.body.get("scimType") {
                        assert!(
                            [
                                "mutability",
                                "invalidPath",
                                "noTarget",
                                "invalidValue",
                                "invalidSyntax"
                            ]
                            .contains(&tp.as_str().unwrap_or("")),
                            "{name}: {}",
                            a.body
                        );
                    }
                }
                // Accepted or not, the resource keeps its id, creation time and location.
                let (s, now) = h.get(path).await;
                assert_eq!(s, StatusCode::OK, "{name}: the resource is gone");
                let before = if path == &user_path {
                    &user_before
                } else {
                    &group_before
                };
                assert_eq!(now["id"], before["id"], "{name}");
                assert_eq!(now["meta"]["created"], before["meta"]["created"], "{name}");
                assert_eq!(
                    now["meta"]["location"], before["meta"]["location"],
                    "{name}"
                );
                assert_eq!(
                    now["meta"]["resourceType"], before["meta"]["resourceType"],
                    "{name}"
                );
            }
        }
        // The same as a path-less value.
        let name = format!("PATCH replace value {{{attr}}}");
        let key = attr.split('.').next().unwrap();
        t.json_case(
            &name,
            Method::PATCH,
            &user_path,
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "value": {key: value}}]}),
            Expect::Either,
        )
        .await;
        let now = h.get(&user_path).await.1;
        assert_eq!(now["id"], user_before["id"], "{name}");
        assert_eq!(
            now["meta"]["created"], user_before["meta"]["created"],
            "{name}"
        );
    }
    // The group's members survived everything refused above.
    h.settle(Duration::from_secs(10)).await;
    assert!(h.get(&group_path).await.1["members"].is_array());
}

#[tokio::test]
async fn patch_unknown_ops_and_read_only_paths() {
    for_each_backend_url(|url| async move {
        let t = Target::start(url).await;
        patch_ops(&t).await;
        t.assert_sentinels_intact().await;
    })
    .await;
}
