//! `scim-bridge check-config`: loads and validates the configuration as `serve` would, and
//! prints it with secrets shown as `***`. With `--online` it also asks every partner site
//! whether it accepts the configured API key (one cheap read each, as `serve` does at start),
//! a line per site: `ok`, `refused` or `unreachable` (never the key).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::load;
use super::sandbox::no_tenant_error;
use crate::http::{self, AppState};

/// Exit code of `check-config --online` when a partner refused a site's key.
const EXIT_REFUSED: u8 = 1;
/// Exit code of `check-config --online` when no site refused its key but one did not answer.
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckConfigArgs {
    /// Also check every partner site's API key with one read call: a line per site (ok,
    /// refused, unreachable); exits 1 when a site refuses its key, 3 when none does but one
    /// did not answer.
    #[arg(long)]
    pub online: bool,
}

/// Runs `check-config`: exit code 2 when `serve` would refuse the configuration; with
/// `--online`, 1 when a partner site refuses its key, 3 when one did not answer.
pub(super) async fn check_config(path: Option<PathBuf>, args: CheckConfigArgs) -> ExitCode {
    let code = check_offline(path.clone());
    if code != ExitCode::SUCCESS || !args.online {
        return code;
    }
    let Ok(config) = load(path) else {
        return ExitCode::from(2);
    };
    check_online(&config).await
}

/// Asks every configured site whether it accepts its key, one line each.
async fn check_online(config: &crate::config::Config) -> ExitCode {
    use crate::partner::client::KeyCheck;
    let (mut refused, mut unreachable) = (0usize, 0usize);
    let mut out = String::new();
    for t in &config.tenants {
        let tenant = match crate::bridge::Tenant::connect(t, &config.bridge.partner) {
            Ok(tenant) => tenant,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let checks = crate::bridge::for_each_site(&tenant, |s| s.client.check_credentials()).await;
        for (site, check) in checks {
            let what = match check {
                KeyCheck::Accepted => "ok".to_owned(),
                KeyCheck::Refused => {
                    refused += 1;
                    "REFUSED: the partner refuses the API key (fix the site's api_key or api_key_file)".to_owned()
                }
                KeyCheck::Unreachable(why) => {
                    unreachable += 1;
                    format!("unreachable: {why} (the key could not be checked)")
                }
            };
            out.push_str(&format!(
                "credentials: tenant {} site {} ({}): {what}\n",
                t.name,
                site.name,
                site.client.base_url()
            ));
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{out}");
    if refused > 0 {
        ExitCode::from(EXIT_REFUSED)
    } else if unreachable > 0 {
        ExitCode::from(EXIT_UNREACHABLE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The configuration check alone: exit code 2 when `serve` would refuse it.
fn check_offline(path: Option<PathBuf>) -> ExitCode {
    match load(path) {
        Ok(config) => {
            // Key files of JWT credentials are read as `serve` would.
            if let Err(e) = AppState::from_config(&config) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            if let Some(tls) = &config.http.tls {
                if let Err(e) = http::tls::load_certified_key(tls) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            // `serve` would refuse settings without a tenant; say so the same way.
            if !config.nothing_configured() && config.is_unconfigured() {
                eprintln!("error: {}", no_tenant_error(&config));
                return ExitCode::from(2);
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "# effective configuration (secrets shown as ***)");
            if config.nothing_configured() {
                let _ = writeln!(
                    out,
                    "# nothing is configured: `scim-bridge serve` would start the sandbox"
                );
            }
            let _ = write!(out, "{}", config.redacted_toml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
