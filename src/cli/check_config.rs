//! `scim-bridge check-config`: loads and validates the configuration as `serve` would, and
//! prints it with secrets shown as `***`, the SHA-256 of tokens, passwords and client secrets
//! too: the hash of a short or guessable secret can be reversed offline by trying candidates.
//! With `--online` it also asks every partner site whether it accepts the configured API key
//! (one cheap read each, as `serve` does at start), a line per site: `ok`, `refused` or
//! `unreachable` (never the key).

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
            let _ = write!(out, "{}", without_hashes(&config.redacted_toml()));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `toml` (the configuration as [`Config::redacted_toml`](crate::config::Config::redacted_toml)
/// prints it) with the value of every key that names a SHA-256 (`token_sha256`,
/// `password_sha256`, `client_secret_sha256`, `bearer_token_sha256`, `sha256`) shown as `***`.
/// Line by line, so the order stays as written; should a hash remain where a line cannot show
/// it (an inline table), the whole document is rendered again from its parsed form.
fn without_hashes(toml: &str) -> String {
    let mut out = String::with_capacity(toml.len());
    for line in toml.lines() {
        match line.split_once('=') {
            Some((key, value))
                if key.trim().ends_with("sha256") && value.trim().starts_with('"') =>
            {
                out.push_str(key.trim_end());
                out.push_str(" = \"***\"");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let Ok(mut doc) = out.parse::<toml::Table>() else {
        // Not expected: the text is what the configuration serialises to. Print nothing of it
        // rather than a hash.
        return "# cannot render the configuration\n".to_owned();
    };
    if hide_hashes(&mut doc) {
        return toml::to_string_pretty(&doc).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    }
    out
}

/// Replaces every SHA-256 value under `table` still not `***`; whether there was one.
fn hide_hashes(table: &mut toml::Table) -> bool {
    let mut found = false;
    for (key, value) in table.iter_mut() {
        if key.ends_with("sha256") && value.is_str() {
            if value.as_str() != Some("***") {
                *value = toml::Value::String("***".into());
                found = true;
            }
            continue;
        }
        found |= hide_hashes_in(value);
    }
    found
}

fn hide_hashes_in(value: &mut toml::Value) -> bool {
    match value {
        toml::Value::Table(t) => hide_hashes(t),
        toml::Value::Array(items) => items.iter_mut().fold(false, |f, v| hide_hashes_in(v) | f),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_sha256_value_prints_as_stars_wherever_it_is() {
        let hash = "ab".repeat(32);
        let text = format!(
            "bearer_token_sha256 = \"{hash}\"\n\
             [admin]\ntoken_sha256 = \"{hash}\"\n\
             [[tenants]]\nname = \"acme\"\n\
             [[tenants.credentials.bearer_tokens]]\nname = \"okta\"\nsha256 = \"{hash}\"\n"
        );
        let shown = without_hashes(&text);
        assert!(!shown.contains(&hash), "{shown}");
        assert_eq!(shown.matches("\"***\"").count(), 3, "{shown}");
        assert!(shown.contains("name = \"okta\""), "{shown}");
        // Kept in its order: the top-level key first.
        assert!(
            shown.starts_with("bearer_token_sha256 = \"***\"\n"),
            "{shown}"
        );
        // A hash inline, where no line shows it alone, is hidden all the same.
        let inline = format!("admin = {{ token_sha256 = \"{hash}\" }}\n");
        let shown = without_hashes(&inline);
        assert!(!shown.contains(&hash) && shown.contains("***"), "{shown}");
    }
}
