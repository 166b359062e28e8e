//! The listener's table of open connections: admitting a new one under
//! `http.max_connections`, choosing which one to close for room, and taking one out when its
//! task ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{Clocks, Conn, Phase};
use super::{ConnectionLimits, Transport};
use crate::telemetry::metrics::Metrics;

/// How long a connection is safe from being closed for room, from the start of its phase: time
/// for a real client, even one far away, to finish its TLS handshake and send its request. It
/// also bounds how fast a client that reconnects at once can churn the table: at most
/// `max_connections` closes per grace period, and a new connection waits meanwhile (in the
/// listen queue, in arrival order).
pub(super) const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// What one listener shares with its connection tasks.
pub(super) struct Shared {
    pub(super) label: &'static str,
    pub(super) metrics: Metrics,
    pub(super) max_connections: usize,
    pub(super) clocks: Clocks,
    /// The open connections by id (ids grow with accept order).
    pub(super) conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified when a connection ends (there may be room).
    pub(super) freed: Notify,
}

pub(super) enum Admission {
    Admitted(Arc<Conn>),
    /// Admitted after closing another connection.
    Evicted(Arc<Conn>),
    /// At the cap, and the connection that could make room is in its grace period until then.
    WaitUntil(Instant),
    /// At the cap with every connection busy.
    Refused,
}

impl Shared {
    /// A listener's empty table, with the cap and the clocks of `limits` (and of `transport`'s
    /// handshake).
    pub(super) fn new(transport: &Transport, limits: ConnectionLimits, metrics: Metrics) -> Self {
        let handshake_timeout = match transport {
            Transport::Plain => Duration::ZERO,
            Transport::Tls {
                handshake_timeout, ..
            } => *handshake_timeout,
        };
        Self {
            label: transport.label(),
            metrics,
            max_connections: limits.max_connections.max(1),
            clocks: Clocks {
                handshake: handshake_timeout,
                head: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
            conns: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        }
    }

    pub(super) fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection, making room at the cap.
    pub(super) fn admit(&self, id: u64, phase: Phase) -> Admission {
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
    pub(super) fn evict_oldest(&self) -> bool {
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

    pub(super) fn remove(&self, id: u64) {
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
pub(super) struct Registered {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.remove(self.id);
    }
}
