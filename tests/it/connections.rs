//! Connection limits of the SCIM listener at the wire, on plain HTTP and on TLS: a client that
//! sends nothing, trickles its request head, or idles on a kept-alive connection is closed
//! when its clock runs out; past `http.max_connections` the oldest connection without a
//! request in flight makes room, so a real client keeps getting answers while more idle and
//! trickling connections than the cap are held; a connection with a request in flight is
//! never closed for room, and with every one busy a new one is refused; shutdown waits for
//! requests in flight but not for slow clients; and the binary, given fewer open files than
//! the attack's connections, keeps answering (issue 15's attack, scaled down).
//!
//! The attack connections run on tasks of their own and reconnect whenever the server closes
//! them, as an attacker would; the real client opens a fresh connection per request.

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use scim_bridge::config::{Config, HttpConfig, TlsConfig};
use scim_bridge::http::server::{self, ConnectionLimits, Hold, Transport};
use scim_bridge::http::tls::run_maybe_tls;
use scim_bridge::http::AppState;
use scim_bridge::telemetry::metrics::{self, Metrics};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::support::{tenant_config, Options, TOKEN};
use crate::tls::{install, issue, Issued};

/// The longest a real request may take while the listener is under attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How often a trickling client sends the next byte of its request head.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Plain,
    Tls,
}

/// A byte stream to the listener: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The SCIM listener of one tenant (discovery only), as `serve` runs it.
struct Listener {
    addr: SocketAddr,
    side: Side,
    issued: Option<Issued>,
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(side: Side, http: HttpConfig, handshake_timeout_s: u64) -> Listener {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config {
        listen: addr,
        tenants: vec![tenant_config(&Options::default(), "http://127.0.0.1:9/")],
        http,
        ..Config::default()
    };
    let issued = (side == Side::Tls).then(|| issue("scim-bridge connections"));
    if let Some(pair) = &issued {
        let tls = TlsConfig {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            reload_check_s: 3600,
            handshake_timeout_s,
        };
        install(&tls, pair);
        config.http.tls = Some(tls);
    }
    let metrics = Metrics::new().unwrap();
    let state = AppState::from_config(&config)
        .unwrap()
        .with_metrics(metrics.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        run_maybe_tls(listener, state, config.http.tls.as_ref(), shutdown).await
    });
    Listener {
        addr,
        side,
        issued,
        metrics,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Listener {
    fn label(&self) -> &'static str {
        match self.side {
            Side::Plain => "plain",
            Side::Tls => "tls",
        }
    }

    /// A TCP connection that says nothing (on TLS: not even a handshake).
    async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A connection ready for HTTP: TCP, or TLS after the handshake.
    async fn connect(&self) -> io::Result<Box<dyn Stream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let Some(pair) = &self.issued else {
            return Ok(Box::new(tcp));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pair.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// A real client: a fresh connection per request.
    fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .pool_max_idle_per_host(0)
            .resolve("localhost", self.addr)
            .timeout(ANSWER_WITHIN);
        if let Some(pair) = &self.issued {
            b = b.tls_built_in_root_certs(false).add_root_certificate(
                reqwest::Certificate::from_pem(pair.ca_pem.as_bytes()).unwrap(),
            );
        }
        b.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        let scheme = match self.side {
            Side::Plain => "http",
            Side::Tls => "https",
        };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    /// An authenticated SCIM request on a new connection; it must be answered 200 within
    /// [`ANSWER_WITHIN`].
    async fn real_request(&self) -> Duration {
        let began = Instant::now();
        let res = self
            .client()
            .get(self.url("/scim/v2/ServiceProviderConfig"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        let took = began.elapsed();
        let res = res.unwrap_or_else(|e| panic!("no answer after {took:?}: {e:?}"));
        assert_eq!(res.status(), 200);
        assert!(took < ANSWER_WITHIN, "answered after {took:?}");
        took
    }

    fn open_connections(&self) -> Option<f64> {
        gauge(
            &self.metrics,
            metrics::HTTP_OPEN_CONNECTIONS,
            &[("listener", self.label())],
        )
    }

    fn dropped(&self, reason: &str) -> f64 {
        gauge(
            &self.metrics,
            metrics::HTTP_CONNECTIONS_DROPPED,
            &[("listener", self.label()), ("reason", reason)],
        )
        .unwrap_or(0.0)
    }

    /// Waits up to 10 s for the open-connections gauge to satisfy `ok`.
    async fn wait_open(&self, what: &str, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let open = self.open_connections();
            if open.is_some_and(&ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "open connections never became {what}: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Begins shutdown; the server's result once it has returned.
    async fn stop(mut self, within: Duration) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(within, self.task)
            .await
            .unwrap_or_else(|_| panic!("the server did not return within {within:?}"))
            .unwrap()
    }
}

/// The sum of the samples of `name` with every pair of `labels`; `None` when there is none.
fn gauge(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = metrics.render();
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

/// Waits up to `limit` for the server to close `io` (EOF or a reset); how long that took, or
/// `None` while it stays open. Bytes the server sends meanwhile are read and ignored.
async fn closed_within<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(began.elapsed())?;
        match tokio::time::timeout(left, io.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(began.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request head that never ends, one byte every [`TRICKLE_EVERY`], until the server
/// closes the connection; how long it lasted.
async fn trickle(mut io: Box<dyn Stream>) -> Duration {
    let began = Instant::now();
    let prefix = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut buf = [0u8; 1024];
    for byte in prefix.iter().chain(std::iter::repeat(&b'a')) {
        if io.write_all(&[*byte]).await.is_err() || io.flush().await.is_err() {
            return began.elapsed();
        }
        // The pause doubles as a watch for the close.
        match tokio::time::timeout(TRICKLE_EVERY, io.read(&mut buf)).await {
            Err(_) | Ok(Ok(1..)) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return began.elapsed(),
        }
    }
    unreachable!("the head never ends")
}

/// Reads one HTTP/1.1 answer with a `content-length` from `io`; its text.
async fn read_answer(io: &mut (impl AsyncRead + Unpin + ?Sized)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before the answer was complete");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

// ---- clocks ----

async fn slow_clients_are_closed_when_their_clock_runs_out(side: Side) {
    let http = HttpConfig {
        header_read_timeout_s: 1,
        idle_timeout_s: 3,
        ..HttpConfig::default()
    };
    let l = start(side, http, 1).await;

    // Says nothing at all (on TLS: no handshake; the handshake clock, also 1 s).
    let mut silent = l.tcp().await;
    // Ready for HTTP (on TLS: after the handshake) but sends no request.
    let mut quiet = l.connect().await.unwrap();
    // Trickles a head in, a byte every 200 ms: the clock runs from the start of the head.
    let trickling = tokio::spawn(trickle(l.connect().await.unwrap()));
    // Answered once, then kept alive: the idle clock (3 s), not the head clock, runs.
    let mut kept = l.connect().await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answered = Instant::now();

    let bound = Duration::from_secs(5);
    for (what, io) in [
        ("silent", &mut silent as &mut (dyn AsyncRead + Unpin + Send)),
        ("quiet", &mut quiet),
    ] {
        let took = closed_within(io, bound)
            .await
            .unwrap_or_else(|| panic!("{side:?}: the {what} connection is open after {bound:?}"));
        assert!(took < Duration::from_secs(4), "{side:?} {what}: {took:?}");
    }
    let lasted = tokio::time::timeout(bound, trickling)
        .await
        .unwrap_or_else(|_| panic!("{side:?}: the trickling connection is open after {bound:?}"))
        .unwrap();
    assert!(
        lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(4),
        "{side:?}: the trickling connection lasted {lasted:?}"
    );

    // Past the head clock, the kept-alive connection is still open ...
    tokio::time::sleep_until((answered + Duration::from_millis(1500)).into()).await;
    assert_eq!(
        closed_within(&mut kept, Duration::from_millis(50)).await,
        None,
        "{side:?}: a kept-alive connection was closed before its idle timeout"
    );
    // ... and usable; then, idle again, it is closed by the idle clock.
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_answer(&mut kept).await;
    let answered = Instant::now();
    let took = closed_within(&mut kept, Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("{side:?}: the idle connection was never closed"));
    assert!(
        answered.elapsed() >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "{side:?}: closed {took:?} after its last answer"
    );

    let silent_reason = match side {
        Side::Plain => "header_timeout",
        Side::Tls => "handshake_timeout",
    };
    assert!(l.dropped(silent_reason) >= 1.0, "{}", l.metrics.render());
    assert!(l.dropped("header_timeout") >= 2.0, "{}", l.metrics.render());
    assert_eq!(l.dropped("idle_timeout"), 1.0, "{}", l.metrics.render());
    l.wait_open("0", |n| n == 0.0).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn plain_slow_clients_are_closed_when_their_clock_runs_out() {
    slow_clients_are_closed_when_their_clock_runs_out(Side::Plain).await;
}

#[tokio::test]
async fn tls_slow_clients_are_closed_when_their_clock_runs_out() {
    slow_clients_are_closed_when_their_clock_runs_out(Side::Tls).await;
}

// ---- the cap ----

/// Attack tasks that keep `count` connections of one kind open, reconnecting whenever the
/// server closes one; they count the closes.
struct Attack {
    running: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Attack {
    /// Ends the attack (its sockets close); how many connections the server had closed.
    async fn stop(self) -> usize {
        self.running.store(false, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.closed.load(Ordering::SeqCst)
    }
}

/// `count` connections that say nothing (`trickling`: that trickle a head in).
fn attack(l: &Arc<Listener>, count: usize, trickling: bool) -> Attack {
    let running = Arc::new(AtomicBool::new(true));
    let closed = Arc::new(AtomicUsize::new(0));
    let tasks = (0..count)
        .map(|_| {
            let (l, running, closed) = (l.clone(), running.clone(), closed.clone());
            tokio::spawn(async move {
                while running.load(Ordering::SeqCst) {
                    if trickling {
                        // An error: closed during the TLS handshake (made room for another).
                        if let Ok(io) = l.connect().await {
                            trickle(io).await;
                        }
                    } else {
                        let mut io = l.tcp().await;
                        let _ = closed_within(&mut io, Duration::from_secs(3600)).await;
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    Attack {
        running,
        closed,
        tasks,
    }
}

async fn held_connections_over_the_cap_do_not_keep_real_requests_out(side: Side) {
    const CAP: usize = 32;
    // Clocks longer than the grace period, so that connections are also closed for room.
    let http = HttpConfig {
        max_connections: CAP,
        header_read_timeout_s: 2,
        ..HttpConfig::default()
    };
    let l = Arc::new(start(side, http, 2).await);
    let idle = attack(&l, 48, false);
    let slow = attack(&l, 48, true);
    // The attack holds the cap ...
    l.wait_open("the cap", |n| n == CAP as f64).await;
    // ... and real requests are answered, one after another, each on a new connection.
    for _ in 0..6 {
        l.real_request().await;
        let open = l.open_connections().unwrap();
        assert!(open <= CAP as f64, "{open} connections open");
    }
    let (idle_closed, slow_closed) = (idle.stop().await, slow.stop().await);
    assert!(
        idle_closed > 0 && slow_closed > 0,
        "{idle_closed} {slow_closed}"
    );
    // Room was made by closing the oldest attack connections (each after its grace second,
    // before its 2 s clock), never by turning a connection away.
    assert!(l.dropped("evicted") > 0.0, "{}", l.metrics.render());
    assert_eq!(l.dropped("refused"), 0.0, "{}", l.metrics.render());
    // The attackers' sockets are gone: so are the server's.
    l.wait_open("0", |n| n == 0.0).await;
    let l = Arc::into_inner(l).expect("the attack tasks have ended");
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn plain_held_connections_over_the_cap_do_not_keep_real_requests_out() {
    held_connections_over_the_cap_do_not_keep_real_requests_out(Side::Plain).await;
}

#[tokio::test]
async fn tls_held_connections_over_the_cap_do_not_keep_real_requests_out() {
    held_connections_over_the_cap_do_not_keep_real_requests_out(Side::Tls).await;
}

/// A router whose `/slow` holds each request until a permit is released.
fn slow_app(entered: Arc<Semaphore>, release: Arc<Semaphore>) -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            // As the authentication middleware does for a verified credential.
            get(move |Extension(hold): Extension<Hold>| async move {
                hold.authenticated();
                entered.add_permits(1);
                release.acquire().await.unwrap().forget();
                "done"
            }),
        )
}

struct Plain {
    addr: SocketAddr,
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

/// [`server::serve`] on plain HTTP with `app` and `limits`.
async fn serve_plain(app: Router, limits: ConnectionLimits) -> Plain {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::new().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let m = metrics.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        server::serve(listener, app, Transport::Plain, limits, m, shutdown).await
    });
    Plain {
        addr,
        metrics,
        stop: Some(stop),
        task,
    }
}

fn get_on_new_connection(addr: SocketAddr, path: &str) -> JoinHandle<reqwest::Result<String>> {
    let url = format!("http://{addr}{path}");
    tokio::spawn(async move {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    })
}

#[tokio::test]
async fn an_authenticated_request_in_flight_is_never_closed_for_room_and_with_all_held_new_connections_are_refused(
) {
    let (entered, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let limits = ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    };
    let s = serve_plain(slow_app(entered.clone(), release.clone()), limits).await;
    let open = |m: &Metrics| gauge(m, metrics::HTTP_OPEN_CONNECTIONS, &[("listener", "plain")]);
    let dropped = |m: &Metrics, reason| {
        gauge(
            m,
            metrics::HTTP_CONNECTIONS_DROPPED,
            &[("listener", "plain"), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };

    // One connection idles; one has a request in flight.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let first = get_on_new_connection(s.addr, "/slow");
    entered.acquire().await.unwrap().forget();
    assert_eq!(open(&s.metrics), Some(2.0));
    // At the cap, the next connection closes the idle one, not the busy one.
    let second = get_on_new_connection(s.addr, "/slow");
    entered.acquire().await.unwrap().forget();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "the idle connection was not closed for room"
    );
    assert_eq!(dropped(&s.metrics, "evicted"), 1.0);
    // Both are busy: a new connection is closed at once, unanswered.
    let mut refused = TcpStream::connect(s.addr).await.unwrap();
    assert!(
        closed_within(&mut refused, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection over the cap was kept while every connection was busy"
    );
    assert!(get_on_new_connection(s.addr, "/fast")
        .await
        .unwrap()
        .is_err());
    assert!(dropped(&s.metrics, "refused") >= 2.0);
    assert_eq!(open(&s.metrics), Some(2.0));

    // The requests in flight are answered; then there is room again.
    release.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), "done");
    assert_eq!(second.await.unwrap().unwrap(), "done");
    assert_eq!(
        get_on_new_connection(s.addr, "/fast")
            .await
            .unwrap()
            .unwrap(),
        "fast"
    );

    let mut s = s;
    let _ = s.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_the_request_in_flight_but_not_for_slow_clients() {
    let (entered, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    // A head clock far longer than the waits below: the trickling client must be closed by
    // shutdown itself, not by its clock.
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        ..ConnectionLimits::default()
    };
    let mut s = serve_plain(slow_app(entered.clone(), release.clone()), limits).await;
    let in_flight = get_on_new_connection(s.addr, "/slow");
    entered.acquire().await.unwrap().forget();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let slow_client = tokio::spawn(trickle(Box::new(TcpStream::connect(s.addr).await.unwrap())));
    // Let the trickle begin its head.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let began = Instant::now();
    let _ = s.stop.take().unwrap().send(());
    // The idle connection and the trickling one (its head still arriving) close at once.
    assert!(closed_within(&mut idle, Duration::from_secs(2))
        .await
        .is_some());
    tokio::time::timeout(Duration::from_secs(3), slow_client)
        .await
        .expect("shutdown waited on a trickling client")
        .unwrap();
    // The request in flight keeps the server from returning ...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !s.task.is_finished(),
        "returned before the request in flight was answered"
    );
    // ... until it is answered.
    release.add_permits(1);
    assert_eq!(in_flight.await.unwrap().unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("the server returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(6));
}

// ---- the binary, with fewer open files than the attack has connections ----

/// `scim-bridge serve` (the sandbox) under `ulimit -n FILES`.
struct Limited {
    child: Child,
    base: String,
    token: String,
    stderr: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn start_limited(files: u32) -> Limited {
    let dir = tempfile::tempdir().unwrap();
    let mut sh = Command::new("sh");
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
            sh.env_remove(k);
        }
    }
    let mut child = sh
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
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
    let (mut base, mut token) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while base.is_none() || token.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stdout.recv_timeout(left).expect("the sandbox banner");
        base = base.or_else(|| field(&line, "SCIM base URL"));
        token = token.or_else(|| field(&line, "Bearer token"));
    }
    Limited {
        child,
        base: base.unwrap(),
        token: token.unwrap(),
        stderr,
        _dir: dir,
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_keeps_answering_with_more_idle_connections_than_open_files() {
    const FILES: u32 = 256;
    let bridge = start_limited(FILES);
    let addr: SocketAddr = bridge
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/scim/v2")
        .parse()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(ANSWER_WITHIN)
        .build()
        .unwrap();
    let real_request = || async {
        let began = Instant::now();
        let res = client
            .get(format!("{}/ServiceProviderConfig", bridge.base))
            .bearer_auth(&bridge.token)
            .send()
            .await;
        let took = began.elapsed();
        let res = res.unwrap_or_else(|e| panic!("no answer after {took:?}: {e:?}"));
        assert_eq!(res.status(), 200);
        took
    };
    real_request().await;

    // More idle connections than the process has files, held open.
    let mut held = Vec::new();
    for _ in 0..(FILES as usize + 64) {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    for i in 0..5 {
        let took = real_request().await;
        assert!(took < ANSWER_WITHIN, "request {i} answered after {took:?}");
    }
    drop(held);

    // The cap was lowered to fit the files (logged once), and accepts never failed for want
    // of them.
    let mut lowered = 0;
    let mut accept_failures = 0;
    while let Ok(line) = bridge.stderr.recv_timeout(Duration::from_millis(500)) {
        lowered += usize::from(line.contains("http.max_connections lowered"));
        accept_failures +=
            usize::from(line.contains("accept failed") || line.contains("accept error"));
    }
    assert_eq!(lowered, 1);
    assert_eq!(accept_failures, 0);
}

// ---- the deployment files ----

/// The systemd unit and compose give the bridge the open files its default cap needs.
#[test]
fn the_deploy_files_give_the_bridge_room_for_its_connections() {
    let needed = HttpConfig::default().max_connections as u64 + server::RESERVED_FILES;
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");

    let unit = std::fs::read_to_string(deploy.join("systemd/scim-bridge.service")).unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE")
        .trim()
        .parse()
        .unwrap();
    assert!(limit >= needed, "LimitNOFILE={limit}, needed {needed}");

    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy.join("compose.yaml")).unwrap())
            .unwrap();
    let nofile = &compose["x-bridge"]["ulimits"]["nofile"];
    for end in ["soft", "hard"] {
        let v = nofile[end]
            .as_u64()
            .unwrap_or_else(|| panic!("compose: no nofile.{end}"));
        assert!(v >= needed, "compose nofile.{end}={v}, needed {needed}");
    }
}
