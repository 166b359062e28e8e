use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use axum::response::IntoResponse;
use serde_json::json;

use super::*;

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "api://scim-bridge";
const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

fn jwks_file(name: &str) -> String {
    String::from_utf8(key_file(name)).unwrap()
}

/// The first key of a JWKS fixture.
fn jwk_of(name: &str) -> Value {
    let set: Value = serde_json::from_str(&jwks_file(name)).unwrap();
    set["keys"][0].clone()
}

fn kid_of(name: &str) -> String {
    jwk_of(name)["kid"].as_str().unwrap().to_owned()
}

fn rsa_signer(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&key_file(name)).unwrap()
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "okta", "iat": now(), "exp": now() + 600})
}

fn set(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn unset(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        &rsa_signer("rsa-private.pem"),
        Some(&kid_of("rsa-jwks.json")),
        claims,
    )
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn config() -> JwtConfig {
    JwtConfig {
        name: "idp".into(),
        issuer: ISSUER.into(),
        audience: vec![AUDIENCE.into()],
        ..JwtConfig::default()
    }
}

fn validator(config: JwtConfig) -> JwtValidator {
    JwtValidator::from_config(&config, http()).unwrap()
}

fn hs256_validator() -> JwtValidator {
    validator(JwtConfig {
        hs256_secret: Some(Secret::new(SECRET)),
        ..config()
    })
}

fn pem_validator(file: &str, algorithms: &[&str]) -> JwtValidator {
    validator(JwtConfig {
        public_key_file: Some(key_path(file)),
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        ..config()
    })
}

fn jwks_validator(url: &Url, min_refresh_s: u64, max_age_s: u64) -> JwtValidator {
    validator(JwtConfig {
        jwks_url: Some(url.clone()),
        jwks_min_refresh_s: min_refresh_s,
        jwks_max_age_s: max_age_s,
        ..config()
    })
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests; `None` answers 500.
struct JwksServer {
    url: Url,
    fetches: Arc<AtomicUsize>,
    body: Arc<std::sync::Mutex<Option<String>>>,
}

impl JwksServer {
    async fn start(body: Option<String>, delay: Duration) -> Self {
        let fetches = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(std::sync::Mutex::new(body));
        let (count, current) = (Arc::clone(&fetches), Arc::clone(&body));
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (count, current) = (Arc::clone(&count), Arc::clone(&current));
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let body = current.lock().unwrap().clone();
                    match body {
                        Some(body) => (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                            .into_response(),
                        None => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: Url::parse(&format!("http://{addr}/keys")).unwrap(),
            fetches,
            body,
        }
    }

    fn serve(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[test]
fn validator_is_cheap_to_share_and_its_future_is_send() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shareable::<JwtValidator>();
    let v = hs256_validator();
    send(&v.validate("x"));
}

#[tokio::test]
async fn hs256_token_is_accepted() {
    let v = hs256_validator();
    let exp = now() + 600;
    let token = hs256(&set(claims(), "exp", json!(exp)));
    let claims = v.validate(&token).await.unwrap();
    assert_eq!(claims.issuer, ISSUER);
    assert_eq!(claims.subject.as_deref(), Some("okta"));
    assert_eq!(claims.expires_at, exp);
    assert_eq!(claims.client_id, None);
    assert_eq!(v.name(), "idp");
}

#[tokio::test]
async fn rs256_token_with_pem_key_is_accepted() {
    let v = pem_validator("rsa-public.pem", &[]);
    let token = sign(
        Algorithm::RS256,
        &rsa_signer("rsa-private.pem"),
        None,
        &set(claims(), "azp", json!("okta-app")),
    );
    let claims = v.validate(&token).await.unwrap();
    assert_eq!(claims.client_id.as_deref(), Some("okta-app"));
}

#[tokio::test]
async fn es256_token_with_pem_key_is_accepted() {
    let v = pem_validator("ec-public.pem", &[]);
    let signer = EncodingKey::from_ec_pem(&key_file("ec-private.pem")).unwrap();
    let token = sign(
        Algorithm::ES256,
        &signer,
        None,
        &set(claims(), "client_id", json!("c-1")),
    );
    let got = v.validate(&token).await.unwrap();
    assert_eq!(got.client_id.as_deref(), Some("c-1"));
    // An RSA token is not for an EC key.
    let rsa = sign(
        Algorithm::RS256,
        &rsa_signer("rsa-private.pem"),
        None,
        &claims(),
    );
    assert_eq!(v.validate(&rsa).await.unwrap_err(), JwtRejection::Algorithm);
}

#[tokio::test]
async fn rs256_token_from_jwks_is_accepted_and_the_set_is_cached() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 60, 3600);
    v.validate(&rs256(&claims())).await.unwrap();
    v.validate(&rs256(&claims())).await.unwrap();
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn entra_id_token_is_accepted() {
    // Entra ID v1 access token: RS256, `kid` and `x5t` headers, `sts.windows.net` issuer,
    // the app's id as audience, `appid` for the calling client; keys without `alg`.
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let audience = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let mut config = JwtConfig {
        name: "entra".into(),
        audience: vec![audience.into()],
        entra_tenant_id: Some(tenant.into()),
        jwks_url: Some(server.url.clone()),
        ..JwtConfig::default()
    };
    config.apply_entra_defaults();
    assert_eq!(config.jwks_url.as_ref(), Some(&server.url));
    let v = validator(config);

    let issuer = format!("https://sts.windows.net/{tenant}/");
    let kid = kid_of("rsa-jwks.json");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.clone());
    header.x5t = Some(kid);
    let claims = json!({
        "aud": audience,
        "iss": issuer,
        "iat": now() - 60,
        "nbf": now() - 60,
        "exp": now() + 3540,
        "aio": "E2ZgYJj+test",
        "appid": "a0e1c5d4-1111-2222-3333-444455556666",
        "appidacr": "2",
        "idp": issuer,
        "oid": "0b3ee2a4-7777-8888-9999-000011112222",
        "rh": "0.AAAA-test.",
        "roles": ["Provisioning"],
        "sub": "0b3ee2a4-7777-8888-9999-000011112222",
        "tid": tenant,
        "uti": "t3stUt1",
        "ver": "1.0"
    });
    let token = jsonwebtoken::encode(&header, &claims, &rsa_signer("rsa-private.pem")).unwrap();
    assert!(v.accepts_issuer(&token));
    let got = v.validate(&token).await.unwrap();
    assert_eq!(got.issuer, issuer);
    assert_eq!(
        got.client_id.as_deref(),
        Some("a0e1c5d4-1111-2222-3333-444455556666")
    );
    assert_eq!(
        got.subject.as_deref(),
        Some("0b3ee2a4-7777-8888-9999-000011112222")
    );
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let token = hs256(&set(claims(), "exp", json!(now() - 120)));
    assert_eq!(
        hs256_validator().validate(&token).await.unwrap_err(),
        JwtRejection::Expired
    );
}

#[tokio::test]
async fn expired_token_within_leeway_is_accepted() {
    let token = hs256(&set(claims(), "exp", json!(now() - 30)));
    hs256_validator().validate(&token).await.unwrap();
    let strict = validator(JwtConfig {
        hs256_secret: Some(Secret::new(SECRET)),
        leeway_s: 0,
        ..config()
    });
    assert_eq!(
        strict.validate(&token).await.unwrap_err(),
        JwtRejection::Expired
    );
}

#[tokio::test]
async fn token_not_yet_valid_is_rejected() {
    let v = hs256_validator();
    let future = hs256(&set(claims(), "nbf", json!(now() + 300)));
    assert_eq!(
        v.validate(&future).await.unwrap_err(),
        JwtRejection::NotYetValid
    );
    let within_leeway = hs256(&set(claims(), "nbf", json!(now() + 30)));
    v.validate(&within_leeway).await.unwrap();
    let not_a_time = hs256(&set(claims(), "nbf", json!("tomorrow")));
    assert_eq!(
        v.validate(&not_a_time).await.unwrap_err(),
        JwtRejection::Malformed
    );
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let v = hs256_validator();
    for iss in [
        json!("https://evil.example.test/"),
        json!("https://idp.example.test"),
        json!([ISSUER]),
    ] {
        let token = hs256(&set(claims(), "iss", iss.clone()));
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Issuer,
            "{iss}"
        );
    }
    let token = hs256(&unset(claims(), "iss"));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::MissingClaim
    );
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let v = hs256_validator();
    let token = hs256(&set(claims(), "aud", json!("api://other")));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::Audience
    );
    let token = hs256(&unset(claims(), "aud"));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::MissingClaim
    );
}

#[tokio::test]
async fn audience_array_must_contain_a_configured_audience() {
    let v = hs256_validator();
    let token = hs256(&set(claims(), "aud", json!(["api://other", AUDIENCE])));
    v.validate(&token).await.unwrap();
    let token = hs256(&set(claims(), "aud", json!(["api://other", "api://third"])));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::Audience
    );
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let v = hs256_validator();
    let token = hs256(&unset(claims(), "exp"));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::MissingClaim
    );
    let token = hs256(&set(claims(), "exp", json!("never")));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::MissingClaim
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let payload = b64(&claims());
    let hs = hs256_validator();
    let rs = pem_validator("rsa-public.pem", &[]);
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2lnbmF0dXJl"),
        ] {
            assert_eq!(
                hs.validate(&token).await.unwrap_err(),
                JwtRejection::Algorithm
            );
            assert_eq!(
                rs.validate(&token).await.unwrap_err(),
                JwtRejection::Algorithm
            );
        }
    }
}

#[tokio::test]
async fn hs256_token_signed_with_the_rsa_public_key_is_rejected() {
    // The classic confusion: the attacker uses the public key's PEM as HMAC secret.
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&key_file("rsa-public.pem")),
        None,
        &claims(),
    );
    let v = pem_validator("rsa-public.pem", &[]);
    assert_eq!(
        v.validate(&forged).await.unwrap_err(),
        JwtRejection::Algorithm
    );
    // Nor can configuration open the door: HMAC beside a public key is refused.
    let err = JwtValidator::from_config(
        &JwtConfig {
            public_key_file: Some(key_path("rsa-public.pem")),
            algorithms: vec!["RS256".into(), "HS256".into()],
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(err.contains("HS256"), "{err}");
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_rejected() {
    let token = sign(
        Algorithm::RS384,
        &rsa_signer("rsa-private.pem"),
        None,
        &claims(),
    );
    let rs256_only = pem_validator("rsa-public.pem", &[]);
    assert_eq!(
        rs256_only.validate(&token).await.unwrap_err(),
        JwtRejection::Algorithm
    );
    let both = pem_validator("rsa-public.pem", &["RS256", "RS384"]);
    both.validate(&token).await.unwrap();
}

#[tokio::test]
async fn signature_of_another_key_is_rejected() {
    let v = pem_validator("rsa-public.pem", &[]);
    let other = sign(
        Algorithm::RS256,
        &rsa_signer("rsa2-private.pem"),
        None,
        &claims(),
    );
    assert_eq!(
        v.validate(&other).await.unwrap_err(),
        JwtRejection::Signature
    );
    // A valid signature over other claims.
    let good = rs256(&claims());
    let (header, _, signature) = split(&good).unwrap();
    let tampered = format!(
        "{header}.{}.{signature}",
        b64(&set(claims(), "sub", json!("admin")))
    );
    assert_eq!(
        v.validate(&tampered).await.unwrap_err(),
        JwtRejection::Signature
    );
    let hs = hs256_validator();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!"),
        None,
        &claims(),
    );
    assert_eq!(
        hs.validate(&token).await.unwrap_err(),
        JwtRejection::Signature
    );
}

#[tokio::test]
async fn oversized_and_garbage_tokens_are_rejected_without_fetching_keys() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 0, 3600);
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(v.validate(&huge).await.unwrap_err(), JwtRejection::TooLarge);
    let padded = rs256(&set(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES))));
    assert_eq!(
        v.validate(&padded).await.unwrap_err(),
        JwtRejection::TooLarge
    );
    for token in garbage() {
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Malformed,
            "{token}"
        );
    }
    assert_eq!(server.fetches(), 0);
}

/// Strings that are no JWS, or whose header is unusable.
fn garbage() -> Vec<String> {
    let payload = b64(&claims());
    vec![
        String::new(),
        ".".into(),
        "..".into(),
        "not a token".into(),
        "a.b".into(),
        "a.b.c".into(),
        "🦀.🦀.🦀".into(),
        format!("{}..sig", b64(&json!({"alg": "RS256"}))),
        format!("{}.{payload}.sig", b64(&json!(["RS256"]))),
        format!("{}.{payload}.sig", b64(&json!({"typ": "JWT"}))),
        format!("{}.{payload}.sig", b64(&json!({"alg": 256}))),
        format!(
            "{}.{payload}.sig",
            b64(&json!({"alg": "RS256", "crit": ["exp"]}))
        ),
        format!("{}.{payload}.sig", b64(&json!({"alg": "RS256", "kid": 7}))),
        format!("{}.{payload}.sig.x", b64(&json!({"alg": "RS256"}))),
        format!("{}.{payload}.a.b.c", b64(&json!({"alg": "RSA-OAEP"}))),
    ]
}

#[tokio::test]
async fn garbage_is_malformed() {
    let v = hs256_validator();
    for token in garbage() {
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            JwtRejection::Malformed,
            "{token}"
        );
    }
    // Well signed, but the claims are no JSON object.
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &json!(["iss", ISSUER]),
    );
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::Malformed
    );
}

#[tokio::test]
async fn unknown_kid_refetches_and_follows_key_rotation() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 0, 3600);
    let old = rs256(&claims());
    let new = sign(
        Algorithm::RS256,
        &rsa_signer("rsa2-private.pem"),
        Some(&kid_of("rsa2-jwks.json")),
        &claims(),
    );
    v.validate(&old).await.unwrap();
    assert_eq!(server.fetches(), 1);

    // The IdP rotates: it now publishes only the second key.
    server.serve(Some(jwks_file("rsa2-jwks.json")));
    v.validate(&new).await.unwrap();
    assert_eq!(server.fetches(), 2);
    v.validate(&new).await.unwrap();
    assert_eq!(server.fetches(), 2);

    // The old key is gone from the set now cached.
    assert_eq!(
        v.validate(&old).await.unwrap_err(),
        JwtRejection::UnknownKey
    );
}

#[tokio::test]
async fn unknown_kid_flood_fetches_at_most_once_per_interval() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 60, 3600);
    v.validate(&rs256(&claims())).await.unwrap();
    assert_eq!(server.fetches(), 1);

    let signer = rsa_signer("rsa-private.pem");
    let tokens: Vec<String> = (0..100)
        .map(|_| {
            let kid = uuid::Uuid::new_v4().to_string();
            sign(Algorithm::RS256, &signer, Some(&kid), &claims())
        })
        .collect();
    // One after the other (only the interval bounds these), then all at once.
    let (one_by_one, at_once) = tokens.split_at(50);
    for token in one_by_one {
        assert_eq!(
            v.validate(token).await.unwrap_err(),
            JwtRejection::UnknownKey
        );
    }
    let results = futures::future::join_all(at_once.iter().map(|t| v.validate(t))).await;
    for result in results {
        assert_eq!(result.unwrap_err(), JwtRejection::UnknownKey);
    }
    assert!(server.fetches() <= 2, "{} fetches", server.fetches());
    // The known key still works from the cache.
    v.validate(&rs256(&claims())).await.unwrap();
    assert!(server.fetches() <= 2, "{} fetches", server.fetches());
}

#[tokio::test]
async fn concurrent_validations_share_one_fetch() {
    // No refresh interval: only the single-flight lock keeps this to one request.
    let server =
        JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::from_millis(200)).await;
    let v = jwks_validator(&server.url, 0, 3600);
    let token = rs256(&claims());
    let results = futures::future::join_all((0..20).map(|_| v.validate(&token))).await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn stale_key_set_is_refetched_and_kept_when_the_refetch_fails() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 0, 0);
    v.validate(&rs256(&claims())).await.unwrap();
    assert_eq!(server.fetches(), 1);
    server.serve(None);
    v.validate(&rs256(&claims())).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn keys_unavailable_when_the_first_fetch_fails() {
    let server = JwksServer::start(None, Duration::ZERO).await;
    let v = jwks_validator(&server.url, 60, 3600);
    let token = rs256(&claims());
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::KeysUnavailable
    );
    // Failed attempts count against the refresh interval too.
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::KeysUnavailable
    );
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_of_the_set() {
    let server = JwksServer::start(Some(jwks_file("rsa-jwks.json")), Duration::ZERO).await;
    let v = jwks_validator(&server.url, 0, 3600);
    let token = sign(
        Algorithm::RS256,
        &rsa_signer("rsa-private.pem"),
        None,
        &claims(),
    );
    v.validate(&token).await.unwrap();

    let both = json!({"keys": [jwk_of("rsa-jwks.json"), jwk_of("rsa2-jwks.json")]});
    server.serve(Some(both.to_string()));
    let v = jwks_validator(&server.url, 0, 3600);
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        JwtRejection::UnknownKey
    );
    v.validate(&rs256(&claims())).await.unwrap();
}

#[test]
fn jwks_keeps_only_usable_signing_keys() {
    let mut enc = jwk_of("rsa-jwks.json");
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc");
    let mut rs512 = jwk_of("rsa-jwks.json");
    rs512["alg"] = json!("RS512");
    rs512["kid"] = json!("rs512");
    let mut oaep = jwk_of("rsa-jwks.json");
    oaep["alg"] = json!("RSA-OAEP");
    oaep["kid"] = json!("oaep");
    let mut verify_only = jwk_of("rsa-jwks.json");
    verify_only["key_ops"] = json!(["encrypt"]);
    verify_only["kid"] = json!("encrypt-op");
    let oct = json!({"kty": "oct", "kid": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)});
    let unknown = json!({"kty": "XYZ", "kid": "xyz"});
    let mut rs256 = jwk_of("rsa2-jwks.json");
    rs256["alg"] = json!("RS256");
    let entra = jwk_of("rsa-jwks.json");
    let body = json!({"keys": [enc, rs512, oaep, verify_only, oct, unknown, rs256, entra]});

    let keys = parse_jwks(body.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
    let kids: Vec<String> = keys.iter().filter_map(|k| k.kid.clone()).collect();
    assert_eq!(kids, [kid_of("rsa2-jwks.json"), kid_of("rsa-jwks.json")]);

    let none_usable = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
    assert!(parse_jwks(none_usable.to_string().as_bytes(), &[Algorithm::RS256]).is_err());
    assert!(parse_jwks(b"{\"keys\": []}", &[Algorithm::RS256]).is_err());
    assert!(parse_jwks(b"<html>", &[Algorithm::RS256]).is_err());
}

#[tokio::test]
async fn issued_token_round_trips() {
    let secret = Secret::new(SECRET);
    let issuer = "https://bridge.example.test/tenants/acme";
    let token = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();

    let v = JwtValidator::hs256("oauth", issuer, issuer, &secret, 0);
    let claims = v.validate(&token).await.unwrap();
    assert_eq!(claims.subject.as_deref(), Some("okta-client"));
    assert_eq!(claims.client_id.as_deref(), Some("okta-client"));
    assert!((claims.expires_at - (now() + 300)).abs() <= 2);

    let (header, payload, _) = split(&token).unwrap();
    assert_eq!(json_part(header).unwrap()["alg"], "HS256");
    let payload = json_part(payload).unwrap();
    for name in ["iss", "aud", "sub", "client_id", "iat", "nbf", "exp", "jti"] {
        assert!(payload.contains_key(name), "{name}");
    }
    let jti = uuid::Uuid::parse_str(payload["jti"].as_str().unwrap()).unwrap();
    assert_eq!(jti.get_version_num(), 4);
    let again = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();
    assert_ne!(
        json_part(split(&again).unwrap().1).unwrap()["jti"],
        payload["jti"]
    );
}

#[tokio::test]
async fn issued_token_gets_no_leeway_on_exp() {
    let secret = Secret::new(SECRET);
    let issuer = "https://bridge.example.test/tenants/acme";
    let v = JwtValidator::issued("oauth", issuer, &secret);
    let signed = |exp: i64, nbf: i64| {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            &json!({"iss": issuer, "aud": issuer, "client_id": "okta-client",
                        "iat": nbf, "nbf": nbf, "exp": exp}),
        )
    };
    v.validate(&signed(now() + 5, now())).await.unwrap();
    // Expired a second ago, or this very second: refused (an outside issuer's token would
    // get its configured leeway).
    for exp in [now() - 1, now()] {
        assert_eq!(
            v.validate(&signed(exp, now() - 60)).await.unwrap_err(),
            JwtRejection::Expired,
            "exp {exp}"
        );
    }
    // A token issued with a lifetime of 0 s never passes.
    let token = issue_hs256(&secret, issuer, issuer, "okta-client", 0).unwrap();
    assert_eq!(v.validate(&token).await.unwrap_err(), JwtRejection::Expired);
    // A replica whose clock is a few seconds behind the issuer's accepts a fresh token.
    v.validate(&signed(now() + 600, now() + 10)).await.unwrap();
    assert_eq!(
        v.validate(&signed(now() + 600, now() + 120))
            .await
            .unwrap_err(),
        JwtRejection::NotYetValid
    );
}

#[tokio::test]
async fn issued_token_is_rejected_by_other_validators() {
    let secret = Secret::new(SECRET);
    let issuer = "https://bridge.example.test/tenants/acme";
    let other = "https://bridge.example.test/tenants/other";
    let token = issue_hs256(&secret, issuer, issuer, "okta-client", 300).unwrap();

    let wrong_issuer = JwtValidator::hs256("o", other, issuer, &secret, 0);
    assert_eq!(
        wrong_issuer.validate(&token).await.unwrap_err(),
        JwtRejection::Issuer
    );
    let wrong_audience = JwtValidator::hs256("o", issuer, other, &secret, 0);
    assert_eq!(
        wrong_audience.validate(&token).await.unwrap_err(),
        JwtRejection::Audience
    );
    let other_secret = Secret::new("another-secret-of-at-least-32-bytes!");
    let wrong_secret = JwtValidator::hs256("o", issuer, issuer, &other_secret, 0);
    assert_eq!(
        wrong_secret.validate(&token).await.unwrap_err(),
        JwtRejection::Signature
    );
    assert!(issue_hs256(&Secret::new(""), issuer, issuer, "c", 300).is_err());
}

#[tokio::test]
async fn hs256_validator_with_an_empty_secret_accepts_nothing() {
    let issuer = "https://bridge.example.test/tenants/acme";
    let empty = Secret::new("");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b""),
        None,
        &json!({"iss": issuer, "aud": issuer, "exp": now() + 600}),
    );
    let v = JwtValidator::hs256("oauth", issuer, issuer, &empty, 0);
    assert_eq!(
        v.validate(&forged).await.unwrap_err(),
        JwtRejection::Algorithm
    );
}

#[test]
fn accepts_issuer_reads_iss_without_verifying() {
    let v = hs256_validator();
    assert!(v.accepts_issuer(&hs256(&claims())));
    // Unverified: a bad signature does not matter here.
    let wrong_key = sign(
        Algorithm::RS256,
        &rsa_signer("rsa2-private.pem"),
        None,
        &claims(),
    );
    assert!(v.accepts_issuer(&wrong_key));
    let header = b64(&json!({"alg": "none"}));
    assert!(v.accepts_issuer(&format!("{header}.{}.", b64(&claims()))));

    assert!(!v.accepts_issuer(&hs256(&set(claims(), "iss", json!("https://other/")))));
    assert!(!v.accepts_issuer(&hs256(&set(claims(), "iss", json!([ISSUER])))));
    assert!(!v.accepts_issuer(&hs256(&unset(claims(), "iss"))));
    assert!(!v.accepts_issuer(&format!("bm90IGpzb24.{}.", b64(&claims()))));
    assert!(!v.accepts_issuer(&"a".repeat(MAX_TOKEN_BYTES + 1)));
    for token in ["", "a.b.c", "..", "x"] {
        assert!(!v.accepts_issuer(token), "{token}");
    }
}

#[test]
fn from_config_errors_name_the_problem_not_the_key() {
    let private = JwtValidator::from_config(
        &JwtConfig {
            public_key_file: Some(key_path("rsa-private.pem")),
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(private.contains("private key"), "{private}");
    assert!(private.contains("rsa-private.pem"), "{private}");
    assert!(!private.contains("MII"), "{private}");

    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN PUBLIC KEY-----\nU0VLUklUU0VLUklU\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let err = JwtValidator::from_config(
        &JwtConfig {
            public_key_file: Some(bogus),
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(err.contains("not an RSA or EC public key"), "{err}");
    assert!(!err.contains("U0VLUklU"), "{err}");

    let missing = JwtValidator::from_config(
        &JwtConfig {
            public_key_file: Some(dir.path().join("missing.pem")),
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(missing.contains("missing.pem"), "{missing}");

    let mismatch = JwtValidator::from_config(
        &JwtConfig {
            hs256_secret: Some(Secret::new(SECRET)),
            algorithms: vec!["RS256".into()],
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(mismatch.contains("RS256"), "{mismatch}");
    assert!(!mismatch.contains(SECRET), "{mismatch}");

    let unknown = JwtValidator::from_config(
        &JwtConfig {
            hs256_secret: Some(Secret::new(SECRET)),
            algorithms: vec!["none".into()],
            ..config()
        },
        http(),
    )
    .unwrap_err();
    assert!(unknown.contains("unknown algorithm"), "{unknown}");

    assert!(JwtValidator::from_config(&config(), http()).is_err());
}

#[test]
fn debug_output_shows_no_secret() {
    let shown = format!("{:?}", hs256_validator());
    assert!(shown.contains("idp"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    let url = Url::parse("https://user:pw@idp.example.test/keys?sig=s3cr3t").unwrap();
    let shown = format!("{:?}", jwks_validator(&url, 60, 3600));
    assert!(shown.contains("https://idp.example.test/keys"), "{shown}");
    assert!(
        !shown.contains("pw") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[test]
fn rejection_labels_are_distinct_snake_case() {
    let all = [
        JwtRejection::Malformed,
        JwtRejection::TooLarge,
        JwtRejection::Algorithm,
        JwtRejection::UnknownKey,
        JwtRejection::Signature,
        JwtRejection::Expired,
        JwtRejection::NotYetValid,
        JwtRejection::Issuer,
        JwtRejection::Audience,
        JwtRejection::MissingClaim,
        JwtRejection::KeysUnavailable,
    ];
    let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), all.len());
    for label in labels {
        assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    }
    assert_eq!(JwtRejection::Expired.to_string(), "expired");
}
