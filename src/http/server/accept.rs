//! The accept loop: takes connections off the listener, admits each one into the table (or
//! waits for room, or refuses it), and spawns its task; at shutdown, stops accepting and waits
//! for the connection tasks to end.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Conn, Phase};
use super::connection::connection;
use super::table::{Admission, Shared};
use super::{ConnectionLimits, Transport};
use crate::telemetry::metrics::Metrics;

/// How long a failed accept waits before the next one, after closing a connection to free
/// its file, and when there was none to close.
const ACCEPT_RETRY_AFTER_EVICTION: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    let shared = Arc::new(Shared::new(&transport, limits, metrics));
    shared.metrics.open_connections(shared.label, 0);
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
                    accept_failed(&shared, &e, &mut accept_log).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let phase = match transport {
            Transport::Plain => Phase::Head,
            Transport::Tls { .. } => Phase::Handshake,
        };
        let conn = match admit(&shared, next_id, phase, &mut cap_log, shutdown.as_mut()).await {
            Admitted::Open(conn) => conn,
            Admitted::Closed => {
                drop(stream);
                continue;
            }
            Admitted::Stopping => {
                drop(stream);
                break;
            }
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

/// What became of a new connection at the table.
enum Admitted {
    /// Open, with or without closing another for room.
    Open(Arc<Conn>),
    /// Refused: every connection is held.
    Closed,
    /// Shutdown began while it waited for room.
    Stopping,
}

/// Admits a new connection, waiting while the connections that could make room are all in
/// their grace period (the ones behind it wait in the listen queue), and logs (at most every
/// [`CAP_LOG_EVERY`]) when the cap is reached.
async fn admit(
    shared: &Shared,
    id: u64,
    phase: Phase,
    cap_log: &mut Every,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Admitted {
    let label = shared.label;
    loop {
        match shared.admit(id, phase) {
            Admission::Admitted(conn) => return Admitted::Open(conn),
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
                return Admitted::Open(conn);
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
                return Admitted::Closed;
            }
            // The connections that could make room are all in their grace period: this
            // one waits (and the ones behind it in the listen queue) until one is not.
            Admission::WaitUntil(at) => tokio::select! {
                () = shutdown.as_mut() => return Admitted::Stopping,
                () = tokio::time::sleep_until(at) => {}
                () = shared.freed.notified() => {}
            },
        }
    }
}

/// After a failed accept: counts it, closes an idle connection when out of files, logs (at
/// most every [`ACCEPT_LOG_EVERY`]) and waits a moment before the next accept.
async fn accept_failed(shared: &Shared, e: &io::Error, accept_log: &mut Every) {
    let label = shared.label;
    shared.metrics.accept_error(label);
    // Out of files: closing an idle connection frees one for the next accept.
    let freed = out_of_files(e) && shared.evict_oldest();
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
    let pause = if freed {
        ACCEPT_RETRY_AFTER_EVICTION
    } else {
        ACCEPT_BACKOFF
    };
    tokio::time::sleep(pause).await;
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
