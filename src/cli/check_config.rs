//! `scim-bridge check-config`: loads and validates the configuration as `serve` would, and
//! prints it with secrets shown as `***`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::load;
use super::sandbox::no_tenant_error;
use crate::http::{self, AppState};

/// Runs `check-config`: exit code 2 when `serve` would refuse the configuration.
pub(super) fn check_config(path: Option<PathBuf>) -> ExitCode {
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
