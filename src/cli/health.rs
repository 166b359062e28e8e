//! `scim-bridge healthcheck`: asks a running bridge's `/readyz`, for a container
//! `HEALTHCHECK` in an image without curl. Prints one line; exits 0 on 200 (also when the
//! bridge reports itself degraded, which the line then says), 1 otherwise (also when the
//! configuration cannot be read: Docker reserves exit code 2).
//!
//! Without `--url` it probes `/readyz` on the configured `listen` address, with the wildcard
//! addresses (`0.0.0.0`, `[::]`) replaced by loopback. With `[http.tls]` configured the probe
//! speaks HTTPS to loopback and does not verify the certificate: it only ever goes to this
//! host's own listener, whose certificate names the public host, not `127.0.0.1`. A URL given
//! with `--url` is verified as usual.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::partner::error::error_chain;

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to probe; default `/readyz` on the configured `listen` address (loopback when it
    /// is a wildcard address, https when `[http.tls]` is set). Give it when `serve` was
    /// started with `--listen`.
    #[arg(long, value_name = "URL")]
    pub url: Option<url::Url>,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,
}

/// Runs the probe.
pub async fn healthcheck(config: Option<PathBuf>, args: HealthcheckArgs) -> ExitCode {
    let (url, local_tls) = match args.url {
        Some(url) => (url, false),
        None => match crate::config::Config::load(&crate::config::Sources {
            file: config,
            env: None,
        }) {
            Ok(config) => {
                let tls = config.http.tls.is_some();
                match default_url(config.listen, tls) {
                    Ok(url) => (url, tls),
                    Err(e) => return unhealthy(&format!("cannot build the probe URL: {e}")),
                }
            }
            Err(e) => return unhealthy(&format!("configuration: {e}")),
        },
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(local_tls)
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => return unhealthy(&format!("cannot build the HTTP client: {e}")),
    };
    match client.get(url.clone()).send().await {
        Ok(res) if res.status() == reqwest::StatusCode::OK => {
            // Degraded (the partner's trouble) is still ready: say so, exit 0.
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            let degraded = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("degraded").cloned())
                .map(|d| format!(" (degraded: {d})"))
                .unwrap_or_default();
            println!("ready: {url} answered {status}{degraded}");
            ExitCode::SUCCESS
        }
        Ok(res) => {
            let status = res.status().as_u16();
            // The body names the failing checks; keep the line short and on one line.
            let body = res.text().await.unwrap_or_default();
            let failing = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("failing").cloned())
                .map(|f| format!(" (failing: {f})"))
                .unwrap_or_default();
            unhealthy(&format!("{url} answered {status}{failing}"))
        }
        Err(e) => unhealthy(&format!("{url}: {}", error_chain(&e.without_url()))),
    }
}

/// Prints `why` on one line (configuration errors span several) and fails.
fn unhealthy(why: &str) -> ExitCode {
    let line: Vec<&str> = why
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    println!("not ready: {}", line.join(" "));
    ExitCode::FAILURE
}

/// `http(s)://<listen>/readyz`, a wildcard address replaced by loopback of its family.
pub fn default_url(listen: SocketAddr, tls: bool) -> Result<url::Url, url::ParseError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    url::Url::parse(&format!(
        "{scheme}://{}/readyz",
        SocketAddr::new(ip, listen.port())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_probes_loopback_for_wildcard_addresses() {
        let url = |listen: &str, tls| {
            default_url(listen.parse().unwrap(), tls)
                .unwrap()
                .to_string()
        };
        assert_eq!(url("0.0.0.0:8080", false), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:8443", true), "https://[::1]:8443/readyz");
        assert_eq!(url("10.1.2.3:80", false), "http://10.1.2.3/readyz");
        assert_eq!(url("127.0.0.1:9000", false), "http://127.0.0.1:9000/readyz");
    }
}
