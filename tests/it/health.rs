//! Health: `/healthz` and `/readyz` in process; against the real binary, the `healthcheck`
//! command, the metrics listener of `serve`, and a `SIGTERM` that lets the request in flight
//! finish.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

use scim_bridge::partner::emulator::faults::Faults;
use scim_bridge::telemetry::metrics;

use crate::support::{create_group, create_user, Harness, Logs, Options};

async fn get_json(h: &Harness, path: &str) -> (StatusCode, Value) {
    let res = h
        .http
        .get(format!("{}{path}", h.root))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn readyz_is_ready_with_a_reachable_migrated_store_and_healthz_always_answers() {
    let h = Harness::start(Options::default()).await;
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["store", "migrations", "outbox"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    let (status, body) = get_json(&h, "/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn readyz_answers_503_naming_the_store_when_it_is_unreachable() {
    let h = Harness::start(Options::default()).await;
    h.bridge.store.close().await;
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failing"], serde_json::json!(["store"]));
    assert_eq!(body["checks"]["store"], "unreachable");
    assert_eq!(body["checks"]["migrations"], "skipped");
    assert!(body["detail"]["store"].is_string(), "{body}");
    // Alive all the same: a liveness probe must not restart the bridge for its database.
    let (status, _) = get_json(&h, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_names_migrations_the_store_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bridge.db", dir.path().display());
    let h = Harness::start(Options {
        store_url: Some(url.clone()),
        ..Options::default()
    })
    .await;
    // As if this binary were newer than the schema: its latest migration is not recorded.
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["migrations"]));
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["checks"]["migrations"], "pending");
}

/// The value of an unlabeled gauge in a scrape of `h`'s recorder.
fn gauge(h: &Harness, name: &str) -> Option<f64> {
    h.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn readyz_reports_degraded_never_unready_only_when_a_row_keeps_failing_past_the_limit() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start(Options::default()).await;
    // The workers are stopped: the test claims and fails rows itself.
    h.bridge.engine.shutdown().await;
    let store = &h.bridge.store;
    let now = scim_bridge::bridge::now_ms();
    let minutes_ago = |m: i64| now - m * 60_000;
    let site = vec!["acme".to_owned()];

    // A backlog waiting for 20 minutes without failures is slow, not stuck.
    store
        .mark_outbox_at("acme", &site, &["old".to_owned()], minutes_ago(20))
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(gauge(&h, metrics::DEGRADED), Some(0.0));

    // A change failing for 5 minutes is within the limit (15 minutes by default).
    store
        .mark_outbox_at("acme", &site, &["recent".to_owned()], minutes_ago(5))
        .await
        .unwrap();
    let claimed = store
        .claim_outbox("test", 10, Duration::from_secs(60), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let item = |user: &str| claimed.iter().find(|i| i.user_id == user).unwrap();
    store
        .fail_outbox(item("recent"), "partner 503", now + 60_000)
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["outbox"], "ok", "{body}");

    // One failing for 20 minutes makes the bridge degraded: still ready, and saying why.
    store
        .fail_outbox(item("old"), "partner 503", now + 60_000)
        .await
        .unwrap();
    for _ in 0..3 {
        let (status, body) = get_json(&h, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["degraded"], serde_json::json!(["outbox"]), "{body}");
        assert!(body.get("failing").is_none(), "{body}");
        assert_eq!(body["checks"]["store"], "ok", "{body}");
        assert_eq!(body["checks"]["migrations"], "ok", "{body}");
        assert_eq!(body["checks"]["outbox"], "stuck", "{body}");
        assert_eq!(body["outbox"]["failing"], 2, "{body}");
        assert_eq!(body["outbox"]["stuck_after_s"], 900, "{body}");
        let age = body["outbox"]["oldest_failing_age_s"].as_u64().unwrap();
        assert!((1200..1300).contains(&age), "{body}");
        let detail = body["detail"]["outbox"].as_str().unwrap();
        assert!(
            detail.contains("2 membership changes are failing"),
            "{body}"
        );
        assert!(detail.contains("limit 900 s"), "{body}");
        // Nothing about the user or the error text goes to an unauthenticated caller.
        assert!(!body.to_string().contains("partner 503"), "{body}");
        assert!(!body.to_string().contains("\"old\""), "{body}");
    }
    assert_eq!(gauge(&h, metrics::DEGRADED), Some(1.0));
    // Logged once on entering the state, not on every probe.
    let warned = logs
        .text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("degraded: the bridge still serves"))
        .count();
    assert_eq!(warned, 1, "{}", logs.text());

    // Once the rows converge, ready again, and the recovery is logged.
    let again = store
        .claim_outbox("test", 10, Duration::from_secs(60), now + 120_000)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    for row in &again {
        assert!(store.complete_outbox(row).await.unwrap());
    }
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{body}"
    );
    assert_eq!(gauge(&h, metrics::DEGRADED), Some(0.0));
    assert!(
        logs.has_line(&["INFO", "no longer degraded"]),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn readyz_never_reports_the_outbox_stuck_when_the_limit_is_zero() {
    let mut opts = Options::default();
    opts.bridge.outbox_stuck_after_s = 0;
    let h = Harness::start(opts).await;
    h.bridge.engine.shutdown().await;
    let store = &h.bridge.store;
    let now = scim_bridge::bridge::now_ms();
    store
        .mark_outbox_at(
            "acme",
            &["acme".to_owned()],
            &["u".to_owned()],
            now - 86_400_000,
        )
        .await
        .unwrap();
    let item = store
        .claim_outbox("test", 1, Duration::from_secs(60), now)
        .await
        .unwrap()
        .remove(0);
    store
        .fail_outbox(&item, "boom", now + 60_000)
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["outbox"], "ok", "{body}");
}

/// Sends a write as an IdP does after a refusal: again until it is accepted (2xx), as long as
/// the refusals are 503 (the circuit a fault opened may refuse a moment longer).
async fn until_accepted(h: &Harness, method: &str, path: &str, body: Value) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = match method {
            "POST" => h.post(path, body.clone()).await,
            _ => h.patch(path, body.clone()).await,
        };
        if status.is_success() {
            return answer;
        }
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {answer}"
        );
        assert!(
            Instant::now() < end,
            "{method} {path} never landed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 14: a partner outage must not take the bridge out of service. While every partner
/// call fails, `/readyz` answers 200 and reports the bridge degraded; once the partner is back,
/// the IdP's retry of the write it was refused lands and the bridge is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_200_and_degraded_while_the_partner_fails_then_a_retried_write_lands() {
    let mut opts = Options::default();
    opts.bridge.outbox_stuck_after_s = 1;
    opts.bridge.retry_base_ms = 100;
    opts.bridge.retry_max_ms = 500;
    opts.bridge.wait_deadline_ms = 1_000;
    opts.bridge.partner.max_attempts = 1;
    opts.bridge.partner.circuit_open_ms = 100;
    let h = Harness::start(opts).await;
    let ann = create_user(&h, "ann@example.com", "Ann", "A").await;
    let group = create_group(&h, "Engineers", &[]).await;

    // The partner answers every call 503.
    assert!(h.emulator.set_faults(
        "acme",
        Faults {
            error_share: 1.0,
            error_statuses: vec![503],
            ..Faults::default()
        },
    ));
    // A membership change: its intent is stored and keeps failing in the outbox.
    let add = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": ann}]}],
    });
    let path = format!("/Groups/{group}");
    let (status, body) = h.patch(&path, add.clone()).await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status.is_success(),
        "{status} {body}"
    );
    // A new user: refused, for the IdP to retry.
    let bob = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bob@example.com",
        "name": {"givenName": "Bob", "familyName": "B"},
        "emails": [{"value": "bob@example.com", "type": "work", "primary": true}],
        "active": true,
    });
    let (status, body) = h.post("/Users", bob.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(h.partner_user("acme", "bob@example.com").is_none());

    // The change keeps failing past the 1 s limit: degraded, and ready all along.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_json(&h, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "degraded" {
            assert_eq!(body["checks"]["outbox"], "stuck", "{body}");
            assert!(body["outbox"]["failing"].as_u64().unwrap() >= 1, "{body}");
            break;
        }
        assert_eq!(body["status"], "ready", "{body}");
        assert!(Instant::now() < end, "never reported degraded: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge(&h, metrics::DEGRADED), Some(1.0));
    assert!(h.partner_groups("acme", "ann@example.com").is_empty());

    // The partner is back; the IdP retries what it was refused, which lands.
    assert!(h.emulator.set_faults("acme", Faults::default()));
    let created = until_accepted(&h, "POST", "/Users", bob).await;
    assert_eq!(created["userName"], "bob@example.com", "{created}");
    until_accepted(&h, "PATCH", &path, add).await;
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_user("acme", "bob@example.com").is_some());
    assert_eq!(h.partner_groups("acme", "ann@example.com"), ["Engineers"]);
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{body}"
    );
    assert_eq!(gauge(&h, metrics::DEGRADED), Some(0.0));
}

/// A sandbox started by the real binary on free ports, with its metrics listener on.
struct Sandbox {
    child: Child,
    /// `http://127.0.0.1:PORT`
    root: String,
    token: String,
    emulator: String,
    metrics: String,
    _dir: tempfile::TempDir,
}

/// Lines of a child's output, read to the end on a thread of their own so the child never
/// writes into a full or closed pipe.
fn lines_of(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line of `lines` that `pick` maps to a value, waiting up to 30 s.
fn wait_for<T>(lines: &Receiver<String>, mut pick: impl FnMut(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("the line never came");
        if let Some(v) = pick(&line) {
            return v;
        }
    }
}

impl Sandbox {
    fn start() -> Sandbox {
        Self::start_with(&[])
    }

    /// The sandbox with more configuration in `env` (so `--sandbox`: settings without a tenant
    /// do not start it by themselves).
    fn start_with(env: &[(&str, &str)]) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let mut child = crate::cli::bridge()
            .args(["--sandbox", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .env("SCIM_BRIDGE_METRICS_LISTEN", "127.0.0.1:0")
            .env("SCIM_BRIDGE_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let field = |line: &str, prefix: &str| {
            line.trim()
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        let base = wait_for(&stdout, |l| field(l, "SCIM base URL"));
        let token = wait_for(&stdout, |l| field(l, "Bearer token"));
        let emulator = wait_for(&stdout, |l| field(l, "Partner emulator"));
        let metrics = wait_for(&stderr, |l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "serving metrics at /metrics")
                .then(|| format!("http://{}/metrics", v["fields"]["listen"].as_str().unwrap()))
        });
        Sandbox {
            child,
            root: base.trim_end_matches("/scim/v2").to_owned(),
            token,
            emulator,
            metrics,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        self.root.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit, at most 30 s.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the bridge did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scim-bridge healthcheck` with `args` and `env`: its exit code and its output.
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = crate::cli::bridge()
        .arg("healthcheck")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn healthcheck_exits_zero_while_ready_and_one_once_nothing_listens() {
    let mut sandbox = Sandbox::start();
    let url = format!("{}/readyz", sandbox.root);

    let (code, out) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("ready: "), "{out}");
    // Without --url: `listen` from the configuration, a wildcard address probed on loopback.
    let listen = format!("0.0.0.0:{}", sandbox.port());
    let (code, out) = healthcheck(&[], &[("SCIM_BRIDGE_LISTEN", &listen)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("http://127.0.0.1:"), "{out}");

    // `serve` counts SCIM requests on its metrics listener.
    let client = reqwest::blocking::Client::new();
    let listed = client
        .get(format!("{}/scim/v2/Users", sandbox.root))
        .bearer_auth(&sandbox.token)
        .send()
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let scraped = client.get(&sandbox.metrics).send().unwrap().text().unwrap();
    assert!(
        scraped.contains(
            r#"scim_bridge_http_requests_total{tenant="sandbox",resource="Users",operation="list",status="200"} 1"#
        ),
        "{scraped}"
    );
    assert!(scraped.contains("scim_bridge_outbox_depth 0"), "{scraped}");

    sandbox.terminate();
    assert!(sandbox.wait().success());
    let (code, out) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("not ready: "), "{out}");
    // A configuration that does not load is "not ready" too, on one line, exit 1 (Docker
    // reserves 2).
    let (code, out) = healthcheck(&[], &[("SCIM_BRIDGE_LISTEN", "nonsense")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("SCIM_BRIDGE_LISTEN"), "{out}");
}

#[test]
fn healthcheck_probes_https_on_loopback_without_verifying_only_the_local_certificate() {
    // A self-signed certificate for the public name: neither its issuer nor its name would
    // pass verification at 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["scim.example.com".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = [
        ("SCIM_BRIDGE_HTTP__TLS__CERT_FILE", cert),
        ("SCIM_BRIDGE_HTTP__TLS__KEY_FILE", key),
    ];
    let sandbox = Sandbox::start_with(&tls);
    assert!(sandbox.root.starts_with("https://"), "{}", sandbox.root);

    let listen = format!("127.0.0.1:{}", sandbox.port());
    let mut env = tls.to_vec();
    env.push(("SCIM_BRIDGE_LISTEN", &listen));
    let (code, out) = healthcheck(&[], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ready: https://127.0.0.1:"), "{out}");
    // A URL given on the command line is verified as usual.
    let url = format!("{}/readyz", sandbox.root);
    let (code, out) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn healthcheck_exits_one_on_a_503_and_names_the_failing_checks() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", server.local_addr().unwrap());
    // A one-shot server answering what a bridge with an unreachable store answers.
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = server.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = r#"{"status":"not ready","failing":["store"]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let (code, out) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("503") && out.contains("store"), "{out}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_with_its_answer_and_exits_zero() {
    let mut sandbox = Sandbox::start();
    let client = reqwest::blocking::Client::new();
    // Every partner call now takes 2 s.
    let faults = client
        .put(format!(
            "{}/_emulator/sites/sandbox/faults",
            sandbox.emulator
        ))
        .json(&serde_json::json!({"latency": {"fixed_ms": 2000}}))
        .send()
        .unwrap();
    assert!(faults.status().is_success());
    let partner_calls = || -> u64 {
        let counters: Value = client
            .get(format!("{}/_emulator/counters", sandbox.emulator))
            .send()
            .unwrap()
            .json()
            .unwrap();
        counters
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    };
    let before = partner_calls();

    let create = {
        let url = format!("{}/scim/v2/Users", sandbox.root);
        let token = sandbox.token.clone();
        std::thread::spawn(move || {
            let res = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
                .post(url)
                .bearer_auth(token)
                .header("Content-Type", "application/scim+json")
                .body(r#"{"userName":"late@example.com","name":{"givenName":"Late","familyName":"Comer"}}"#)
                .send()
                .unwrap();
            let status = res.status();
            (status, res.json::<Value>().unwrap())
        })
    };
    // The request is in flight once the partner has seen its first call.
    let deadline = Instant::now() + Duration::from_secs(20);
    while partner_calls() == before {
        assert!(
            Instant::now() < deadline,
            "the request never reached the partner"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sandbox.terminate();
    // New connections are refused while the request in flight is still being answered.
    let addr: std::net::SocketAddr = sandbox.root.trim_start_matches("http://").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !create.is_finished(),
        "the request finished before the listener closed"
    );

    let (status, body) = create.join().unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["userName"], "late@example.com");
    assert!(sandbox.wait().success());
}
