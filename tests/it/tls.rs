//! The bridge's own HTTPS listener over real TLS on loopback: serving with `ConnectInfo`,
//! refusing plain HTTP, reloading the certificate on a file change and on SIGHUP, keeping the
//! previous certificate when a replacement is broken, graceful shutdown, and load errors that
//! name the file without quoting it. Certificates are made at test time with rcgen.
//!
//! Reloads are observed from outside: a fresh connection reads the certificate the server
//! presents, waiting (bounded) for the poll. The SIGHUP test signals this whole process, which
//! would reload every TLS server running in it; the tests that assert on a poll-triggered
//! reload therefore share [`SIGNALS`] for reading and the SIGHUP test takes it for writing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use scim_bridge::config::TlsConfig;
use scim_bridge::http::server::ConnectionLimits;
use scim_bridge::http::tls::{load_certified_key, run_maybe_tls, serve_tls};
use scim_bridge::http::AppState;
use scim_bridge::telemetry::metrics::Metrics;
use tokio::sync::{oneshot, Notify, RwLock};
use tokio::task::JoinHandle;

use crate::support::Logs;

/// Read by tests that need no SIGHUP from elsewhere in the process; written by the one that
/// sends it.
static SIGNALS: RwLock<()> = RwLock::const_new(());

/// How long a test waits for a reload before it fails.
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

/// A certificate for `localhost` and `127.0.0.1`, signed by its own CA.
pub(crate) struct Issued {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    cert_der: Vec<u8>,
    pub(crate) key_pem: String,
    key_pkcs8_der: Vec<u8>,
}

pub(crate) fn issue(cn: &str) -> Issued {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cn} CA"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, cn);
    let cert = leaf.signed_by(&key, &ca).unwrap();
    Issued {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_pkcs8_der: key.serialize_der(),
    }
}

/// Writes the pair where `config` points, key first (a poll in between sees a mismatch).
pub(crate) fn install(config: &TlsConfig, pair: &Issued) {
    std::fs::write(&config.key_file, &pair.key_pem).unwrap();
    std::fs::write(&config.cert_file, &pair.cert_pem).unwrap();
}

struct Server {
    addr: SocketAddr,
    config: TlsConfig,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Routes: `/peer` answers the `ConnectInfo` address.
fn router() -> Router {
    Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

async fn start(first: &Issued, reload_check_s: u64, app: Router) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        cert_file: dir.path().join("cert.pem"),
        key_file: dir.path().join("key.pem"),
        reload_check_s,
        handshake_timeout_s: 10,
    };
    install(&config, first);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = config.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let limits = ConnectionLimits::default();
        serve_tls(listener, app, &served, limits, Metrics::off(), shutdown).await
    });
    Server {
        addr,
        config,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// A client trusting only the CAs of `trusted`, on a fresh connection per request.
    fn client(&self, trusted: &[&Issued]) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .resolve("localhost", self.addr)
            .timeout(Duration::from_secs(10));
        for t in trusted {
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(t.ca_pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// The certificate the server presents to a new connection now.
    async fn presented(&self, trusted: &[&Issued]) -> Vec<u8> {
        let r = self
            .client(trusted)
            .get(self.url("/peer"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .unwrap()
            .peer_certificate()
            .unwrap()
            .to_vec()
    }

    /// Waits until new connections get `expected`'s certificate.
    async fn wait_presenting(&self, expected: &Issued, trusted: &[&Issued]) {
        let deadline = tokio::time::Instant::now() + RELOAD_DEADLINE;
        while self.presented(trusted).await != expected.cert_der {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate was not served within {RELOAD_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Completes the shutdown future given to `serve_tls`.
    fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// What `serve_tls` returned.
    async fn stopped(self) -> std::io::Result<()> {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve_tls returns after shutdown")
            .unwrap()
    }

    async fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        self.stopped().await
    }
}

impl Logs {
    async fn wait_for_line(&self, parts: &[&str]) {
        let deadline = tokio::time::Instant::now() + RELOAD_DEADLINE;
        while !self.has_line(parts) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {parts:?} within {RELOAD_DEADLINE:?}; logs:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn https_is_served_with_connect_info_and_plain_http_is_not() {
    let a = issue("scim-bridge test A");
    let other = issue("scim-bridge test other");
    let s = start(&a, 3600, router()).await;

    let r = s.client(&[&a]).get(s.url("/peer")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let peer: SocketAddr = r.text().await.unwrap().parse().unwrap();
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(
        peer.port(),
        s.addr.port(),
        "the client's address, not the server's"
    );

    // A client that does not trust the certificate's CA gets no answer.
    assert!(s
        .client(&[&other])
        .get(s.url("/peer"))
        .send()
        .await
        .is_err());

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/peer", s.addr.port()))
        .send()
        .await;
    assert!(
        !matches!(&plain, Ok(r) if r.status().is_success()),
        "plain HTTP on the TLS port: {plain:?}"
    );

    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_changed_certificate_is_served_after_the_next_poll() {
    let _no_sighup = SIGNALS.read().await;
    let (logs, _guard) = Logs::capture();
    let a = issue("scim-bridge test A");
    let b = issue("scim-bridge test second");
    let s = start(&a, 1, router()).await;
    assert_eq!(s.presented(&[&a, &b]).await, a.cert_der);
    assert!(s.client(&[&b]).get(s.url("/peer")).send().await.is_err());

    install(&s.config, &b);
    s.wait_presenting(&b, &[&a, &b]).await;
    // Only b's CA is needed now.
    let r = s.client(&[&b]).get(s.url("/peer")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(logs.has_line(&["TLS certificate reloaded", "file change"]));

    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_previous_certificate() {
    let _no_sighup = SIGNALS.read().await;
    let (logs, _guard) = Logs::capture();
    let a = issue("scim-bridge test A");
    let b = issue("scim-bridge test second");
    let s = start(&a, 1, router()).await;
    let trusted = [&a, &b];
    assert_eq!(s.presented(&trusted).await, a.cert_der);

    // Garbage in PEM clothing.
    std::fs::write(
        &s.config.cert_file,
        "-----BEGIN CERTIFICATE-----\nnot*base64*at*all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    logs.wait_for_line(&["reload failed", "not valid base64"])
        .await;
    assert_eq!(s.presented(&trusted).await, a.cert_der);

    // A valid certificate whose key is not in the key file.
    std::fs::write(&s.config.cert_file, &b.cert_pem).unwrap();
    logs.wait_for_line(&["reload failed", "not the key of the first certificate"])
        .await;
    assert_eq!(s.presented(&trusted).await, a.cert_der);
    assert!(!logs.text().contains("BEGIN"), "{}", logs.text());

    // The watcher is still there: a good pair is taken.
    std::fs::write(&s.config.key_file, &b.key_pem).unwrap();
    s.wait_presenting(&b, &trusted).await;

    s.stop().await.unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let _only_sighup_test = SIGNALS.write().await;
    let (logs, _guard) = Logs::capture();
    let a = issue("scim-bridge test A");
    let b = issue("scim-bridge test second");
    // No poll within the test's life: only the signal can cause the reload.
    let s = start(&a, 3600, router()).await;
    // Serving means `serve_tls` has installed its SIGHUP handler, so the signal below reloads
    // instead of ending the test process.
    assert_eq!(s.presented(&[&a, &b]).await, a.cert_der);

    install(&s.config, &b);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    s.wait_presenting(&b, &[&a, &b]).await;
    assert!(logs.has_line(&["TLS certificate reloaded", "SIGHUP"]));

    s.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_returns_ok() {
    let a = issue("scim-bridge test A");
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let app = router().route(
        "/slow",
        get(move || async move {
            e.notify_one();
            r.notified().await;
            "done"
        }),
    );
    let mut s = start(&a, 3600, app).await;
    let request = tokio::spawn(s.client(&[&a]).get(s.url("/slow")).send());
    entered.notified().await;

    s.begin_shutdown();
    // Accepting stops (the listener is closed) while the request is still in flight ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(s.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !s.task.is_finished(),
        "returned before the request finished"
    );

    // ... which then completes, and only then does serve_tls return.
    release.notify_one();
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "done");
    s.stopped().await.unwrap();
}

#[tokio::test]
async fn run_maybe_tls_serves_the_app_over_https_with_tls_and_plain_http_without() {
    let a = issue("scim-bridge test A");
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsConfig {
        cert_file: dir.path().join("cert.pem"),
        key_file: dir.path().join("key.pem"),
        reload_check_s: 3600,
        handshake_timeout_s: 10,
    };
    install(&tls, &a);
    let state = AppState::from_config(&scim_bridge::config::Config::default()).unwrap();
    for with_tls in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (state, tls) = (state.clone(), tls.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            run_maybe_tls(listener, state, with_tls.then_some(&tls), shutdown).await
        });
        let scheme = if with_tls { "https" } else { "http" };
        let r = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).unwrap())
            .resolve("localhost", addr)
            .build()
            .unwrap()
            .get(format!("{scheme}://localhost:{}/healthz", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

#[test]
fn load_errors_name_the_file_and_quote_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = issue("scim-bridge test A");
    let b = issue("scim-bridge test second");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let config = TlsConfig {
        cert_file: cert.clone(),
        key_file: key.clone(),
        reload_check_s: 30,
        handshake_timeout_s: 10,
    };
    let write = |c: &str, k: &str| {
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
    };
    let cert_path = cert.display().to_string();
    let key_path = key.display().to_string();
    // The base64 body of a's key, which no error may quote.
    let key_body = a.key_pem.lines().nth(1).unwrap().to_owned();
    let damaged_key = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(b"not a key, but valid base64")
    );

    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        // (case, cert file, key file, file named, words)
        (
            "missing",
            String::new(),
            a.key_pem.clone(),
            "",
            "cannot read",
        ),
        (
            "garbage cert",
            "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n".into(),
            a.key_pem.clone(),
            &cert_path,
            "not valid base64",
        ),
        (
            "no end line",
            format!("-----BEGIN CERTIFICATE-----\n{key_body}\n"),
            a.key_pem.clone(),
            &cert_path,
            "no END line",
        ),
        (
            "key in cert file",
            a.key_pem.clone(),
            a.key_pem.clone(),
            &cert_path,
            "no PEM CERTIFICATE section",
        ),
        (
            "cert in key file",
            a.cert_pem.clone(),
            a.cert_pem.clone(),
            &key_path,
            "no private key found",
        ),
        (
            "damaged key",
            a.cert_pem.clone(),
            damaged_key,
            &key_path,
            "damaged or of an unsupported type",
        ),
        (
            "mismatch",
            a.cert_pem.clone(),
            b.key_pem.clone(),
            &key_path,
            "not the key of the first certificate",
        ),
    ];
    for (case, c, k, file, words) in cases {
        write(&c, &k);
        if case == "missing" {
            std::fs::remove_file(&cert).unwrap();
        }
        let e = load_certified_key(&config).map(|_| ()).unwrap_err();
        let file = if file.is_empty() { &cert_path } else { file };
        assert!(e.contains(file), "{case}: {e}");
        assert!(e.contains(words), "{case}: {e}");
        assert!(e.starts_with("http.tls."), "{case}: {e}");
        assert!(!e.contains("BEGIN"), "{case}: {e}");
        assert!(!e.contains(&key_body), "{case}: {e}");
    }

    // Good pairs: PKCS#8 as rcgen writes it, and the same key as SEC1 (`EC PRIVATE KEY`).
    write(&a.cert_pem, &a.key_pem);
    let loaded = load_certified_key(&config).unwrap();
    assert_eq!(loaded.cert[0].as_ref(), a.cert_der.as_slice());
    let sec1 = pem("EC PRIVATE KEY", &pkcs8_to_sec1(&a.key_pkcs8_der));
    write(&a.cert_pem, &sec1);
    load_certified_key(&config).unwrap();
    // A chain (leaf, then CA) is served as given.
    write(&format!("{}{}", a.cert_pem, a.ca_pem), &a.key_pem);
    assert_eq!(load_certified_key(&config).unwrap().cert.len(), 2);
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The `ECPrivateKey` (SEC1) inside a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING }`.
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    /// One DER element: (tag, contents, the rest).
    fn tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, header) = if d[1] < 0x80 {
            (usize::from(d[1]), 2)
        } else {
            let n = usize::from(d[1] & 0x7f);
            let len = d[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, 2 + n)
        };
        (d[0], &d[header..header + len], &d[header + len..])
    }
    let (_, info, _) = tlv(pkcs8);
    let (_, _, rest) = tlv(info);
    let (_, _, rest) = tlv(rest);
    let (tag, sec1, _) = tlv(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    sec1.to_vec()
}
