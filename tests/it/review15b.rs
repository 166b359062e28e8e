//! Tests from the second skeptical review of issue 15 (after 3378d1f and e13d0e6). Each one
//! states what should hold; the ones that fail show a defect still open (not ignored on
//! purpose: they are meant to fail until the production code is fixed).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use scim_bridge::config::{
    BasicCredentialConfig, Config, CredentialsConfig, HttpConfig, JwtConfig, RateLimitConfig,
};
use scim_bridge::http::auth::basic::hash_password;
use scim_bridge::http::tls::run_maybe_tls;
use scim_bridge::http::AppState;
use scim_bridge::secret::Secret;
use scim_bridge::telemetry::metrics::{self, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{tenant_config, Harness, Options};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

struct Listener {
    addr: SocketAddr,
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

/// One tenant's SCIM listener on plain HTTP, as `serve` runs it.
async fn start(http: HttpConfig) -> Listener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        listen: addr,
        tenants: vec![tenant_config(&Options::default(), "http://127.0.0.1:9/")],
        http,
        ..Config::default()
    };
    let metrics = Metrics::new().unwrap();
    let state = AppState::from_config(&config)
        .unwrap()
        .with_metrics(metrics.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        run_maybe_tls(listener, state, None, shutdown).await
    });
    Listener {
        addr,
        metrics,
        stop: Some(stop),
        task,
    }
}

impl Listener {
    fn open_connections(&self) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(metrics::HTTP_OPEN_CONNECTIONS))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

/// A client that pipelines requests and never reads an answer. Each request carries a
/// one-byte body behind `Expect: 100-continue` that the handler does not read: hyper drains it
/// only after the answer is buffered (`poll_drain_or_close_read` -> `try_keep_alive`), which
/// makes the connection keep-alive-idle *without* the answer having been flushed (the only
/// path the `writing` phase expects). hyper then reads and dispatches the next head
/// (`begin_request`: busy) but never polls its service future while the previous answer's
/// body sits in its write queue (`can_headers_buf` is false). Busy has no clock.
fn never_reading_pipeliner(addr: SocketAddr, request: Vec<u8>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (_read_half, mut write_half) = stream.into_split();
        let burst = request.repeat(512);
        while write_half.write_all(&burst).await.is_ok() {}
        // Keep the read half (and so the connection) until aborted.
        std::future::pending::<()>().await;
    })
}

const HEALTHZ_WITH_BODY: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx";

/// Finding 1a. The `sound_...` guard of review15.rs pipelines GETs without a body and holds;
/// add `Expect: 100-continue` and a one-byte body and the connection is stuck in *busy* (no clock) for good: below the
/// cap it is never closed, whatever `header_read_timeout_s`, `idle_timeout_s` and
/// `request_timeout_s` say (issue 15 item 1: no connection may stay open indefinitely).
#[tokio::test]
async fn a_never_reading_pipeliner_whose_requests_carry_a_body_is_closed_by_a_clock() {
    let http = HttpConfig {
        max_connections: 16,
        header_read_timeout_s: 1,
        idle_timeout_s: 2,
        request_timeout_s: 2,
        ..HttpConfig::default()
    };
    let l = start(http).await;
    let attacker = never_reading_pipeliner(l.addr, HEALTHZ_WITH_BODY.to_vec());
    // Longer than every clock (head 1 s, idle/writing 2 s, request 2 s), twice.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let open = l.open_connections();
    attacker.abort();
    assert_eq!(
        open, 0.0,
        "an unauthenticated client that never reads kept {open} connection(s) open past every \
         clock (busy: a dispatched request hyper cannot poll has no clock)"
    );
}

/// Finding 1b. The same client blocks graceful shutdown for ever: `serve` waits for the
/// request "in flight", which is never answered, and its busy phase has no clock. A restart
/// hangs until the service manager kills the process (and every real request with it).
///
/// Review 3: with the writing clock long (`idle_timeout_s` 60 s, the default is 75 s), the
/// stuck request counted as "being worked on" and shutdown waited out that clock, past a
/// container's stop grace period. A connection whose answer is not flushed drains only when
/// that answer is a verified credential's.
#[tokio::test]
async fn shutdown_completes_while_an_unauthenticated_client_never_reads() {
    let http = HttpConfig {
        max_connections: 16,
        header_read_timeout_s: 1,
        idle_timeout_s: 60,
        request_timeout_s: 2,
        ..HttpConfig::default()
    };
    let mut l = start(http).await;
    let attacker = never_reading_pipeliner(l.addr, HEALTHZ_WITH_BODY.to_vec());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = l.stop.take().unwrap().send(());
    let done = tokio::time::timeout(Duration::from_secs(5), &mut l.task).await;
    attacker.abort();
    assert!(
        done.is_ok(),
        "shutdown did not complete within 5 s while an unauthenticated client pipelined \
         requests with bodies and never read (writing clock 60 s)"
    );
}

/// Finding 1c. With a valid credential on each pipelined request, the stuck busy phase also
/// inherits `held` from the previous (authenticated, unflushed) answer (`begin_request` never
/// clears it): such a connection is neither timed out nor closed for room, so one connection
/// per slot takes the listener for good, which the writing phase's clock was meant to rule
/// out ("closed when writing stalls for idle_timeout_s").
#[tokio::test]
async fn an_authenticated_pipeliner_that_never_reads_does_not_hold_the_listener_for_ever() {
    let http = HttpConfig {
        max_connections: 1,
        header_read_timeout_s: 1,
        idle_timeout_s: 2,
        request_timeout_s: 2,
        // Off (a supported setting): with it on, the pipeline's answers past the burst are
        // 429s, which hold nothing, and the stuck request is only evictable (finding 1a).
        rate_limit: RateLimitConfig {
            per_second: 0.0,
            burst: 1,
        },
        ..HttpConfig::default()
    };
    let h = Harness::start(Options {
        http,
        ..Options::default()
    })
    .await;
    let addr: SocketAddr = h.root.trim_start_matches("http://").parse().unwrap();
    let request = format!(
        "GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        crate::support::TOKEN
    );
    let attacker = never_reading_pipeliner(addr, request.into_bytes());
    // Past every clock (writing stalls for idle_timeout_s = 2 s), twice.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let answer = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/ServiceProviderConfig", h.base))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .map(|r| r.status());
    attacker.abort();
    assert!(
        matches!(answer, Ok(StatusCode::OK)),
        "a connection that stopped reading 8 s ago (2 s writing clock) still holds the only \
         slot: {answer:?}"
    );
}

fn rs256(claims: serde_json::Value) -> String {
    let pem = std::fs::read(format!("{KEYS}/rsa-private.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("m4qqF6vpdxhPSiWsykUwpqNARYc".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// Finding 2. A connection is held only once its credential is verified; verification itself
/// (a JWKS fetch for a new or rotated `kid`, up to 5 s; a Basic check waiting up to 1 s for
/// the Argon2 lane) is busy-and-unheld. An IdP's kept-alive connection is the *oldest* in the
/// table, so it is the first one any new connection at the cap closes: the IdP's valid request
/// is cut off with no answer. (And when the close lands between the scan and the middleware's
/// `Hold::authenticated`, `hold()` is a silent no-op on a closing connection: the handler then
/// starts and is dropped at its first await.)
#[tokio::test]
async fn an_idp_request_whose_credential_is_being_verified_is_not_cut_off_for_room() {
    let jwks = axum::Router::new().route(
        "/keys",
        axum::routing::get(|| async {
            // A slow issuer (or a distant one): well within the validator's 5 s timeout.
            tokio::time::sleep(Duration::from_secs(3)).await;
            std::fs::read_to_string(format!("{KEYS}/rsa-jwks.json")).unwrap()
        }),
    );
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = jwks_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(jwks_listener, jwks).await });
    let issuer = "https://login.idp.example/tenant/";
    let mut credentials = CredentialsConfig::default();
    credentials.jwt.push(JwtConfig {
        name: "entra".into(),
        issuer: issuer.into(),
        audience: vec!["scim-bridge".into()],
        jwks_url: Some(url::Url::parse(&format!("http://{jwks_addr}/keys")).unwrap()),
        ..JwtConfig::default()
    });
    let h = Harness::start(Options {
        credentials,
        http: HttpConfig {
            max_connections: 2,
            header_read_timeout_s: 10,
            idle_timeout_s: 30,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let addr: SocketAddr = h.root.trim_start_matches("http://").parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = rs256(serde_json::json!({
        "iss": issuer, "aud": "scim-bridge", "appid": "entra-app", "exp": now + 300
    }));
    // The IdP's kept-alive connection, past its grace.
    let mut idp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    idp.write_all(
        format!("GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // While its token is being verified, two clients connect and send nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(8), idp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the IdP's valid request was cut off while its token was being verified: {answer:?}"
    );
}

fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `clients` clients guessing Basic passwords for `user` as fast as they are answered, from
/// the addresses `from(n)` names (through the trusted proxy 127.0.0.1 when `Some`).
fn guess_flood(
    h: &Harness,
    clients: usize,
    user: &'static str,
    from: fn(u32) -> Option<String>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let url = format!("{}/Users", h.base);
    let next = Arc::new(AtomicU32::new(0));
    (0..clients)
        .map(|_| {
            let (http, url, stop, next) = (h.http.clone(), url.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let mut req = http
                        .get(&url)
                        .header("Authorization", basic_header(user, &format!("guess-{n}")));
                    if let Some(ip) = from(n) {
                        req = req.header("X-Forwarded-For", ip);
                    }
                    let _ = req.send().await;
                }
            })
        })
        .collect()
}

/// The IdP's valid Basic request, retried as told (at most five times, 1 s apart).
async fn idp_statuses(h: &Harness, user: &str, password: &str, from: Option<&str>) -> Vec<u16> {
    let url = format!("{}/Users", h.base);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut req = h
            .http
            .get(&url)
            .header("Authorization", basic_header(user, password));
        if let Some(ip) = from {
            req = req.header("X-Forwarded-For", ip);
        }
        let res = req.send().await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    statuses
}

/// Finding 3a (introduced by 3378d1f). A failure marks its whole /24 as a guesser at the
/// tenant, so an unauthenticated party in the IdP's /24 (the same cloud region's NAT range, a
/// shared egress) moves the IdP from the clean class into the guessers' queue, where its own
/// flood keeps the IdP's first (uncached) Basic check refused (503: the failed-class queue is
/// full). The IdP in another /24 is let through (control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessers_in_the_idps_24_do_not_starve_its_valid_basic_credential() {
    const USER: &str = "okta-scim";
    const PASSWORD: &str = "correct horse battery staple";
    const OTHER: &str = "other-idp";
    const OTHER_PASSWORD: &str = "another horse battery staple";
    let user = |name: &str, user: &str, password: &str| BasicCredentialConfig {
        name: name.into(),
        username: user.into(),
        password_hash: Some(Secret::new(hash_password(password).unwrap())),
        password_hash_file: None,
        password_sha256: None,
    };
    let h = Harness::start(Options {
        credentials: CredentialsConfig {
            basic: vec![
                user("basic", USER, PASSWORD),
                user("other", OTHER, OTHER_PASSWORD),
            ],
            ..CredentialsConfig::default()
        },
        http: HttpConfig {
            trusted_proxies: vec!["127.0.0.1".into()],
            basic_auth_max_concurrent: 1,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // Guesses from 192.0.2.1 to 192.0.2.49, each address well within its own budget.
    let guessers = guess_flood(
        &h,
        64,
        USER,
        |n| Some(format!("192.0.2.{}", 1 + n % 49)),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Control: an IdP (its own, not remembered password) in another /24.
    let other_24 = idp_statuses(&h, OTHER, OTHER_PASSWORD, Some("198.51.100.50")).await;
    let same_24 = idp_statuses(&h, USER, PASSWORD, Some("192.0.2.50")).await;
    stop.store(true, Ordering::Relaxed);
    for g in guessers {
        let _ = g.await;
    }
    assert!(
        same_24.contains(&200),
        "the IdP at 192.0.2.50 was refused five times while someone else in its /24 \
         guessed: {same_24:?} (an IdP in another /24 got {other_24:?})"
    );
}

/// Finding 3b (issue 15 item 4). Behind a proxy missing from `trusted_proxies` (everything
/// from 127.0.0.1), a flood of wrong Basic passwords puts the shared address over budget. With
/// an Argon2 password the IdP's first, not remembered check queued for the one over-budget
/// slot behind the flood and was answered 429 (the README's Limits keep that for chosen
/// passwords). A generated password is configured by its SHA-256 and checked at once: the
/// flood is answered 429 and the IdP 200 on its first try, with no hash at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guess_flood_from_a_shared_address_does_not_lock_a_generated_basic_password_out() {
    const USER: &str = "okta-scim";
    // The credential as an operator makes it: what `token new --basic` prints.
    let out = crate::cli::bridge()
        .args(["token", "new", "--basic", USER])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("token new --basic printed no {name}"))
    };
    let (password, sha256) = (field("password:"), field("sha256:"));
    let h = Harness::start(Options {
        credentials: CredentialsConfig {
            basic: vec![BasicCredentialConfig {
                name: "basic".into(),
                username: USER.into(),
                password_sha256: Some(sha256),
                ..BasicCredentialConfig::default()
            }],
            ..CredentialsConfig::default()
        },
        http: HttpConfig {
            auth_failure_limit: RateLimitConfig {
                per_second: 0.2,
                burst: 20,
            },
            basic_auth_max_concurrent: 1,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let guessers = guess_flood(&h, 128, USER, |_| None, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let statuses = idp_statuses(&h, USER, &password, None).await;
    // The flood is over its budget: a guess is refused 429, not let in.
    let guess = h
        .http
        .get(format!("{}/Users", h.base))
        .header("Authorization", basic_header(USER, "one-more-guess"))
        .send()
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for g in guessers {
        let _ = g.await;
    }
    assert_eq!(
        statuses,
        vec![200],
        "the IdP's generated Basic password was refused by someone else's guessing from the \
         shared address"
    );
    assert_eq!(guess.status(), StatusCode::TOO_MANY_REQUESTS);
}
