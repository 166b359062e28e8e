//! Store faults (issue 8): the database misbehaves under a running bridge.
//!
//! - PostgreSQL connections are terminated (`pg_terminate_backend`) while requests flow: every
//!   request gets a success or a 503 with a SCIM error body and `Retry-After`, never a 500 or a
//!   hang; afterwards the same bridge (no restart) serves every request, and every acknowledged
//!   write is in the store and at the partner.
//! - PostgreSQL is unreachable for a few seconds (a TCP proxy in the test between the bridge and
//!   the server is cut: its connections closed, new ones refused; the shared server itself is
//!   never stopped): requests answer 503 with a SCIM error within the request deadline, and
//!   succeed again once the proxy is restored, without a restart.
//! - SQLite is locked by another connection (`BEGIN IMMEDIATE`) for a few hundred ms and then
//!   for longer than the store's busy timeout: writes wait and are retried, and succeed once the
//!   lock is gone; nothing acknowledged is lost.
//!
//! The PostgreSQL tests skip with a message without `SCIM_BRIDGE_TEST_POSTGRES_URL` (and fail
//! with `SCIM_BRIDGE_TEST_POSTGRES_REQUIRED=1`). Only the bridge's own connections are
//! terminated: its URL carries an `application_name` unique to the test, and the proxy
//! carries only the bridge's connections, so tests running concurrently on
//! the same server are not touched.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use scim_bridge::config::HttpConfig;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::support::{create_group, with_postgres_url, Harness, Options, PG_ENV, TOKEN};

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The bridge's request deadline in these tests: a request that takes longer is a hang.
const DEADLINE_S: u64 = 15;

fn options(store_url: String) -> Options {
    let mut o = Options {
        store_url: Some(store_url),
        http: HttpConfig {
            request_timeout_s: DEADLINE_S,
            ..HttpConfig::default()
        },
        ..Options::default()
    };
    o.bridge.partner.rate_per_second = 0.0;
    // A store fault can fail a membership item (retried after this backoff) or lose the mark
    // that records its outcome (the item is claimed again when its lease runs out): short
    // ones, so the outbox drains within the test once the store is back.
    o.bridge.retry_base_ms = 50;
    o.bridge.retry_max_ms = 500;
    o.bridge.lease_ms = 3_000;
    o
}

/// One answer with the time it took.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

async fn send(h: &Harness, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
    let started = Instant::now();
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(DEADLINE_S + 10));
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/scim+json")
            .body(serde_json::to_vec(&b).unwrap());
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: no HTTP answer: {e}"));
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

/// A store fault may cost a request its success, but only as a 503 with a SCIM error body and
/// `Retry-After`, and never past the request deadline.
fn assert_success_or_503(what: &str, a: &Answer, success: &[StatusCode]) {
    assert!(
        a.took < Duration::from_secs(DEADLINE_S + 2),
        "{what}: took {:?}, past the {DEADLINE_S} s deadline",
        a.took
    );
    if success.contains(&a.status) {
        return;
    }
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: neither a success nor a 503: {}",
        a.body
    );
    assert_eq!(
        a.body["schemas"],
        json!([ERROR_SCHEMA]),
        "{what}: {}",
        a.body
    );
    assert_eq!(a.body["status"], "503", "{what}: {}", a.body);
    let secs: u64 = a
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: a 503 without a numeric Retry-After"));
    assert!(secs >= 1, "{what}: Retry-After {secs}");
}

fn user_json(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Store", "familyName": "Fault"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

/// What an IdP does: creates the user, retrying after a 503 (a retry of a create whose first
/// try was committed may find the user there: 409, then the IdP looks it up). Returns the id
/// and the number of 503s seen.
async fn create_like_an_idp(h: &Harness, email: &str, deadline: Instant) -> (String, u32) {
    let mut unavailable = 0;
    loop {
        let a = send(h, reqwest::Method::POST, "/Users", Some(user_json(email))).await;
        let ok = [StatusCode::CREATED, StatusCode::CONFLICT];
        assert_success_or_503(&format!("create {email}"), &a, &ok);
        match a.status {
            StatusCode::CREATED => return (a.body["id"].as_str().unwrap().to_owned(), unavailable),
            StatusCode::CONFLICT => {
                assert!(
                    unavailable > 0,
                    "create {email}: 409 on a first try: {}",
                    a.body
                );
                let f = format!("/Users?filter=userName%20eq%20%22{email}%22");
                let found = send(h, reqwest::Method::GET, &f, None).await;
                if found.status == StatusCode::OK {
                    return (
                        found.body["Resources"][0]["id"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        unavailable,
                    );
                }
                unavailable += 1;
            }
            _ => unavailable += 1,
        }
        assert!(Instant::now() < deadline, "create {email}: still failing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adds `user` to `group`, retrying after a 503 like an IdP.
async fn add_member_like_an_idp(h: &Harness, group: &str, user: &str, deadline: Instant) -> u32 {
    let mut unavailable = 0;
    loop {
        let a = send(
            h,
            reqwest::Method::PATCH,
            &format!("/Groups/{group}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": user}]}]})),
        )
        .await;
        assert_success_or_503(
            &format!("add {user}"),
            &a,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        );
        if a.status.is_success() {
            return unavailable;
        }
        unavailable += 1;
        assert!(Instant::now() < deadline, "add {user}: still failing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged user is served by the bridge, is at the partner, and is a member of the
/// group in both.
async fn assert_all_there(h: &Harness, group: &str, group_name: &str, users: &[(String, String)]) {
    h.settle(Duration::from_secs(30)).await;
    let g = send(h, reqwest::Method::GET, &format!("/Groups/{group}"), None).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.body);
    let mut members: Vec<&str> = g.body["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default();
    members.sort();
    let mut want: Vec<&str> = users.iter().map(|(id, _)| id.as_str()).collect();
    want.sort();
    assert_eq!(members, want, "the group's members in the bridge");
    for (id, email) in users {
        let u = send(h, reqwest::Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(u.status, StatusCode::OK, "{email}: {}", u.body);
        assert_eq!(u.body["userName"], email.as_str());
        assert_eq!(
            h.partner_groups("acme", email),
            vec![group_name.to_owned()],
            "{email} at the partner"
        );
    }
    let partner_users = crate::support::partner_users_of(&h.emulator, "acme");
    for (_, email) in users {
        let n = partner_users.iter().filter(|u| &u.email == email).count();
        assert_eq!(n, 1, "{email} is at the partner {n} times");
    }
}

// ---- PostgreSQL: connections terminated ----------------------------------------------------

#[tokio::test]
async fn postgres_connections_terminated_mid_run_answer_503_then_recover() {
    with_postgres_url(|url| async move {
        let app = format!("scim_bridge_faults_{}", uuid::Uuid::new_v4().simple());
        let h = Harness::start(options(format!("{url}&application_name={app}"))).await;
        let group = create_group(&h, "Storm", &[]).await;
        let mut admin = sqlx::PgConnection::connect(&std::env::var(PG_ENV).unwrap())
            .await
            .unwrap();

        // Terminates the bridge's connections, and only those, every 250 ms until stopped (often enough to hit requests in flight, rarely enough that
        // retries get through).
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicU64::new(0));
        let killer = {
            let (stop, killed, app) = (stop.clone(), killed.clone(), app.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&app)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
                    killed.fetch_add(n as u64, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                admin
            })
        };

        // Four IdP workers create users and add them to the group while the killer runs.
        let deadline = Instant::now() + Duration::from_secs(90);
        let workers = (0..4).map(|w| {
            let (h, group) = (&h, group.clone());
            async move {
                let mut out = Vec::new();
                let mut unavailable = 0;
                for i in 0..8 {
                    let email = format!("storm-{w}-{i}@acme.example.com");
                    let (id, u) = create_like_an_idp(h, &email, deadline).await;
                    unavailable += u;
                    unavailable += add_member_like_an_idp(h, &group, &id, deadline).await;
                    // Reads too: success or 503, nothing else.
                    let a = send(h, reqwest::Method::GET, &format!("/Users/{id}"), None).await;
                    assert_success_or_503("read", &a, &[StatusCode::OK]);
                    let a = send(h, reqwest::Method::GET, "/Groups?count=5", None).await;
                    assert_success_or_503("list", &a, &[StatusCode::OK]);
                    unavailable += u32::from(!a.status.is_success());
                    out.push((id, email));
                }
                (out, unavailable)
            }
        });
        let results = join_all(workers).await;
        stop.store(true, Ordering::SeqCst);
        let mut admin = killer.await.unwrap();
        let killed = killed.load(Ordering::SeqCst);
        let unavailable: u32 = results.iter().map(|r| r.1).sum();
        let mut users: Vec<(String, String)> = results.into_iter().flat_map(|r| r.0).collect();
        eprintln!("terminated {killed} bridge connections; {unavailable} answers were 503");
        assert!(killed > 0, "the killer never found a bridge connection");

        // Recovered without a restart: a new batch succeeds at the first try.
        for i in 0..5 {
            let email = format!("after-{i}@acme.example.com");
            let a = send(&h, reqwest::Method::POST, "/Users", Some(user_json(&email))).await;
            assert_eq!(a.status, StatusCode::CREATED, "after the storm: {}", a.body);
            let id = a.body["id"].as_str().unwrap().to_owned();
            assert_eq!(
                add_member_like_an_idp(&h, &group, &id, Instant::now()).await,
                0
            );
            users.push((id, email));
        }
        assert_all_there(&h, &group, "Storm", &users).await;
        // The killer hit only this bridge: its own session is alive.
        sqlx::query("SELECT 1").execute(&mut admin).await.unwrap();
    })
    .await;
}

// ---- PostgreSQL: briefly unreachable -------------------------------------------------------

/// A TCP proxy in front of PostgreSQL that can be cut: while cut, its connections are closed
/// and new ones are accepted and closed at once (the client sees the server go away).
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, pipes) = (cut.clone(), pipes.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe);
                }
            })
        };
        Proxy {
            addr,
            cut,
            pipes,
            accept,
        }
    }

    /// Closes every connection through the proxy and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

#[tokio::test]
async fn postgres_briefly_unreachable_answers_503_then_recovers() {
    with_postgres_url(|url| async move {
        let mut proxied = url::Url::parse(&url).unwrap();
        let upstream = format!(
            "{}:{}",
            proxied.host_str().unwrap(),
            proxied.port().unwrap_or(5432)
        );
        let proxy = Proxy::start(upstream).await;
        proxied.set_host(Some("127.0.0.1")).unwrap();
        proxied.set_port(Some(proxy.addr.port())).unwrap();
        let h = Harness::start(options(proxied.to_string())).await;
        let group = create_group(&h, "Outage", &[]).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut users = Vec::new();
        for i in 0..3 {
            let email = format!("before-{i}@acme.example.com");
            let (id, u) = create_like_an_idp(&h, &email, deadline).await;
            assert_eq!(u, 0, "no fault yet");
            add_member_like_an_idp(&h, &group, &id, deadline).await;
            users.push((id, email));
        }
        h.settle(Duration::from_secs(10)).await;

        proxy.cut();
        let cut_at = Instant::now();
        // During the cut, every kind of request answers 503 in time.
        let requests = [
            (
                reqwest::Method::POST,
                "/Users".to_owned(),
                Some(user_json("during@acme.example.com")),
            ),
            (reqwest::Method::GET, format!("/Users/{}", users[0].0), None),
            (reqwest::Method::GET, "/Users?count=10".to_owned(), None),
            (
                reqwest::Method::PATCH,
                format!("/Groups/{group}"),
                Some(json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "remove", "path": format!("members[value eq \"{}\"]", users[1].0)}]})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/Users/{}", users[2].0),
                None,
            ),
        ];
        let answers = join_all(
            requests
                .iter()
                .map(|(m, p, b)| send(&h, m.clone(), p, b.clone())),
        )
        .await;
        for ((m, p, _), a) in requests.iter().zip(&answers) {
            let what = format!("{m} {p} during the outage");
            assert_success_or_503(&what, a, &[]);
        }
        // Keep it down a little longer, then bring it back.
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(cut_at.elapsed())).await;
        proxy.restore();

        // Recovery without a restart: polling until the first success, then everything works.
        let back = Instant::now();
        loop {
            let a = send(&h, reqwest::Method::GET, "/Users?count=1", None).await;
            assert_success_or_503("a read after the outage", &a, &[StatusCode::OK]);
            if a.status == StatusCode::OK {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(20),
                "the bridge did not recover: {}",
                a.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("recovered {:?} after the proxy came back", back.elapsed());
        for i in 0..3 {
            let email = format!("after-{i}@acme.example.com");
            let a = send(&h, reqwest::Method::POST, "/Users", Some(user_json(&email))).await;
            assert_eq!(
                a.status,
                StatusCode::CREATED,
                "after the outage: {}",
                a.body
            );
            let id = a.body["id"].as_str().unwrap().to_owned();
            assert_eq!(
                add_member_like_an_idp(&h, &group, &id, Instant::now()).await,
                0
            );
            users.push((id, email));
        }
        // The IdP retries what failed during the outage: the create (adopting the partner user
        // if the first try reached it) succeeds or finds the user.
        let (id, _) = create_like_an_idp(&h, "during@acme.example.com", deadline).await;
        add_member_like_an_idp(&h, &group, &id, deadline).await;
        users.push((id, "during@acme.example.com".to_owned()));
        assert_all_there(&h, &group, "Outage", &users).await;
    })
    .await;
}

// ---- SQLite: busy ---------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_busy_writes_wait_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/busy.db", dir.path().display());
    let h = Harness::start(options(url.clone())).await;
    let group = create_group(&h, "Busy", &[]).await;
    let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut users = Vec::new();
    // A short lock (within the busy timeout), then one longer than the 5 s busy timeout: the
    // first try of each write gives up with SQLITE_BUSY and the retry succeeds.
    for (round, hold) in [Duration::from_millis(400), Duration::from_millis(6_500)]
        .into_iter()
        .enumerate()
    {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut locker)
            .await
            .unwrap();
        let locked_at = Instant::now();
        let writes = (0..4).map(|i| {
            let (h, group) = (&h, group.clone());
            async move {
                let email = format!("busy-{round}-{i}@acme.example.com");
                let a = send(h, reqwest::Method::POST, "/Users", Some(user_json(&email))).await;
                assert_eq!(a.status, StatusCode::CREATED, "{email}: {}", a.body);
                let created_at = locked_at.elapsed();
                let id = a.body["id"].as_str().unwrap().to_owned();
                let a = send(
                    h,
                    reqwest::Method::PATCH,
                    &format!("/Groups/{group}"),
                    Some(json!({"schemas": [PATCH_OP], "Operations": [
                        {"op": "add", "path": "members", "value": [{"value": id}]}]})),
                )
                .await;
                assert_eq!(a.status, StatusCode::NO_CONTENT, "{email}: {}", a.body);
                (id, email, created_at)
            }
        });
        let release = async {
            tokio::time::sleep(hold).await;
            sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        };
        let (done, ()) = tokio::join!(join_all(writes), release);
        for (id, email, created_at) in done {
            // Each write really waited for the lock.
            assert!(
                created_at >= hold,
                "{email} was written at {created_at:?}, under the lock"
            );
            users.push((id, email));
        }
    }
    assert_all_there(&h, &group, "Busy", &users).await;
}
