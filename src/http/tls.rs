//! The bridge's own HTTPS listener (rustls), for deployments without a reverse proxy.
//!
//! [`super::server`] accepts, handshakes (within `http.tls.handshake_timeout_s`) and drains
//! connections; what lives here is reading and checking the certificate and key, and swapping
//! them in when they change (SIGHUP, or a changed modification time or size seen by a poll)
//! while a broken new pair leaves the previous one serving. The crypto provider is rustls's `ring`, chosen here for each
//! configuration rather than installed as a process-wide default, so nothing depends on
//! which crate happened to install one first.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::server::{self, ConnectionLimits, Transport};
use crate::config::TlsConfig;
use crate::http::AppState;
use crate::telemetry::metrics::Metrics;

/// Serves `app(state)` on `listener`: over HTTPS when `tls` is given ([`serve_tls`]), in plain
/// HTTP otherwise ([`crate::http::run`]). Either way it stops accepting when `shutdown`
/// completes and returns once in-flight requests are done.
pub async fn run_maybe_tls(
    listener: TcpListener,
    state: AppState,
    tls: Option<&TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match tls {
        None => super::run(listener, state, shutdown).await,
        Some(tls) => {
            let (limits, metrics) = (state.connections, state.metrics.clone());
            serve_tls(listener, super::app(state), tls, limits, metrics, shutdown).await
        }
    }
}

/// Serves `app` over HTTPS (HTTP/1.1) on `listener` under `limits` until `shutdown` completes,
/// then drains in-flight requests ([`server::serve`]). Handlers get `ConnectInfo<SocketAddr>`
/// as with [`crate::http::run`].
///
/// The certificate and key are read before the first connection is accepted: an unusable pair
/// is an `InvalidData` error naming the file. From then on they are read again on SIGHUP and
/// whenever either file's modification time or size changes (checked every
/// `reload_check_s`; 0 leaves only SIGHUP). A pair that fails to load is logged and the
/// previous one stays in use. The SIGHUP handler is in place before this function first
/// waits, so a hang-up sent once it serves reloads rather than ends the process.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    config: &TlsConfig,
    limits: ConnectionLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let hangups = Hangups::install()?;
    let provider = ring_provider();
    let seen = Fingerprint::of(config).await;
    let first = load_off_thread(config)
        .await
        .and_then(|key| server_config(&provider, key))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let (current, serving) = watch::channel(first);
    let transport = Transport::Tls {
        config: serving,
        handshake_timeout: Duration::from_secs(config.handshake_timeout_s),
    };
    let serve = server::serve(listener, app, transport, limits, metrics, shutdown);
    let reload = reload_loop(config.clone(), current, provider, seen, hangups);
    tokio::select! {
        served = serve => served,
        never = reload => match never {},
    }
}

/// Reads the certificate chain and private key of `config` (PEM; the key PKCS#8, PKCS#1 RSA or
/// SEC1 EC) and checks that they belong together: for `check-config`, and for [`serve_tls`] at
/// start and on each reload. Errors name the setting and the file, never the files' contents.
pub fn load_certified_key(config: &TlsConfig) -> Result<Arc<CertifiedKey>, String> {
    let cert_at = |what: &str| {
        format!(
            "http.tls.cert_file ({}): {what}",
            config.cert_file.display()
        )
    };
    let key_at = |what: &str| format!("http.tls.key_file ({}): {what}", config.key_file.display());

    let cert_pem = read(&config.cert_file).map_err(|e| cert_at(&e))?;
    let key_pem = read(&config.key_file).map_err(|e| key_at(&e))?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_at(pem_problem(&e)))?;
    if chain.is_empty() {
        return Err(cert_at("no PEM CERTIFICATE section found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => key_at(
            "no private key found (expected PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        ),
        e => key_at(pem_problem(&e)),
    })?;
    // The provider's error could describe the key; say only that it is unusable.
    let signing_key = ring_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| key_at("the private key is damaged or of an unsupported type"))?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls accepts such pairs too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(key_at(&format!(
            "not the key of the first certificate in {}",
            config.cert_file.display()
        ))),
        Err(e) => Err(cert_at(&format!("the first certificate is not valid: {e}"))),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// What is wrong with a PEM file, in words that quote none of it (the library's own messages
/// can quote a line of the file).
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM section header line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "nothing usable found",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not a valid PEM file",
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// [`load_certified_key`] on the blocking pool: it reads files.
async fn load_off_thread(config: &TlsConfig) -> Result<Arc<CertifiedKey>, String> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || load_certified_key(&config))
        .await
        .map_err(|e| format!("http.tls: loading the certificate failed: {e}"))?
}

/// The listener's rustls configuration: safe default protocol versions, no client
/// certificates, this certificate for every server name, HTTP/1.1 offered in ALPN.
fn server_config(
    provider: &Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("http.tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the poll compares: modification time and size of the certificate and key files
/// (`None` where a file cannot be looked at, e.g. in the middle of a replacement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint([Option<(SystemTime, u64)>; 2]);

impl Fingerprint {
    async fn of(config: &TlsConfig) -> Self {
        async fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
            let meta = tokio::fs::metadata(path).await.ok()?;
            Some((meta.modified().ok()?, meta.len()))
        }
        Self([
            stamp(&config.cert_file).await,
            stamp(&config.key_file).await,
        ])
    }
}

/// Reloads on SIGHUP and on a changed [`Fingerprint`]; never returns.
async fn reload_loop(
    config: TlsConfig,
    current: watch::Sender<Arc<ServerConfig>>,
    provider: Arc<CryptoProvider>,
    mut seen: Fingerprint,
    mut hangups: Hangups,
) -> Infallible {
    let mut poll = (config.reload_check_s > 0).then(|| {
        let period = Duration::from_secs(config.reload_check_s);
        let mut poll = tokio::time::interval_at(Instant::now() + period, period);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll
    });
    loop {
        // The fingerprint is taken before the files are read, so that a change made after the
        // read is seen by the next poll.
        let trigger = tokio::select! {
            () = hangups.next() => {
                seen = Fingerprint::of(&config).await;
                "SIGHUP"
            }
            () = tick(&mut poll) => {
                let now = Fingerprint::of(&config).await;
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        match load_off_thread(&config)
            .await
            .and_then(|key| server_config(&provider, key))
        {
            Ok(new) => {
                current.send_replace(new);
                tracing::info!(
                    trigger,
                    cert_file = %config.cert_file.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(error) => tracing::warn!(
                trigger,
                %error,
                "TLS certificate reload failed; the previous certificate stays in use"
            ),
        }
    }
}

async fn tick(poll: &mut Option<Interval>) {
    match poll {
        Some(poll) => {
            poll.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGHUP deliveries. Installing the handler replaces the default action (ending the
/// process) for as long as the process lives.
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    fn install() -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    /// The next hang-up; pending forever where there are none to receive.
    async fn next(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending().await
    }
}
