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
//! ([`EVICTION_GRACE`](table::EVICTION_GRACE)), time for a real client to send its request; a
//! new one waits meanwhile, so a client that reconnects as fast as it is closed cannot churn a
//! real client's connection away.
//! A failed accept (out of open files) closes the oldest connection that is not held, grace
//! or not, then waits a moment; such failures are logged at most every 10 s.
//! Shutdown stops accepting, closes connections without a request in flight, and returns once
//! the requests in flight are answered. (The metrics listener is not served here: it belongs
//! on an internal network.)

/// The accept loop ([`serve`]).
mod accept;
/// One connection's phase and clocks, and a request's [`Hold`] on it.
mod conn;
/// One connection's task: TLS handshake, HTTP/1.1, watchdog.
mod connection;
/// The open-file limit fitted to `http.max_connections`.
mod files;
/// The table of open connections: admission under the cap, eviction for room.
mod table;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::sync::watch;

use crate::config::HttpConfig;

pub use accept::serve;
pub use conn::Hold;
pub use connection::closing;
pub use files::{fit_open_file_limit, RESERVED_FILES};

// What the tests (`tests.rs`) reach through `use super::*`.
#[cfg(test)]
use {
    crate::telemetry::metrics::Metrics,
    conn::{Clocks, Conn, Dropped, Phase},
    files::fit_files,
    std::collections::HashMap,
    std::sync::Mutex,
    table::{Admission, Shared, EVICTION_GRACE},
    tokio::sync::Notify,
    tokio::time::Instant,
};

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

#[cfg(test)]
mod tests;
