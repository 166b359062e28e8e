//! Security over HTTP: every credential type against every failure, tenant isolation, JWT edge
//! cases, the OAuth token endpoint, limits, rate limits, trusted proxies and the admin audit
//! endpoint. Two tenants: `acme` at `/scim/v2` and `beta` at `/beta/scim/v2`, each with a
//! static token, a Basic user, an HS256 JWT issuer and an OAuth client of its own.

#![allow(clippy::type_complexity)]

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use scim_bridge::config::{
    AdminConfig, BasicCredentialConfig, BearerTokenConfig, CredentialsConfig, HttpConfig,
    JwtConfig, OAuthClientConfig, OAuthConfig, RateLimitConfig,
};
use scim_bridge::http::auth::basic::hash_password;
use scim_bridge::secret::Secret;
use serde_json::{json, Value};

use crate::support::{create_user, Harness, Options};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const RS_ISSUER: &str = "https://rs.idp.example/";

fn static_token(t: &str) -> String {
    format!("{t}-static-token-0123456789")
}
fn basic_user(t: &str) -> String {
    format!("{t}-okta")
}
fn basic_password(t: &str) -> String {
    format!("{t}-basic-password-0123")
}
fn jwt_secret(t: &str) -> String {
    format!("{t}-jwt-secret-0123456789abcdef0123456789")
}
fn jwt_issuer(t: &str) -> String {
    format!("https://idp.example/{t}")
}
fn jwt_audience(t: &str) -> String {
    format!("scim-{t}")
}
fn oauth_client(t: &str) -> String {
    format!("{t}-client")
}
fn oauth_secret(t: &str) -> String {
    format!("{t}-client-secret-0123456789")
}
fn signing_key(t: &str) -> String {
    format!("{t}-oauth-signing-key-0123456789abcdef0123")
}

/// Every credential type for tenant `t`.
fn credentials(t: &str) -> CredentialsConfig {
    CredentialsConfig {
        bearer_tokens: vec![BearerTokenConfig {
            name: "static".into(),
            token: Some(Secret::new(static_token(t))),
            ..BearerTokenConfig::default()
        }],
        basic: vec![BasicCredentialConfig {
            name: "basic".into(),
            username: basic_user(t),
            password_hash: Some(Secret::new(hash_password(&basic_password(t)).unwrap())),
            password_hash_file: None,
            password_sha256: None,
        }],
        jwt: vec![JwtConfig {
            name: "jwt".into(),
            issuer: jwt_issuer(t),
            audience: vec![jwt_audience(t)],
            hs256_secret: Some(Secret::new(jwt_secret(t))),
            leeway_s: 5,
            ..JwtConfig::default()
        }],
        oauth: Some(OAuthConfig {
            clients: vec![OAuthClientConfig {
                name: "oauth".into(),
                client_id: oauth_client(t),
                client_secret: Some(Secret::new(oauth_secret(t))),
                ..OAuthClientConfig::default()
            }],
            signing_key: Some(Secret::new(signing_key(t))),
            ..OAuthConfig::default()
        }),
    }
}

/// `acme` also accepts RS256 tokens checked with a PEM public key.
fn acme_credentials() -> CredentialsConfig {
    let mut c = credentials("acme");
    c.jwt.push(JwtConfig {
        name: "rs".into(),
        issuer: RS_ISSUER.into(),
        audience: vec!["scim-rs".into()],
        public_key_file: Some(format!("{KEYS}/rsa-public.pem").into()),
        leeway_s: 5,
        ..JwtConfig::default()
    });
    c
}

fn options() -> Options {
    Options {
        credentials: acme_credentials(),
        extra_tenants: vec![("beta".into(), "/beta/scim/v2".into(), credentials("beta"))],
        admin: AdminConfig {
            bearer_tokens: vec![BearerTokenConfig {
                name: "ops".into(),
                token: Some(Secret::new(ADMIN_TOKEN)),
                ..BearerTokenConfig::default()
            }],
            ..AdminConfig::default()
        },
        http: HttpConfig {
            // The matrix sends many failures from one address.
            auth_failure_limit: RateLimitConfig {
                per_second: 0.0,
                burst: 1,
            },
            ..HttpConfig::default()
        },
        ..Options::default()
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An HS256 or RS256 token with these claims.
fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).unwrap()
}

fn hs(secret: &str, claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        None,
        claims,
    )
}

fn rs(private_pem: &str, kid: Option<&str>, claims: Value) -> String {
    let pem = std::fs::read(format!("{KEYS}/{private_pem}")).unwrap();
    sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
        kid,
        claims,
    )
}

fn jwt_claims(t: &str, exp_in: i64) -> Value {
    json!({"iss": jwt_issuer(t), "aud": jwt_audience(t), "sub": "idp", "iat": now(), "exp": now() + exp_in})
}

/// The base URL of tenant `t`.
fn base(h: &Harness, t: &str) -> String {
    if t == "acme" {
        h.base.clone()
    } else {
        format!("{}/{t}/scim/v2", h.root)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Static,
    Basic,
    Jwt,
    OAuth,
}

const KINDS: [Kind; 4] = [Kind::Static, Kind::Basic, Kind::Jwt, Kind::OAuth];

/// A token from tenant `t`'s token endpoint.
async fn oauth_token(h: &Harness, t: &str) -> String {
    let res = h
        .http
        .post(format!("{}/oauth/token", base(h, t)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &oauth_client(t)),
            ("client_secret", &oauth_secret(t)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The `Authorization` value of a valid credential of `kind` for tenant `t`.
async fn valid(h: &Harness, kind: Kind, t: &str) -> String {
    match kind {
        Kind::Static => format!("Bearer {}", static_token(t)),
        Kind::Basic => basic_header(&basic_user(t), &basic_password(t)),
        Kind::Jwt => format!("Bearer {}", hs(&jwt_secret(t), jwt_claims(t, 300))),
        Kind::OAuth => format!("Bearer {}", oauth_token(h, t).await),
    }
}

/// A wrong credential of `kind` for tenant `t` (right shape, wrong secret).
fn wrong(kind: Kind, t: &str) -> String {
    match kind {
        Kind::Static => format!("Bearer {}x", static_token(t)),
        Kind::Basic => basic_header(&basic_user(t), "not-the-password"),
        Kind::Jwt => format!(
            "Bearer {}",
            hs(
                "another-secret-0123456789abcdef0123456789",
                jwt_claims(t, 300)
            )
        ),
        Kind::OAuth => format!(
            "Bearer {}",
            hs(
                "another-signing-key-0123456789abcdef0123",
                json!({"iss": "x", "aud": "x", "client_id": oauth_client(t), "exp": now() + 300})
            )
        ),
    }
}

/// An expired credential of `kind`, where the kind expires.
fn expired(h: &Harness, kind: Kind, t: &str) -> Option<String> {
    match kind {
        Kind::Static | Kind::Basic => None,
        Kind::Jwt => Some(format!(
            "Bearer {}",
            hs(&jwt_secret(t), jwt_claims(t, -600))
        )),
        Kind::OAuth => {
            let url = base(h, t);
            Some(format!(
                "Bearer {}",
                hs(
                    &signing_key(t),
                    json!({"iss": url, "aud": url, "sub": oauth_client(t),
                           "client_id": oauth_client(t), "iat": now() - 7200, "exp": now() - 3600})
                )
            ))
        }
    }
}

fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// GET `{base(t)}/Users` with this `Authorization` value.
async fn get_users(
    h: &Harness,
    t: &str,
    auth: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = h.http.get(format!("{}/Users", base(h, t)));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// A 401 that tells nothing: the same SCIM body whatever was wrong, and a challenge.
fn assert_refused(
    case: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
    assert_eq!(body["status"], "401", "{case}: {body}");
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{case}"
    );
    assert_eq!(
        body["detail"], "Authentication failed: valid credentials for this endpoint are required.",
        "{case}: the detail must not say what was wrong"
    );
    let challenges: Vec<_> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{case}: {challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{case}: the tenant accepts Basic: {challenges:?}"
    );
}

#[tokio::test]
async fn auth_matrix_each_credential_type_valid_wrong_expired_other_tenant_missing() {
    let h = Harness::start(options()).await;
    for kind in KINDS {
        for (t, other) in [("acme", "beta"), ("beta", "acme")] {
            let case = format!("{kind:?} of {t}");
            let ok = valid(&h, kind, t).await;
            let (status, _, body) = get_users(&h, t, Some(&ok)).await;
            assert_eq!(status, StatusCode::OK, "{case} valid: {body}");
            let (s, hd, b) = get_users(&h, t, Some(&wrong(kind, t))).await;
            assert_refused(&format!("{case} wrong"), s, &hd, &b);
            if let Some(exp) = expired(&h, kind, t) {
                let (s, hd, b) = get_users(&h, t, Some(&exp)).await;
                assert_refused(&format!("{case} expired"), s, &hd, &b);
            }
            // The same valid credential at the other tenant.
            let (s, hd, b) = get_users(&h, other, Some(&ok)).await;
            assert_refused(&format!("{case} at {other}"), s, &hd, &b);
        }
    }
    for t in ["acme", "beta"] {
        let (s, hd, b) = get_users(&h, t, None).await;
        assert_refused(&format!("missing at {t}"), s, &hd, &b);
        for junk in [
            "Bearer",
            "Bearer ",
            "Basic !!!",
            "Digest abc",
            "Negotiate x",
        ] {
            let (s, hd, b) = get_users(&h, t, Some(junk)).await;
            assert_refused(&format!("{junk:?} at {t}"), s, &hd, &b);
        }
    }
}

#[tokio::test]
async fn credential_names_reach_the_audit_log_never_the_secrets() {
    let h = Harness::start(options()).await;
    for (kind, email) in [
        (Kind::Static, "s@acme.example.com"),
        (Kind::Basic, "b@acme.example.com"),
        (Kind::Jwt, "j@acme.example.com"),
        (Kind::OAuth, "o@acme.example.com"),
    ] {
        let auth = valid(&h, kind, "acme").await;
        let res = h
            .http
            .post(format!("{}/Users", h.base))
            .header("Authorization", &auth)
            .json(&json!({"userName": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{kind:?}");
    }
    let entries = h.bridge.store.audit_entries("acme", 10).await.unwrap();
    let mut names: Vec<_> = entries
        .iter()
        .filter(|e| e.operation == "POST")
        .map(|e| e.credential.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["basic", "jwt", "oauth", "static"]);
    let dump = format!("{entries:?}");
    for secret in [
        static_token("acme"),
        basic_password("acme"),
        jwt_secret("acme"),
        oauth_secret("acme"),
        signing_key("acme"),
    ] {
        assert!(!dump.contains(&secret));
    }
}

#[tokio::test]
async fn one_tenants_resources_are_invisible_to_another() {
    let h = Harness::start(options()).await;
    let user = create_user(&h, "ann@acme.example.com", "Ann", "Lee").await;
    let (status, group) = h
        .post(
            "/Groups",
            json!({"displayName": "Acme Analysts", "members": [{"value": user}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let group = group["id"].as_str().unwrap().to_owned();
    let beta = base(&h, "beta");
    let auth = format!("Bearer {}", static_token("beta"));
    let send = |method: reqwest::Method, url: String, body: Option<Value>| {
        let mut req = h.http.request(method, url).header("Authorization", &auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (kind, id) in [("Users", &user), ("Groups", &group)] {
        let url = format!("{beta}/{kind}/{id}");
        let (s, b) = send(reqwest::Method::GET, url.clone(), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "GET {kind}: {b}");
        assert_eq!(b["status"], "404");
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                           "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]});
        let (s, _) = send(reqwest::Method::PATCH, url.clone(), Some(patch)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "PATCH {kind}");
        let (s, _) = send(reqwest::Method::DELETE, url.clone(), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "DELETE {kind}");
        let (s, list) = send(reqwest::Method::GET, format!("{beta}/{kind}"), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list["totalResults"], 0, "{kind} listed at beta: {list}");
    }
    let (_, found) = send(
        reqwest::Method::GET,
        format!("{beta}/Users?filter=userName%20eq%20%22ann@acme.example.com%22"),
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 0, "{found}");
    // Still all there at acme, and beta's partner site never saw acme's user.
    assert_eq!(h.get(&format!("/Users/{user}")).await.0, StatusCode::OK);
    assert_eq!(h.get(&format!("/Groups/{group}")).await.0, StatusCode::OK);
    assert!(h.partner_user("beta", "ann@acme.example.com").is_none());
    assert!(h.partner_user("acme", "ann@acme.example.com").is_some());
}

#[tokio::test]
async fn jwt_edge_cases_are_refused() {
    let h = Harness::start(options()).await;
    let rs_claims = |exp_in: i64| json!({"iss": RS_ISSUER, "aud": "scim-rs", "sub": "entra", "exp": now() + exp_in});
    let good = rs("rsa-private.pem", None, rs_claims(300));
    assert_eq!(
        get_users(&h, "acme", Some(&format!("Bearer {good}")))
            .await
            .0,
        StatusCode::OK
    );
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let public_pem = std::fs::read(format!("{KEYS}/rsa-public.pem")).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("expired", rs("rsa-private.pem", None, rs_claims(-600))),
        (
            "not yet valid",
            rs(
                "rsa-private.pem",
                None,
                json!({"iss": RS_ISSUER, "aud": "scim-rs", "nbf": now() + 600, "exp": now() + 900}),
            ),
        ),
        (
            "wrong issuer",
            rs(
                "rsa-private.pem",
                None,
                json!({"iss": "https://evil.example/", "aud": "scim-rs", "exp": now() + 300}),
            ),
        ),
        (
            "wrong audience",
            rs(
                "rsa-private.pem",
                None,
                json!({"iss": RS_ISSUER, "aud": "someone-else", "exp": now() + 300}),
            ),
        ),
        ("other key", rs("rsa2-private.pem", None, rs_claims(300))),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(rs_claims(300))
            ),
        ),
        (
            "HS256 signed with the RSA public key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&public_pem),
                None,
                rs_claims(300),
            ),
        ),
        (
            "oversized",
            rs(
                "rsa-private.pem",
                None,
                json!({"iss": RS_ISSUER, "aud": "scim-rs", "exp": now() + 300, "pad": "x".repeat(9000)}),
            ),
        ),
        ("garbage", "eyJhbGciOi.eyJpc3Mi.c2ln".to_owned()),
    ];
    for (case, token) in cases {
        let (s, hd, b) = get_users(&h, "acme", Some(&format!("Bearer {token}"))).await;
        assert_refused(case, s, &hd, &b);
    }
}

#[tokio::test]
async fn jwks_rotation_is_followed_on_an_unknown_kid() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let serving = Arc::new(AtomicUsize::new(1));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (s2, f2) = (serving.clone(), fetches.clone());
    let jwks = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let (s, f) = (s2.clone(), f2.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let file = if s.load(Ordering::SeqCst) == 1 {
                    "rsa-jwks.json"
                } else {
                    "rsa2-jwks.json"
                };
                std::fs::read_to_string(format!("{KEYS}/{file}")).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, jwks).await });
    let tenant = "0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f";
    let issuer = format!("https://sts.windows.net/{tenant}/");
    let mut opts = options();
    opts.credentials.jwt.push(JwtConfig {
        name: "entra".into(),
        issuer: issuer.clone(),
        audience: vec!["8adf8e6e-67b2-4cf2-a259-e3dc5476c621".into()],
        jwks_url: Some(url::Url::parse(&format!("http://{addr}/keys")).unwrap()),
        jwks_min_refresh_s: 0,
        ..JwtConfig::default()
    });
    let h = Harness::start(opts).await;
    let claims = json!({"iss": issuer, "aud": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
                        "appid": "app", "exp": now() + 300});
    let old = format!(
        "Bearer {}",
        rs(
            "rsa-private.pem",
            Some("m4qqF6vpdxhPSiWsykUwpqNARYc"),
            claims.clone()
        )
    );
    let new = format!(
        "Bearer {}",
        rs(
            "rsa2-private.pem",
            Some("MVL5sZqjWSBNX7rK5lxC618raec"),
            claims
        )
    );
    assert_eq!(get_users(&h, "acme", Some(&old)).await.0, StatusCode::OK);
    let (s, hd, b) = get_users(&h, "acme", Some(&new)).await;
    assert_refused("kid not published yet", s, &hd, &b);
    // The issuer rotates its keys: the new kid is fetched, the old one is gone.
    serving.store(2, Ordering::SeqCst);
    assert_eq!(get_users(&h, "acme", Some(&new)).await.0, StatusCode::OK);
    let (s, hd, b) = get_users(&h, "acme", Some(&old)).await;
    assert_refused("rotated-out kid", s, &hd, &b);
    assert!(fetches.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn token_endpoint_issues_tokens_for_its_own_tenant_only() {
    let h = Harness::start(options()).await;
    let url = format!("{}/oauth/token", h.base);
    // Client secret in the body.
    let res = h
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &oauth_client("acme")),
            ("client_secret", &oauth_secret("acme")),
            ("scope", "scim"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_users(&h, "acme", Some(&format!("Bearer {token}")))
            .await
            .0,
        StatusCode::OK
    );
    let (s, hd, b) = get_users(&h, "beta", Some(&format!("Bearer {token}"))).await;
    assert_refused("acme's token at beta", s, &hd, &b);
    // Client authentication with HTTP Basic.
    let res = h
        .http
        .post(&url)
        .basic_auth(oauth_client("acme"), Some(oauth_secret("acme")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Failures, RFC 6749 section 5.2.
    let cases: Vec<(Vec<(&str, String)>, StatusCode, &str)> = vec![
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", oauth_client("acme")),
                ("client_secret", "wrong-secret-0123456789".into()),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", oauth_client("beta")),
                ("client_secret", oauth_secret("beta")),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password".into()),
                ("client_id", oauth_client("acme")),
                ("client_secret", oauth_secret("acme")),
            ],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "client_credentials".into())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let res = h.http.post(&url).form(&form).send().await.unwrap();
        assert_eq!(res.status(), status, "{form:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], error, "{form:?}");
        assert!(!body.to_string().contains("wrong-secret"));
    }
    let res = h
        .http
        .post(&url)
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = h.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Sends `body` as a SCIM request with the harness token and an optional extra header.
async fn raw(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    header: Option<(&str, String)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(crate::support::TOKEN)
        .header("Content-Type", "application/scim+json");
    if let Some(b) = body {
        req = req.body(b);
    }
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn assert_healthy(h: &Harness) {
    assert_eq!(h.get("/ServiceProviderConfig").await.0, StatusCode::OK);
}

#[tokio::test]
async fn every_limit_is_answered_with_a_scim_error_and_the_server_stays_healthy() {
    let h = Harness::start(Options {
        http: HttpConfig {
            max_body_bytes: 2048,
            bulk_max_payload_bytes: 8192,
            bulk_max_operations: 3,
            max_header_bytes: 4096,
            filter_max_length: 200,
            filter_max_depth: 4,
            max_results: 50,
            default_count: 20,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let (_, _, spc) = raw(
        &h,
        reqwest::Method::GET,
        "/ServiceProviderConfig",
        None,
        None,
    )
    .await;
    assert_eq!(spc["bulk"]["maxOperations"], 3);
    assert_eq!(spc["bulk"]["maxPayloadSize"], 8192);
    assert_eq!(spc["filter"]["maxResults"], 50);
    let big_user = serde_json::to_vec(&json!({"userName": "big@acme.example.com",
                                              "displayName": "x".repeat(3000)}))
    .unwrap();
    let bulk_op = |i: usize| {
        json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
               "data": {"userName": format!("bulk{i}@acme.example.com")}})
    };
    let bulk = |ops: Vec<Value>| {
        serde_json::to_vec(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": ops}))
        .unwrap()
    };
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(6), ")".repeat(6));
    let cases: Vec<(
        &str,
        reqwest::Method,
        String,
        Option<Vec<u8>>,
        Option<(&str, String)>,
        u16,
        Option<&str>,
    )> = vec![
        (
            "body over the limit",
            reqwest::Method::POST,
            "/Users".into(),
            Some(big_user.clone()),
            None,
            413,
            None,
        ),
        // The same body is fine in a bulk request, which has its own, larger limit.
        (
            "bulk over its payload limit",
            reqwest::Method::POST,
            "/Bulk".into(),
            Some(bulk(vec![
                json!({"method": "POST", "path": "/Users", "bulkId": "b",
                               "data": {"userName": "b@acme.example.com", "displayName": "x".repeat(9000)}}),
            ])),
            None,
            413,
            None,
        ),
        (
            "bulk over maxOperations",
            reqwest::Method::POST,
            "/Bulk".into(),
            Some(bulk((0..4).map(bulk_op).collect())),
            None,
            413,
            None,
        ),
        (
            "headers over the limit",
            reqwest::Method::GET,
            "/Users".into(),
            None,
            Some(("X-Padding", "p".repeat(5000))),
            431,
            None,
        ),
        (
            "filter too long",
            reqwest::Method::GET,
            format!("/Users?filter=userName%20eq%20%22{}%22", "a".repeat(300)),
            None,
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            "filter too deep",
            reqwest::Method::GET,
            format!(
                "/Users?filter={}",
                deep.replace(' ', "%20").replace('"', "%22")
            ),
            None,
            None,
            400,
            Some("invalidFilter"),
        ),
    ];
    for (case, method, path, body, header, status, scim_type) in cases {
        let (s, _, b) = raw(&h, method, &path, body, header).await;
        assert_eq!(s.as_u16(), status, "{case}: {b}");
        assert_eq!(
            b["status"],
            status.to_string(),
            "{case}: a SCIM error body: {b}"
        );
        if let Some(t) = scim_type {
            assert_eq!(b["scimType"], t, "{case}");
        }
        assert_healthy(&h).await;
    }
    // Within the limits: a bulk body larger than the normal body limit, three operations.
    let ok_bulk = bulk(vec![
        json!({"method": "POST", "path": "/Users", "bulkId": "a",
               "data": {"userName": "a@acme.example.com", "displayName": "x".repeat(3000)}}),
        bulk_op(1),
        bulk_op(2),
    ]);
    assert!(ok_bulk.len() > 2048);
    let (s, _, b) = raw(&h, reqwest::Method::POST, "/Bulk", Some(ok_bulk), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // count over maxResults is cut to it.
    let (s, _, b) = raw(&h, reqwest::Method::GET, "/Users?count=100000", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["itemsPerPage"].as_u64().unwrap() <= 50, "{b}");
    // Nothing over a limit reached the partner.
    assert!(h.partner_user("acme", "big@acme.example.com").is_none());
    assert!(h.partner_user("acme", "b@acme.example.com").is_none());
    assert!(h.partner_user("acme", "bulk3@acme.example.com").is_none());
}

#[tokio::test]
async fn tenant_rate_limit_answers_429_with_retry_after_and_recovers() {
    let h = Harness::start(Options {
        http: HttpConfig {
            rate_limit: RateLimitConfig {
                per_second: 2.0,
                burst: 5,
            },
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let (s, hd, b) = raw(&h, reqwest::Method::GET, "/Users", None, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((hd, b));
            break;
        }
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (headers, body) = limited.expect("the burst of 5 is spent within 20 requests");
    assert_eq!(body["status"], "429");
    // The operator reads it in the IdP's log: it says which setting raises the limit.
    let detail = body["detail"].as_str().unwrap();
    for named in [
        "2 requests per second, 5 at once",
        "http.rate_limit.per_second",
        "http.rate_limit.burst",
        "SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND",
        "SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST",
    ] {
        assert!(detail.contains(named), "{named} not in: {detail}");
    }
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        raw(&h, reqwest::Method::GET, "/Users", None, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_authentications_slow_the_address_without_locking_out_valid_credentials() {
    let mut opts = options();
    opts.http.auth_failure_limit = RateLimitConfig {
        per_second: 0.01,
        burst: 3,
    };
    opts.http.trusted_proxies = vec!["127.0.0.1".into()];
    let h = Harness::start(opts).await;
    let from = |ip: &'static str, auth: String| {
        let req = h
            .http
            .get(format!("{}/Users", h.base))
            .header("X-Forwarded-For", ip)
            .header("Authorization", auth);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let retry = res.headers().get("retry-after").cloned();
            (
                status,
                retry,
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let bad = || format!("Bearer {}x", static_token("acme"));
    let good = || format!("Bearer {}", static_token("acme"));
    // A budget of 3 failures; the 4th failure is still a 401, and spends it.
    for _ in 0..4 {
        assert_eq!(
            from("198.51.100.1", bad()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // The budget is spent: guesses from that address get 429 with Retry-After...
    let (s, retry, body) = from("198.51.100.1", bad()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["status"], "429");
    assert!(retry.is_some());
    let (s, _, _) = from(
        "198.51.100.1",
        basic_header(&basic_user("acme"), "not-the-password"),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // ... but valid credentials from there still pass: failures lock nobody out.
    assert_eq!(from("198.51.100.1", good()).await.0, StatusCode::OK);
    let (s, _, _) = from(
        "198.51.100.1",
        basic_header(&basic_user("acme"), &basic_password("acme")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Another client behind the same proxy keeps its own budget.
    assert_eq!(
        from("198.51.100.2", bad()).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    for (trusted, expected) in [(true, "198.51.100.7"), (false, "127.0.0.1")] {
        let mut opts = Options::default();
        if trusted {
            opts.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        }
        let h = Harness::start(opts).await;
        let res = h
            .http
            .post(format!("{}/Users", h.base))
            .bearer_auth(crate::support::TOKEN)
            .header("X-Forwarded-For", "203.0.113.66, 198.51.100.7")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .json(&json!({"userName": "fw@acme.example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        // Locations come from the configured public base URL only.
        assert!(location.starts_with(&h.base), "{location}");
        assert!(
            body["meta"]["location"]
                .as_str()
                .unwrap()
                .starts_with(&h.base),
            "{body}"
        );
        let entries = h.bridge.store.audit_entries("acme", 5).await.unwrap();
        let post = entries.iter().find(|e| e.operation == "POST").unwrap();
        assert_eq!(post.client, expected, "trusted proxy: {trusted}");
    }
}

#[tokio::test]
async fn admin_audit_endpoint_shows_writes_with_their_partner_calls() {
    let h = Harness::start(options()).await;
    let user = create_user(&h, "aud@acme.example.com", "Au", "Dit").await;
    let (status, _) = h
        .post(
            "/Groups",
            json!({"displayName": "Auditors", "members": [{"value": user}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    h.settle(Duration::from_secs(10)).await;
    let url = format!("{}/admin/audit?tenant=acme&since=1h&limit=50", h.root);
    let res = h
        .http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let entries = body["entries"].as_array().unwrap();
    let create = entries
        .iter()
        .find(|e| e["operation"] == "POST" && e["resource_type"] == "Users")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(create["credential"], "idp");
    assert_eq!(create["status"], 201);
    assert_eq!(create["resource_id"], user.as_str());
    assert!(!create["request_id"].as_str().unwrap().is_empty());
    assert!(create["at"].as_str().unwrap().ends_with('Z'));
    let calls = create["detail"]["partner_calls"].as_array().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c["call"] == "create_user" && c["outcome"] == "ok" && c["site"] == "acme"),
        "{calls:?}"
    );
    // The membership engine's own calls are there too, for the user.
    assert!(
        entries.iter().any(|e| e["operation"] == "CONVERGE"
            && e["resource_id"] == user.as_str()
            && e["credential"] == "membership-engine"),
        "{body}"
    );
    // Filters.
    let res = h
        .http
        .get(format!("{}/admin/audit?resource={user}", h.root))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let by_user: Value = res.json().await.unwrap();
    assert!(by_user["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["resource_id"] == user.as_str()));
    let res = h
        .http
        .get(format!("{}/admin/audit?tenant=beta", h.root))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["totalResults"], 0);
    let res = h
        .http
        .get(format!("{}/admin/audit?since=soon", h.root))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Only the admin credential opens it.
    for auth in [
        None,
        Some(format!("Bearer {}", crate::support::TOKEN)),
        Some(format!("Bearer {}", static_token("acme"))),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
    ] {
        let mut req = h.http.get(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    // Without an admin credential configured there is no admin endpoint.
    let plain = Harness::start(Options::default()).await;
    let res = plain
        .http
        .get(format!("{}/admin/audit", plain.root))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_request_past_the_deadline_gets_503_with_retry_after() {
    use scim_bridge::partner::emulator::faults::{Faults, Latency};
    let h = Harness::start(Options {
        http: HttpConfig {
            request_timeout_s: 1,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    h.emulator.set_faults(
        "acme",
        Faults {
            latency: Some(Latency::FixedMs(2500)),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    let (s, headers, body) = raw(
        &h,
        reqwest::Method::POST,
        "/Users",
        Some(serde_json::to_vec(&json!({"userName": "slow@acme.example.com"})).unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "503");
    assert!(headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_millis(2400));
    h.emulator.set_faults("acme", Faults::default());
    assert_healthy(&h).await;
}
