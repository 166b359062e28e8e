//! The SCIM listener's accept loop, plain or TLS: HTTP/1.1 connections served by hyper under
//! limits that keep clients who send nothing, or trickle their request, from holding the
//! process (a connection is a file descriptor, and the process has a limited number).
//!
//! Every connection is in one phase, each with its own clock:
//! - *handshake* (TLS): `http.tls.handshake_timeout_s` from the connection's start;
//! - *head*: waiting for a request head, or reading one, `http.header_read_timeout_s` from the
//!   connection's start (after the handshake), or on a kept-alive connection from the first
//!   byte of the next head, however slowly the rest trickles in;
//! - *idle*: kept alive after an answer, `http.idle_timeout_s` until the first byte of the
//!   next request;
//! - *busy*: a request in flight, from its head until its answer is handed over; no clock
//!   here (`http.request_timeout_s` bounds the handler, the body limits bound the body);
//! - *writing*: the answer is handed over and hyper is still writing it to the socket (a large
//!   page to a slow or distant client), until the last byte is flushed; closed when the
//!   writing makes no progress for `http.idle_timeout_s` (a client that stops reading).
//!
//! A connection whose clock runs out is closed (for TCP a FIN: the client reads EOF). At most
//! `http.max_connections` are open: a new one closes the connection opened longest ago that
//! is not *held*, so a client holding the cap cannot keep a real client out; only when every
//! connection is held is the new one closed at once. A connection is held while it is busy or
//! writing for a request whose credential was verified ([`Hold::authenticated`], called by the
//! authentication middleware): an IdP's request, and its answer to the last byte, is never
//! cut off for room. A request without a verified credential (a health probe, a token
//! request whose form body is still arriving, a guess) holds nothing: a client that trickles
//! unauthenticated bodies, or pipelines requests and reads the answers slowly, is closed for
//! room like an idle one. A connection is safe from that for its first second
//! ([`EVICTION_GRACE`]), time for a real client to send its request; a new one waits
//! meanwhile, so a client that reconnects as fast as it is closed cannot churn a real
//! client's connection away.
//! A failed accept (out of open files) closes the oldest connection that is not held, grace
//! or not, then waits a moment; such failures are logged at most every 10 s.
//! Shutdown stops accepting, closes connections without a request in flight, and returns once
//! the requests in flight are answered. (The metrics listener is not served here: it belongs
//! on an internal network.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::http::ApiError;
use crate::telemetry::metrics::Metrics;

/// The connection limits of `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once (`http.max_connections`).
    pub max_connections: usize,
    /// Time to send a request head (`http.header_read_timeout_s`).
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request (`http.idle_timeout_s`).
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_config(c: &HttpConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_read_timeout: Duration::from_secs(c.header_read_timeout_s),
            idle_timeout: Duration::from_secs(c.idle_timeout_s),
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// What a connection speaks below HTTP.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// TLS with the configuration current when the connection arrives (the sender swaps in a
    /// reloaded certificate).
    Tls {
        config: watch::Receiver<Arc<ServerConfig>>,
        handshake_timeout: Duration,
    },
}

impl Transport {
    /// The `listener` label of the connection metrics.
    fn label(&self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls { .. } => "tls",
        }
    }
}

/// How long a failed accept waits before the next one, after closing a connection to free
/// its file, and when there was none to close.
const ACCEPT_RETRY_AFTER_EVICTION: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a connection is safe from being closed for room, from the start of its phase: time
/// for a real client, even one far away, to finish its TLS handshake and send its request. It
/// also bounds how fast a client that reconnects at once can churn the table: at most
/// `max_connections` closes per grace period, and a new connection waits meanwhile (in the
/// listen queue, in arrival order).
const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Fewest seconds between two log lines about failed accepts, and about the connection cap.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting (the listener is
/// closed), closes the connections without a request in flight and returns once the requests
/// in flight are answered. Handlers get `ConnectInfo<SocketAddr>`, the peer's address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    transport: Transport,
    limits: ConnectionLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let label = transport.label();
    let handshake_timeout = match &transport {
        Transport::Plain => Duration::ZERO,
        Transport::Tls {
            handshake_timeout, ..
        } => *handshake_timeout,
    };
    let shared = Arc::new(Shared {
        label,
        metrics,
        max_connections: limits.max_connections.max(1),
        clocks: Clocks {
            handshake: handshake_timeout,
            head: limits.header_read_timeout,
            idle: limits.idle_timeout,
        },
        conns: Mutex::new(HashMap::new()),
        freed: Notify::new(),
    });
    shared.metrics.open_connections(label, 0);
    // Each connection task holds a receiver; `closed()` tells when the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_log = Every::new(ACCEPT_LOG_EVERY);
    let mut cap_log = Every::new(CAP_LOG_EVERY);
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    shared.metrics.accept_error(label);
                    // Out of files: closing an idle connection frees one for the next accept.
                    let freed = out_of_files(&e) && shared.evict_oldest();
                    if let Some(suppressed) = accept_log.due() {
                        tracing::warn!(
                            listener = label,
                            error = %e,
                            closed_an_idle_connection = freed,
                            more_errors_since_last_line = suppressed,
                            "accept failed; waiting a moment (logged at most every {} s)",
                            ACCEPT_LOG_EVERY.as_secs()
                        );
                    }
                    let pause = if freed { ACCEPT_RETRY_AFTER_EVICTION } else { ACCEPT_BACKOFF };
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let phase = match transport {
            Transport::Plain => Phase::Head,
            Transport::Tls { .. } => Phase::Handshake,
        };
        let mut stopping = false;
        let admitted = loop {
            match shared.admit(next_id, phase) {
                Admission::Admitted(conn) => break Some(conn),
                Admission::Evicted(conn) => {
                    if let Some(more) = cap_log.due() {
                        tracing::warn!(
                            listener = label,
                            max_connections = shared.max_connections,
                            more_since_last_line = more,
                            "http.max_connections reached: closing the oldest connection \
                             without a request in flight to admit a new one"
                        );
                    }
                    break Some(conn);
                }
                Admission::Refused => {
                    if let Some(more) = cap_log.due() {
                        tracing::warn!(
                            listener = label,
                            max_connections = shared.max_connections,
                            more_since_last_line = more,
                            "http.max_connections reached and every connection has a request \
                             in flight: new connections are closed"
                        );
                    }
                    break None;
                }
                // The connections that could make room are all in their grace period: this
                // one waits (and the ones behind it in the listen queue) until one is not.
                Admission::WaitUntil(at) => tokio::select! {
                    () = &mut shutdown => {
                        stopping = true;
                        break None;
                    }
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.freed.notified() => {}
                },
            }
        };
        let Some(conn) = admitted else {
            drop(stream);
            if stopping {
                break;
            }
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            conn,
            shared.clone(),
            transport.clone(),
            app.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    drop(stop_rx);
    stop_tx.send_replace(true);
    stop_tx.closed().await;
    Ok(())
}

/// Errors of one connection that came and went before it was accepted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Whether a failed accept ran out of open files or socket memory.
fn out_of_files(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(e),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        true
    }
}

/// Lets one log line through per period, counting the ones held back.
struct Every {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Every {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < self.period => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// The clocks of the phases.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    handshake: Duration,
    head: Duration,
    idle: Duration,
}

/// What one listener shares with its connection tasks.
struct Shared {
    label: &'static str,
    metrics: Metrics,
    max_connections: usize,
    clocks: Clocks,
    /// The open connections by id (ids grow with accept order).
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified when a connection ends (there may be room).
    freed: Notify,
}

enum Admission {
    Admitted(Arc<Conn>),
    /// Admitted after closing another connection.
    Evicted(Arc<Conn>),
    /// At the cap, and the connection that could make room is in its grace period until then.
    WaitUntil(Instant),
    /// At the cap with every connection busy.
    Refused,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection, making room at the cap.
    fn admit(&self, id: u64, phase: Phase) -> Admission {
        let mut conns = self.conns();
        let mut evicted = false;
        if conns.len() >= self.max_connections {
            match self.evict_oldest_of(&mut conns, Some(EVICTION_GRACE)) {
                Eviction::Closed => evicted = true,
                Eviction::NotBefore(at) => return Admission::WaitUntil(at),
                Eviction::NoneIdle => {
                    drop(conns);
                    self.metrics.connection_dropped(self.label, "refused");
                    return Admission::Refused;
                }
            }
        }
        let conn = Arc::new(Conn::new(id, phase));
        conns.insert(id, conn.clone());
        let open = conns.len();
        drop(conns);
        self.metrics.open_connections(self.label, open);
        if evicted {
            Admission::Evicted(conn)
        } else {
            Admission::Admitted(conn)
        }
    }

    /// Closes the connection that has waited longest without a request in flight, grace
    /// period or not (the process is out of files); false when every connection is busy.
    fn evict_oldest(&self) -> bool {
        let mut conns = self.conns();
        let evicted = self.evict_oldest_of(&mut conns, None) == Eviction::Closed;
        let open = conns.len();
        drop(conns);
        if evicted {
            self.metrics.open_connections(self.label, open);
        }
        evicted
    }

    /// Closes the connection that has waited longest in a phase other than busy, if it has
    /// waited at least `grace`.
    fn evict_oldest_of(
        &self,
        conns: &mut HashMap<u64, Arc<Conn>>,
        grace: Option<Duration>,
    ) -> Eviction {
        // A candidate can turn busy between the scan and the close; then the next one is taken.
        for _ in 0..8 {
            let Some(((_, since), id)) = conns
                .iter()
                .filter_map(|(id, c)| c.evictable_since().map(|rank| (rank, *id)))
                .min()
            else {
                return Eviction::NoneIdle;
            };
            if let Some(grace) = grace {
                let at = since + grace;
                if at > Instant::now() {
                    return Eviction::NotBefore(at);
                }
            }
            let closed = conns.get(&id).is_some_and(|c| c.close());
            if closed {
                conns.remove(&id);
                self.metrics.connection_dropped(self.label, "evicted");
                return Eviction::Closed;
            }
        }
        Eviction::NoneIdle
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns();
        if conns.remove(&id).is_some() {
            let open = conns.len();
            drop(conns);
            self.metrics.open_connections(self.label, open);
            self.freed.notify_one();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eviction {
    Closed,
    /// The oldest candidate is in its grace period until then.
    NotBefore(Instant),
    /// Every connection has a request in flight.
    NoneIdle,
}

/// Takes a connection out of the listener's table when its task ends, however it ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.remove(self.id);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Head,
    Idle,
    Busy,
    /// The last answer is handed to hyper and not yet flushed to the socket.
    Writing,
    /// Chosen to make room; its task closes it.
    Closing,
}

/// Why a connection was closed before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    HandshakeTimeout,
    HeaderTimeout,
    IdleTimeout,
    SendTimeout,
    Evicted,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::HandshakeTimeout => "handshake_timeout",
            Dropped::HeaderTimeout => "header_timeout",
            Dropped::IdleTimeout => "idle_timeout",
            Dropped::SendTimeout => "send_timeout",
            Dropped::Evicted => "evicted",
        }
    }
}

/// One connection's phase, shared by its task, its I/O, its requests and the accept loop.
struct Conn {
    id: u64,
    state: Mutex<ConnState>,
    /// Set while idle: the next bytes read begin a request head.
    awaiting_head: AtomicBool,
    /// Set while writing: bytes written restart the clock, a flush ends the phase.
    writing: AtomicBool,
    /// Wakes the watchdog when the phase changes.
    changed: Notify,
}

struct ConnState {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// When the connection was accepted: the eviction grace and order count from it, once
    /// (a grace that restarted with each phase would let a client sending cheap requests under
    /// a second apart keep every connection out of reach).
    opened: Instant,
    /// Counts phase changes, so that a watchdog waking at a deadline knows whether the
    /// phase it timed is still the current one.
    generation: u64,
    in_flight: usize,
    /// The request in flight had its credential verified.
    held_request: bool,
    /// The request in flight is having its credential verified (a JWKS fetch, a password
    /// hash): closed for room only when nothing else can be.
    verifying: bool,
    /// An answer not yet flushed belongs to such a request.
    held_answer: bool,
    /// While an answer is handed over and not yet flushed: when it last made progress. Its
    /// clock runs in any phase: hyper may dispatch a pipelined request (busy) while an earlier
    /// answer still waits in its buffer for a client that stopped reading.
    unflushed_since: Option<Instant>,
}

/// Which connection is closed first for room (the least): any not being verified, oldest
/// first; then those whose credential is being verified, newest first (an IdP's kept-alive
/// connection is usually the oldest, and a flood of requests waiting on a JWKS fetch is new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Open(Instant),
    Verifying(std::cmp::Reverse<Instant>),
}

impl ConnState {
    /// Not to be closed for room: a request with a verified credential is in flight, or its
    /// answer is still being written.
    fn held(&self) -> bool {
        self.held_request || self.held_answer
    }
}

impl Conn {
    fn new(id: u64, phase: Phase) -> Self {
        Self {
            id,
            state: Mutex::new(ConnState {
                phase,
                since: Instant::now(),
                opened: Instant::now(),
                generation: 0,
                in_flight: 0,
                held_request: false,
                verifying: false,
                held_answer: false,
                unflushed_since: None,
            }),
            awaiting_head: AtomicBool::new(false),
            writing: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `phase` (the caller holds the state), then wakes the watchdog.
    fn enter(&self, s: &mut ConnState, phase: Phase) {
        s.phase = phase;
        s.since = Instant::now();
        self.touch(s);
    }

    /// A clock changed: the watchdog looks again.
    fn touch(&self, s: &mut ConnState) {
        s.generation += 1;
        self.changed.notify_one();
    }

    fn handshake_done(&self) {
        let mut s = self.state();
        if s.phase == Phase::Handshake {
            self.enter(&mut s, Phase::Head);
        }
    }

    /// Bytes arrived: on an idle connection they begin the next request head.
    fn bytes_read(&self) {
        if self.awaiting_head.swap(false, Ordering::AcqRel) {
            let mut s = self.state();
            if s.phase == Phase::Idle {
                self.enter(&mut s, Phase::Head);
            }
        }
    }

    /// A request head was read; `None` when the connection is being closed.
    fn begin_request(self: &Arc<Self>) -> Option<InFlight> {
        let mut s = self.state();
        if s.phase == Phase::Closing {
            return None;
        }
        s.in_flight += 1;
        // Each request earns its own hold.
        s.held_request = false;
        s.verifying = false;
        self.awaiting_head.store(false, Ordering::Release);
        if s.phase != Phase::Busy {
            self.enter(&mut s, Phase::Busy);
        }
        Some(InFlight(self.clone()))
    }

    /// A request's answer is handed to hyper: the connection writes it out.
    fn end_request(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.held_answer |= s.held_request;
        s.held_request = false;
        s.verifying = false;
        s.unflushed_since = Some(Instant::now());
        self.writing.store(true, Ordering::Release);
        if s.in_flight == 0 && s.phase == Phase::Busy {
            self.enter(&mut s, Phase::Writing);
        } else {
            self.touch(&mut s);
        }
    }

    /// Bytes were written: an unflushed answer's clock starts again.
    fn bytes_written(&self) {
        if self.writing.load(Ordering::Acquire) {
            let mut s = self.state();
            if s.unflushed_since.is_some() {
                s.unflushed_since = Some(Instant::now());
                self.touch(&mut s);
            }
        }
    }

    /// Everything hyper had to write is flushed: the answers are out, and a writing
    /// connection is idle.
    fn flushed(&self) {
        if self.writing.swap(false, Ordering::AcqRel) {
            let mut s = self.state();
            s.unflushed_since = None;
            s.held_answer = false;
            if s.phase == Phase::Writing {
                self.enter(&mut s, Phase::Idle);
                self.awaiting_head.store(true, Ordering::Release);
            } else {
                self.touch(&mut s);
            }
        }
    }

    /// The request in flight had its credential verified.
    /// False when the connection was chosen to close meanwhile (its request will not be
    /// answered on it).
    fn hold(&self) -> bool {
        let mut s = self.state();
        if s.phase == Phase::Busy {
            s.held_request = true;
            s.verifying = false;
        }
        s.phase != Phase::Closing
    }

    /// The request in flight is having its credential verified.
    fn verifying(&self) {
        let mut s = self.state();
        if s.phase == Phase::Busy && !s.held_request {
            s.verifying = true;
        }
    }

    /// Whether shutdown waits for this connection: a request is in a handler and no answer
    /// waits unflushed before it (hyper runs a pipelined request only once the answers before
    /// it are written, so behind a client that stopped reading it would wait out the writing
    /// clock), or a held answer is still being written.
    fn draining_at_shutdown(&self) -> bool {
        let s = self.state();
        (s.phase == Phase::Busy && s.unflushed_since.is_none()) || s.held()
    }

    /// If the connection may be closed to make room now: whether its request's credential
    /// is being verified (such connections go last), and when it was opened.
    fn evictable_since(&self) -> Option<(Rank, Instant)> {
        let s = self.state();
        match s.phase {
            Phase::Handshake | Phase::Head | Phase::Idle => Some((Rank::Open(s.opened), s.opened)),
            Phase::Busy | Phase::Writing if !s.held() => {
                let rank = if s.verifying {
                    Rank::Verifying(std::cmp::Reverse(s.opened))
                } else {
                    Rank::Open(s.opened)
                };
                Some((rank, s.opened))
            }
            Phase::Busy | Phase::Writing | Phase::Closing => None,
        }
    }

    /// Marks the connection for closing unless it is held (or already closing).
    fn close(&self) -> bool {
        let mut s = self.state();
        match s.phase {
            Phase::Closing => false,
            Phase::Busy | Phase::Writing if s.held() => false,
            _ => {
                self.enter(&mut s, Phase::Closing);
                true
            }
        }
    }

    /// Completes when the connection must be closed: its phase's clock ran out, or it was
    /// chosen to make room.
    async fn watchdog(&self, clocks: Clocks) -> Dropped {
        loop {
            let (deadline, generation) = {
                let s = self.state();
                let phase = match s.phase {
                    Phase::Closing => return Dropped::Evicted,
                    Phase::Busy | Phase::Writing => None,
                    Phase::Handshake => {
                        Some((s.since + clocks.handshake, Dropped::HandshakeTimeout))
                    }
                    Phase::Head => Some((s.since + clocks.head, Dropped::HeaderTimeout)),
                    Phase::Idle => Some((s.since + clocks.idle, Dropped::IdleTimeout)),
                };
                // An answer that makes no progress: in any phase (see `unflushed_since`).
                let stalled = s
                    .unflushed_since
                    .map(|at| (at + clocks.idle, Dropped::SendTimeout));
                let deadline = match (phase, stalled) {
                    (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                    (a, b) => a.or(b),
                };
                (deadline, s.generation)
            };
            match deadline {
                None => self.changed.notified().await,
                Some((at, why)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {
                        if self.state().generation == generation {
                            return why;
                        }
                    }
                    () = self.changed.notified() => {}
                },
            }
        }
    }
}

/// A request's handle on its connection, in its extensions when the request came through
/// [`serve`].
#[derive(Clone)]
pub struct Hold(Arc<Conn>);

impl Hold {
    /// The request's credential is verified: its connection is not closed to make room for
    /// others until the answer is written.
    /// False when the connection was chosen to close before: the request should not start
    /// work it cannot answer.
    pub fn authenticated(&self) -> bool {
        self.0.hold()
    }

    /// The request's credential is being checked: its connection goes last when one must be
    /// closed for room (an IdP's request waiting for a JWKS fetch or a password hash).
    pub fn verifying_request<B>(request: &Request<B>) {
        if let Some(hold) = request.extensions().get::<Hold>() {
            hold.0.verifying();
        }
    }

    /// Calls [`Hold::authenticated`] on the request's connection, if it has one; false when
    /// that connection is closing (answer [`closing`] and do nothing).
    pub fn authenticated_request<B>(request: &Request<B>) -> bool {
        request
            .extensions()
            .get::<Hold>()
            .is_none_or(Hold::authenticated)
    }
}

/// A request in flight on its connection, from its head until its answer's body is dropped
/// (handed to hyper to write, or abandoned).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// One connection's task: the TLS handshake if any, then HTTP/1.1 until the client leaves, a
/// clock runs out, the connection is chosen to make room, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    transport: Transport,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _registered = Registered {
        shared: shared.clone(),
        id: conn.id,
    };
    let clocks = shared.clocks;
    let dropped = match transport {
        Transport::Plain => serve_http(stream, peer, &conn, clocks, app, stop).await,
        Transport::Tls { config, .. } => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.borrow().clone());
            let handshake = tokio::select! {
                done = acceptor.accept(stream) => Ok(done),
                why = conn.watchdog(clocks) => Err(why),
                () = stopped(&mut stop) => return,
            };
            match handshake {
                Err(why) => Some(why),
                Ok(Err(e)) => {
                    // Plain HTTP on this port, scanners, clients that distrust the certificate.
                    tracing::debug!(%peer, error = %e, "TLS connection not accepted");
                    None
                }
                Ok(Ok(tls)) => {
                    conn.handshake_done();
                    serve_http(tls, peer, &conn, clocks, app, stop).await
                }
            }
        }
    };
    if let Some(why) = dropped {
        tracing::debug!(%peer, listener = shared.label, reason = why.label(), "connection closed");
        // Evictions are counted where they are decided.
        if why != Dropped::Evicted {
            shared.metrics.connection_dropped(shared.label, why.label());
        }
    }
}

/// Completes once shutdown has begun.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: shutdown as well.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// HTTP/1.1 on one connection; `Some` when the connection was cut short.
async fn serve_http<IO>(
    io: IO,
    peer: SocketAddr,
    conn: &Arc<Conn>,
    clocks: Clocks,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> Option<Dropped>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = {
        let conn = conn.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let in_flight = conn.begin_request();
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(Hold(conn.clone()));
            let app = app.clone();
            async move {
                let Some(in_flight) = in_flight else {
                    return Ok::<_, Infallible>(closing().map(|body| Tracked {
                        body,
                        _in_flight: None,
                    }));
                };
                let res = match app.oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                };
                Ok(res.map(|body| Tracked {
                    body,
                    _in_flight: Some(in_flight),
                }))
            }
        })
    };
    let io = TokioIo::new(Watched {
        io,
        conn: conn.clone(),
    });
    let mut builder = http1::Builder::new();
    // hyper's own header timer would run while a kept-alive connection idles too; the
    // watchdog times heads and idleness apart.
    builder.header_read_timeout(None);
    let http = builder.serve_connection(io, requests);
    tokio::pin!(http);
    let mut draining = false;
    loop {
        tokio::select! {
            served = http.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return None;
            }
            () = stopped(&mut stop), if !draining => {
                // A request being worked on is answered first (its handler is bounded by the
                // request deadline), and so is a verified credential's answer still being
                // written; anything else (idle, a head still arriving, a stranger's answer to
                // a client that stopped reading) closes now, so shutdown never waits on a
                // stranger.
                if !conn.draining_at_shutdown() {
                    return None;
                }
                draining = true;
                http.as_mut().graceful_shutdown();
            }
            why = conn.watchdog(clocks) => return Some(why),
        }
    }
}

/// The answer to a request that arrived on a connection chosen to make room.
pub fn closing() -> Response<Body> {
    let mut res = ApiError::from(crate::bridge::BridgeError::contended(
        "The server is at its connection limit; retry on a new connection.",
    ))
    .into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// An answer's body that marks its request done when dropped.
struct Tracked {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's byte stream, telling the connection when bytes arrive.
struct Watched<IO> {
    io: IO,
    conn: Arc<Conn>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_read();
        }
        read
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.bytes_written();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.bytes_written();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// hyper flushes its stream once it has written all it holds, so a completed flush after
    /// an answer was handed over means the answer is out.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.conn.flushed();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Open files the process keeps besides its client connections: the store's files or
/// connections, partner connections, listeners, the runtime.
pub const RESERVED_FILES: u64 = 256;

/// Makes room in the process's open-file limit (`RLIMIT_NOFILE`) for `max_connections` client
/// connections plus [`RESERVED_FILES`]: raises the soft limit as far as needed and the hard
/// limit allows. Returns the cap that fits: `max_connections`, or less (with a warning) when
/// the limit cannot be raised far enough, so that a full listener never starves the store
/// and the partner client of files.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        let mut fit = fit_files(before.current, before.maximum, max_connections);
        if let Some(soft) = fit.raise_soft_to {
            let raised = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum: before.maximum,
                },
            );
            match raised {
                Ok(()) => tracing::info!(
                    from = before.current,
                    to = soft,
                    "raised the open-file limit for http.max_connections"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot raise the open-file limit");
                    fit = fit_files(before.current, before.current, max_connections);
                }
            }
        }
        if fit.max_connections < max_connections {
            tracing::warn!(
                max_connections = fit.max_connections,
                configured = max_connections,
                open_file_limit = ?getrlimit(Resource::Nofile).current,
                reserved = RESERVED_FILES,
                "http.max_connections lowered to fit the open-file limit; raise the limit \
                 (systemd LimitNOFILE=, docker --ulimit nofile=) to serve more"
            );
        }
        fit.max_connections
    }
    #[cfg(not(unix))]
    {
        max_connections
    }
}

/// What [`fit_open_file_limit`] does with a soft and a hard limit (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileFit {
    raise_soft_to: Option<u64>,
    max_connections: usize,
}

fn fit_files(soft: Option<u64>, hard: Option<u64>, max_connections: usize) -> FileFit {
    let wanted = max_connections as u64;
    let need = wanted.saturating_add(RESERVED_FILES);
    let Some(soft) = soft.filter(|soft| *soft < need) else {
        return FileFit {
            raise_soft_to: None,
            max_connections,
        };
    };
    let limit = hard.map_or(need, |hard| hard.min(need)).max(soft);
    let cap = if limit >= need {
        wanted
    } else {
        // A quarter of a small limit, at least one connection: the rest stays for the store,
        // the partner connections (and, in the sandbox, the emulator's own sockets).
        limit.saturating_sub(RESERVED_FILES).max(limit / 4).max(1)
    };
    FileFit {
        raise_soft_to: (limit > soft).then_some(limit),
        max_connections: usize::try_from(cap).unwrap_or(max_connections),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(max_connections: usize) -> Shared {
        Shared {
            label: "plain",
            metrics: Metrics::off(),
            max_connections,
            clocks: Clocks {
                handshake: Duration::from_secs(10),
                head: Duration::from_secs(10),
                idle: Duration::from_secs(75),
            },
            conns: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        }
    }

    fn admitted(a: Admission) -> Arc<Conn> {
        match a {
            Admission::Admitted(c) => c,
            _ => panic!("not admitted at once"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn among_requests_being_verified_the_newest_makes_room_and_a_late_hold_is_refused() {
        let l = listener(3);
        let idp = admitted(l.admit(1, Phase::Head));
        tokio::time::advance(Duration::from_millis(100)).await;
        let flood = admitted(l.admit(2, Phase::Head));
        tokio::time::advance(Duration::from_millis(100)).await;
        let last = admitted(l.admit(3, Phase::Head));
        let _idp = idp.begin_request().unwrap();
        idp.verifying();
        let _flood = flood.begin_request().unwrap();
        flood.verifying();
        let _last = last.begin_request().unwrap();
        last.verifying();
        tokio::time::advance(EVICTION_GRACE * 2).await;
        assert!(matches!(l.admit(4, Phase::Head), Admission::Evicted(_)));
        // The newest goes first, not the IdP's kept-alive connection opened first.
        assert_eq!(last.state().phase, Phase::Closing);
        assert_eq!(idp.state().phase, Phase::Busy);
        assert_eq!(flood.state().phase, Phase::Busy);
        // A credential found valid on a connection already closing is not held: the request
        // is answered "closing" instead of starting work nobody will hear of.
        assert!(!last.hold());
        assert!(idp.hold());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_oldest_idle_connection_past_its_grace_makes_room_never_a_busy_one() {
        let step = Duration::from_millis(100);
        let l = listener(3);
        let first = admitted(l.admit(1, Phase::Head));
        tokio::time::advance(step).await;
        let second = admitted(l.admit(2, Phase::Head));
        tokio::time::advance(step).await;
        let third = admitted(l.admit(3, Phase::Handshake));
        // The oldest has an authenticated request in flight: the second is next, once a
        // second after its opening.
        let busy = first.begin_request().unwrap();
        first.hold();
        let at = match l.admit(4, Phase::Head) {
            Admission::WaitUntil(at) => at,
            _ => panic!("made room inside the grace period"),
        };
        assert_eq!(at, second.state().opened + EVICTION_GRACE);
        tokio::time::advance(at - Instant::now()).await;
        let fourth = match l.admit(4, Phase::Head) {
            Admission::Evicted(c) => c,
            _ => panic!("no room made past the grace period"),
        };
        assert_eq!(second.state().phase, Phase::Closing);
        assert!(
            second.begin_request().is_none(),
            "a request on a closing connection"
        );
        assert_eq!(first.state().phase, Phase::Busy);
        assert_eq!(l.conns().len(), 3);

        // Every connection held: refused, whatever their age.
        let _busy3 = third.begin_request().unwrap();
        third.hold();
        let _busy4 = fourth.begin_request().unwrap();
        fourth.hold();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(l.admit(5, Phase::Head), Admission::Refused));
        // An answer handed over but not yet written out still holds its connection.
        drop(busy);
        assert_eq!(first.state().phase, Phase::Writing);
        assert!(matches!(l.admit(5, Phase::Head), Admission::Refused));
        // Written out, the connection is idle; its grace counted from its opening, long past,
        // so it makes room at once (no fresh grace per request).
        first.flushed();
        assert_eq!(first.state().phase, Phase::Idle);
        assert!(matches!(l.admit(5, Phase::Head), Admission::Evicted(_)));
        assert_eq!(first.state().phase, Phase::Closing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_a_verified_credential_holds_nothing() {
        let l = listener(1);
        let conn = admitted(l.admit(1, Phase::Head));
        // A token request whose form body trickles in, a guess, a probe: busy, not held.
        let _request = conn.begin_request().unwrap();
        assert!(matches!(l.admit(2, Phase::Head), Admission::WaitUntil(_)));
        tokio::time::advance(EVICTION_GRACE).await;
        assert!(matches!(l.admit(2, Phase::Head), Admission::Evicted(_)));
        assert_eq!(conn.state().phase, Phase::Closing);
        // An authenticated one is held until its answer is out.
        let l = listener(1);
        let conn = admitted(l.admit(1, Phase::Head));
        let request = conn.begin_request().unwrap();
        conn.hold();
        tokio::time::advance(EVICTION_GRACE).await;
        assert!(matches!(l.admit(2, Phase::Head), Admission::Refused));
        drop(request);
        conn.bytes_written();
        assert!(matches!(l.admit(2, Phase::Head), Admission::Refused));
        conn.flushed();
        assert!(!conn.state().held(), "held past its answer");
        assert!(matches!(l.admit(2, Phase::Head), Admission::Evicted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_clock_and_bytes_on_an_idle_connection_start_the_head_clock() {
        let clocks = Clocks {
            handshake: Duration::from_secs(3),
            head: Duration::from_secs(10),
            idle: Duration::from_secs(75),
        };
        let conn = Arc::new(Conn::new(1, Phase::Handshake));
        let began = Instant::now();
        assert_eq!(conn.watchdog(clocks).await, Dropped::HandshakeTimeout);
        assert_eq!(began.elapsed(), clocks.handshake);

        conn.handshake_done();
        let began = Instant::now();
        assert_eq!(conn.watchdog(clocks).await, Dropped::HeaderTimeout);
        assert_eq!(began.elapsed(), clocks.head);

        // Busy: no clock; writing the answer: the idle clock, restarted by every write; idle
        // once written out: the idle clock, until a byte arrives.
        let in_flight = conn.begin_request().unwrap();
        let watch = {
            let conn = conn.clone();
            tokio::spawn(async move { (conn.watchdog(clocks).await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!watch.is_finished());
        drop(in_flight);
        for _ in 0..3 {
            tokio::time::sleep(clocks.idle - Duration::from_secs(1)).await;
            conn.bytes_written();
        }
        assert!(!watch.is_finished());
        conn.flushed();
        let idle_since = Instant::now();
        tokio::time::sleep(Duration::from_secs(30)).await;
        conn.bytes_read();
        let head_since = Instant::now();
        let (why, at) = watch.await.unwrap();
        assert_eq!(why, Dropped::HeaderTimeout);
        assert_eq!(at, head_since + clocks.head);
        assert!(at < idle_since + clocks.idle);

        // An answer whose writing stalls: the idle clock after the last write.
        drop(conn.begin_request().unwrap());
        conn.bytes_written();
        let began = Instant::now();
        assert_eq!(conn.watchdog(clocks).await, Dropped::SendTimeout);
        assert_eq!(began.elapsed(), clocks.idle);

        // Closed for room: at once.
        assert!(conn.close());
        assert_eq!(conn.watchdog(clocks).await, Dropped::Evicted);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_what_the_cap_needs_or_the_cap_lowered() {
        let fit = |soft, hard, max| {
            let f = fit_files(soft, hard, max);
            (f.raise_soft_to, f.max_connections)
        };
        // Enough already, or unlimited.
        assert_eq!(fit(Some(65536), Some(65536), 1024), (None, 1024));
        assert_eq!(fit(None, None, 1024), (None, 1024));
        // systemd's default for services (1024 soft, 512 Ki hard): raised to what is needed.
        assert_eq!(fit(Some(1024), Some(524_288), 1024), (Some(1280), 1024));
        assert_eq!(fit(Some(1024), None, 4096), (Some(4352), 4096));
        // The hard limit is too low: raised to it, the cap lowered to leave the reserve.
        assert_eq!(fit(Some(1024), Some(1024), 1024), (None, 768));
        assert_eq!(fit(Some(512), Some(1000), 1024), (Some(1000), 744));
        // A tiny limit: a quarter of it.
        assert_eq!(fit(Some(100), Some(100), 1024), (None, 25));
        assert_eq!(fit(Some(1), Some(1), 1024), (None, 1));
    }
}
