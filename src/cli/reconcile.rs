//! `scim-bridge reconcile`: compares every partner site with the store and prints the report;
//! with `--apply`, repairs the drift and waits for the membership engine to finish.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{init_logging, load, open_store, ReconcileArgs};
use crate::bridge::reconcile::SiteReport;
use crate::bridge::{Bridge, Tenant};
use crate::config::LogFormat;

/// Runs `reconcile`: exit code 0 when in sync or repaired, 3 when drift was left, 2 on bad
/// input, 1 on a failure.
pub(super) async fn reconcile(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: ReconcileArgs,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    if config.is_unconfigured() {
        eprintln!("error: no tenant is configured: nothing to reconcile");
        return ExitCode::from(2);
    }
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let bridge = match Bridge::new(store, &config, config.bridge.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tenants = match chosen_tenants(&bridge, args.tenant.as_deref()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut all = Vec::new();
    for tenant in &tenants {
        match crate::bridge::reconcile::run(&bridge, tenant, args.apply, "cli").await {
            Ok(r) => all.extend(r),
            Err(e) => {
                eprintln!("error: tenant {}: {e}", tenant.name());
                bridge.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
    }
    if args.apply {
        wait_for_repairs(&bridge, args.wait).await;
    }
    bridge.shutdown().await;
    print_report(&all, &args);
    if args.apply || all.iter().all(|r| r.in_sync()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// The tenants to reconcile, by name: every one, or the one `--tenant` names (exit code 2
/// when there is none of that name).
fn chosen_tenants(bridge: &Bridge, only: Option<&str>) -> Result<Vec<Arc<Tenant>>, ExitCode> {
    let mut tenants: Vec<_> = bridge.tenants.values().cloned().collect();
    tenants.sort_by(|a, b| a.name().cmp(b.name()));
    if let Some(t) = only {
        tenants.retain(|x| x.name() == t);
        if tenants.is_empty() {
            eprintln!("error: --tenant: no tenant named '{t}'");
            return Err(ExitCode::from(2));
        }
    }
    Ok(tenants)
}

/// Lets the engine work the repairs' marks before exiting, for at most `wait_s` seconds.
async fn wait_for_repairs(bridge: &Bridge, wait_s: u64) {
    let end = Instant::now() + Duration::from_secs(wait_s);
    loop {
        match bridge.store.outbox_stats().await {
            Ok(s) if s.depth == 0 => break,
            Ok(s) if Instant::now() >= end => {
                eprintln!(
                    "warning: {} repairs still pending; `serve` will finish them",
                    s.depth
                );
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => {
                eprintln!("error: store: {e}");
                break;
            }
        }
    }
}

/// Prints the report, as JSON with `--json`, else as text.
fn print_report(all: &[SiteReport], args: &ReconcileArgs) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(all).unwrap_or_else(|_| "[]".into())
        );
    } else {
        print!("{}", crate::bridge::reconcile::render_text(all, args.apply));
    }
}
