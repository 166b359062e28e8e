//! One connection's phase and its clocks, shared by its task, its I/O, its requests and the
//! accept loop; and the handles a request holds on it ([`Hold`], [`InFlight`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::Request;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The clocks of the phases.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clocks {
    pub(super) handshake: Duration,
    pub(super) head: Duration,
    pub(super) idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) enum Dropped {
    HandshakeTimeout,
    HeaderTimeout,
    IdleTimeout,
    SendTimeout,
    Evicted,
}

impl Dropped {
    pub(super) fn label(self) -> &'static str {
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
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) state: Mutex<ConnState>,
    /// Set while idle: the next bytes read begin a request head.
    pub(super) awaiting_head: AtomicBool,
    /// Set while writing: bytes written restart the clock, a flush ends the phase.
    pub(super) writing: AtomicBool,
    /// Wakes the watchdog when the phase changes.
    pub(super) changed: Notify,
}

pub(super) struct ConnState {
    pub(super) phase: Phase,
    /// When the phase began.
    pub(super) since: Instant,
    /// When the connection was accepted: the eviction grace and order count from it, once
    /// (a grace that restarted with each phase would let a client sending cheap requests under
    /// a second apart keep every connection out of reach).
    pub(super) opened: Instant,
    /// Counts phase changes, so that a watchdog waking at a deadline knows whether the
    /// phase it timed is still the current one.
    pub(super) generation: u64,
    pub(super) in_flight: usize,
    /// The request in flight had its credential verified.
    pub(super) held_request: bool,
    /// The request in flight is having its credential verified (a JWKS fetch, a password
    /// hash): closed for room only when nothing else can be.
    pub(super) verifying: bool,
    /// An answer not yet flushed belongs to such a request.
    pub(super) held_answer: bool,
    /// While an answer is handed over and not yet flushed: when it last made progress. Its
    /// clock runs in any phase: hyper may dispatch a pipelined request (busy) while an earlier
    /// answer still waits in its buffer for a client that stopped reading.
    pub(super) unflushed_since: Option<Instant>,
}

/// Which connection is closed first for room (the least): any not being verified, oldest
/// first; then those whose credential is being verified, newest first (an IdP's kept-alive
/// connection is usually the oldest, and a flood of requests waiting on a JWKS fetch is new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Rank {
    Open(Instant),
    Verifying(std::cmp::Reverse<Instant>),
}

impl ConnState {
    /// Not to be closed for room: a request with a verified credential is in flight, or its
    /// answer is still being written.
    pub(super) fn held(&self) -> bool {
        self.held_request || self.held_answer
    }
}

impl Conn {
    pub(super) fn new(id: u64, phase: Phase) -> Self {
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

    pub(super) fn state(&self) -> MutexGuard<'_, ConnState> {
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

    pub(super) fn handshake_done(&self) {
        let mut s = self.state();
        if s.phase == Phase::Handshake {
            self.enter(&mut s, Phase::Head);
        }
    }

    /// Bytes arrived: on an idle connection they begin the next request head.
    pub(super) fn bytes_read(&self) {
        if self.awaiting_head.swap(false, Ordering::AcqRel) {
            let mut s = self.state();
            if s.phase == Phase::Idle {
                self.enter(&mut s, Phase::Head);
            }
        }
    }

    /// A request head was read; `None` when the connection is being closed.
    pub(super) fn begin_request(self: &Arc<Self>) -> Option<InFlight> {
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
    pub(super) fn end_request(&self) {
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
    pub(super) fn bytes_written(&self) {
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
    pub(super) fn flushed(&self) {
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
    pub(super) fn hold(&self) -> bool {
        let mut s = self.state();
        if s.phase == Phase::Busy {
            s.held_request = true;
            s.verifying = false;
        }
        s.phase != Phase::Closing
    }

    /// The request in flight is having its credential verified.
    pub(super) fn verifying(&self) {
        let mut s = self.state();
        if s.phase == Phase::Busy && !s.held_request {
            s.verifying = true;
        }
    }

    /// Whether shutdown waits for this connection: a request is in a handler and no answer
    /// waits unflushed before it (hyper runs a pipelined request only once the answers before
    /// it are written, so behind a client that stopped reading it would wait out the writing
    /// clock), or a held answer is still being written.
    pub(super) fn draining_at_shutdown(&self) -> bool {
        let s = self.state();
        (s.phase == Phase::Busy && s.unflushed_since.is_none()) || s.held()
    }

    /// If the connection may be closed to make room now: whether its request's credential
    /// is being verified (such connections go last), and when it was opened.
    pub(super) fn evictable_since(&self) -> Option<(Rank, Instant)> {
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
    pub(super) fn close(&self) -> bool {
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
    pub(super) async fn watchdog(&self, clocks: Clocks) -> Dropped {
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
/// [`serve`](super::serve).
#[derive(Clone)]
pub struct Hold(pub(super) Arc<Conn>);

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
    /// that connection is closing (answer [`closing`](super::closing) and do nothing).
    pub fn authenticated_request<B>(request: &Request<B>) -> bool {
        request
            .extensions()
            .get::<Hold>()
            .is_none_or(Hold::authenticated)
    }
}

/// A request in flight on its connection, from its head until its answer's body is dropped
/// (handed to hyper to write, or abandoned).
pub(super) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}
