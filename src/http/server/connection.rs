//! One connection's task: the TLS handshake if any, then HTTP/1.1 under the watchdog of its
//! phase's clock, with its byte stream and its answers' bodies telling it when a request
//! begins, when an answer is written out, and when it ends.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::conn::{Clocks, Conn, Dropped, Hold, InFlight};
use super::table::{Registered, Shared};
use super::Transport;
use crate::http::ApiError;

/// One connection's task: the TLS handshake if any, then HTTP/1.1 until the client leaves, a
/// clock runs out, the connection is chosen to make room, or shutdown.
pub(super) async fn connection(
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
        Transport::Plain => serve_http(stream, peer, false, &conn, clocks, app, stop).await,
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
                    serve_http(tls, peer, true, &conn, clocks, app, stop).await
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
    over_tls: bool,
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
            if over_tls {
                // The console marks its cookie `Secure` on HTTPS.
                req.extensions_mut().insert(crate::http::forwarded::OverTls);
            }
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
