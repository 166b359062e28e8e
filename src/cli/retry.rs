//! `scim-bridge retry`: the failing and parked outbox items (of a tenant, a site, a user) are
//! made due now instead of at their backoff time; prints how many. Claims a worker holds are
//! left alone. The console's "retry now" does the same through the bridge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{init_logging, load, open_store};
use crate::bridge::operator::{retry_failing_in, RetryFilter};
use crate::config::LogFormat;

#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this site (of `--tenant`, or of any tenant).
    #[arg(long)]
    pub site: Option<String>,
    /// Only this user: a SCIM user id or a partner email.
    #[arg(long)]
    pub user: Option<String>,
}

/// Runs `retry`: exit code 0 (also when nothing was failing), 2 on bad input, 1 when the store
/// cannot be written.
pub(super) async fn retry(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: RetryArgs,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    if config.is_unconfigured() {
        eprintln!("error: no tenant is configured (see `scim-bridge check-config`)");
        return ExitCode::from(2);
    }
    let tenants: Vec<_> = config
        .tenants
        .iter()
        .filter(|t| args.tenant.as_deref().is_none_or(|n| n == t.name))
        .collect();
    if let Some(name) = &args.tenant {
        if tenants.is_empty() {
            eprintln!("error: --tenant: no tenant named '{name}'");
            return ExitCode::from(2);
        }
    }
    if let Some(site) = &args.site {
        if !tenants
            .iter()
            .any(|t| t.sites.iter().any(|s| &s.site_name == site))
        {
            eprintln!("error: --site: no site named '{site}'");
            return ExitCode::from(2);
        }
    }
    let blank = |v: &Option<String>, flag: &str| {
        v.as_deref()
            .is_some_and(|s| s.trim().is_empty())
            .then(|| format!("{flag} is empty"))
    };
    if let Some(e) = blank(&args.user, "--user") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let filter = RetryFilter {
        tenant: args.tenant,
        site: args.site,
        user: args.user.map(|u| u.trim().to_owned()),
    };
    let result = retry_failing_in(&store, &filter).await;
    store.close().await;
    match result {
        Ok(n) => {
            let items = if n == 1 { "item" } else { "items" };
            println!("{n} failing or parked outbox {items} made due now");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the store: {e}");
            ExitCode::FAILURE
        }
    }
}
