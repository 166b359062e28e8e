//! `scim-bridge serve` (the default command): the SCIM API over HTTP(S), with the reconciler,
//! the audit pruner and the metrics exporter beside it, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::sandbox::{print_sandbox_banner, start_sandbox, use_sandbox_store, wants_sandbox};
use super::{init_logging, load, open_store, ServeArgs};
use crate::bridge::Bridge;
use crate::config::{Config, LogFormat};
use crate::http::{self, AppState};
use crate::telemetry::metrics::{Exporter, Metrics};

/// Runs `serve`: starts everything, serves until a shutdown signal, then stops in order.
pub(super) async fn serve(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: ServeArgs,
) -> ExitCode {
    let (mut config, sandbox_wanted) = match configure(path, log_format, &args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sandbox = if sandbox_wanted {
        match start_sandbox(&mut config, &args).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: cannot start the sandbox: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let (listener, exporter) = match bind(&mut config).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let metrics = exporter.as_ref().map(Exporter::metrics).unwrap_or_default();
    let (bridge, state) = match start_bridge(&config, metrics).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let workers = start_workers(&bridge, &config, exporter);
    if let Some(s) = &sandbox {
        print_sandbox_banner(&config, s);
    }
    tracing::info!(listen = %config.listen, tenants = config.tenants.len(), "serving");
    let served =
        http::tls::run_maybe_tls(listener, state, config.http.tls.as_ref(), shutdown_signal())
            .await;
    // In-flight requests are done; let the workers finish their current items.
    for task in workers {
        task.abort();
    }
    bridge.shutdown().await;
    bridge.store.close().await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration `serve` runs with (the flags over the loaded one, logging started, the
/// TLS key readable) and whether it is the sandbox's; exit code 2 when it cannot be used.
fn configure(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: &ServeArgs,
) -> Result<(Config, bool), ExitCode> {
    let mut config = load(path)?;
    let sandbox_wanted = match wants_sandbox(&config, args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if sandbox_wanted {
        if let Err(e) = use_sandbox_store(&mut config, args.data_dir.as_ref()) {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    } else if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    init_logging(log_format, Some(&config));
    if let Some(tls) = &config.http.tls {
        if let Err(e) = http::tls::load_certified_key(tls) {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok((config, sandbox_wanted))
}

/// Binds the SCIM listener (writing the bound address back into `listen`, for a port 0) and
/// the metrics exporter's, if any.
async fn bind(config: &mut Config) -> Result<(TcpListener, Option<Exporter>), ExitCode> {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen: cannot bind {}: {e}", config.listen);
            return Err(ExitCode::FAILURE);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        config.listen = addr;
    }
    let exporter = match Exporter::bind(config.metrics_listen).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: metrics_listen: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    Ok((listener, exporter))
}

/// Opens the store, frees the claims a crashed predecessor left, and builds the bridge and the
/// HTTP state over it (with room among the open files for every connection).
async fn start_bridge(config: &Config, metrics: Metrics) -> Result<(Bridge, AppState), ExitCode> {
    let store = open_store(config).await?;
    // Work a crashed predecessor had claimed is free at once (SQLite: one process).
    match store.release_stale_claims().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            released = n,
            "released outbox claims left by a previous run"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot release stale outbox claims"),
    }
    let bridge = match Bridge::build(store, config, config.bridge.clone(), metrics.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let mut state = match AppState::from_config(config) {
        Ok(s) => s.with_bridge(bridge.clone()).with_metrics(metrics),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    // Every connection is an open file: make room for http.max_connections of them.
    state.connections.max_connections =
        http::server::fit_open_file_limit(state.connections.max_connections);
    Ok((bridge, state))
}

/// Starts the background tasks beside the server (credential checks, reconciler, audit
/// pruner, metrics exporter); `serve` aborts them once the server has stopped.
fn start_workers(
    bridge: &Bridge,
    config: &Config,
    exporter: Option<Exporter>,
) -> Vec<JoinHandle<()>> {
    let credentials = bridge.start_credential_checks();
    let reconciler = bridge.start_reconciler();
    let audit_pruner = bridge.start_audit_pruner(config.audit.retention_days);
    let exporter =
        exporter.map(|e| e.spawn(bridge.store.clone(), bridge.options.outbox_stuck_after_s));
    std::iter::once(credentials)
        .chain(reconciler)
        .chain(audit_pruner)
        .chain(exporter)
        .collect()
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
