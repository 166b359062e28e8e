//! The `partner-emulator` subcommand: runs the emulator as a standalone HTTP server for people
//! and outside tools, with faults and switches from flags (changeable later through the admin
//! API under `/_emulator/`).

use anyhow::Context;

use super::faults::{Faults, Latency, RateLimit};
use super::{Emulator, SiteSpec, Switches, WireShape};

/// The site served when no `--site` is given. Its key is not a secret.
pub const DEFAULT_SITE: &str = "sandbox:sandbox-key";

/// One line for the subcommand's `about`.
pub const ABOUT: &str =
    "Run a fake partner API (Periscope Data / Sisense for Cloud Data Teams users and groups) with fault injection";

/// The subcommand's `long_about`: use `#[command(about = ABOUT, long_about = LONG_ABOUT)]`.
pub const LONG_ABOUT: &str = "\
Run a fake Periscope Data / Sisense for Cloud Data Teams partner API (users and groups) with \
fault injection, for tests and trials.

Each site starts with its owner (an administrator, usable as `invited_by_email`) and the \
built-in groups `Administrators` and `All Users`. State lives in memory only. Writes take \
`?test_mode=true` for a dry run.

The admin API under /_emulator/ (calls, counters, sites/<site>, sites/<site>/faults, \
sites/<site>/switches) reads the call log and site state and changes faults at run time. It has \
NO authentication: keep the emulator on loopback or a trusted network.";

/// The flags of the `partner-emulator` subcommand (see [`LONG_ABOUT`]).
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on, as HOST:PORT (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    pub listen: String,

    /// A site to serve, as NAME:KEY or NAME:KEY:OWNER_EMAIL. Clients authenticate with the header
    /// `HTTP-X-PARTNER-AUTH: NAME:KEY`. Repeat for several sites. The owner defaults to
    /// owner@NAME.example.com. Without any --site, one site `sandbox` with key `sandbox-key` is
    /// served.
    #[arg(long = "site", value_name = "NAME:KEY[:OWNER]", value_parser = SiteSpec::parse)]
    pub sites: Vec<SiteSpec>,

    /// Seed of the random generator behind every random fault, so a run can be repeated exactly.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Delay added before every answer, in milliseconds: a fixed N, or MIN-MAX for a uniformly
    /// random delay.
    #[arg(long, value_name = "N|MIN-MAX", value_parser = parse_latency)]
    pub latency_ms: Option<Latency>,

    /// Rate limit per site: PER_SEC requests per second with bursts of up to BURST (default:
    /// PER_SEC rounded up). Requests over the limit get 429 with a Retry-After header.
    #[arg(long, value_name = "PER_SEC[:BURST]", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,

    /// Share of requests (0.0 to 1.0) answered with a random 500, 502 or 503 instead of running.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub error_share: f64,

    /// Share of requests (0.0 to 1.0) that hang for --hang-for-ms before being answered normally,
    /// to exercise client timeouts.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub hang_share: f64,

    /// How long a hanging request hangs, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    pub hang_for_ms: u64,

    /// Share of requests (0.0 to 1.0) that run but whose connection is closed halfway through the
    /// answer (the change is made; the client cannot know).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub drop_share: f64,

    /// A user update's `groups` is merged into the user's groups instead of replacing them.
    #[arg(long)]
    pub groups_merge: bool,

    /// A user update that changes `email` is refused with 400.
    #[arg(long)]
    pub refuse_email_change: bool,

    /// JSON shape of answers, to test clients against each shape the real service might use.
    #[arg(long, value_name = "SHAPE", value_enum, default_value_t = WireShape::Standard)]
    pub wire_shape: WireShape,

    /// How many calls the call log (GET /_emulator/calls) keeps; the oldest are dropped first.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub call_log_capacity: usize,
}

fn parse_share(value: &str) -> Result<f64, String> {
    let share: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{share} is not between 0.0 and 1.0"))
    }
}

fn parse_ms(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number of milliseconds"))
}

fn parse_latency(value: &str) -> Result<Latency, String> {
    match value.split_once('-') {
        None => parse_ms(value).map(Latency::FixedMs),
        Some((min, max)) => {
            let (min, max) = (parse_ms(min)?, parse_ms(max)?);
            if min > max {
                return Err(format!("latency range {min}-{max} is reversed"));
            }
            Ok(Latency::UniformMs { min, max })
        }
    }
}

fn parse_rate_limit(value: &str) -> Result<RateLimit, String> {
    let (rate, burst) = match value.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (value, None),
    };
    let per_second: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("`{rate}` is not a number of requests per second"))?;
    if !per_second.is_finite() || per_second <= 0.0 {
        return Err("the rate must be above 0".to_owned());
    }
    let burst = match burst {
        Some(burst) => burst
            .trim()
            .parse()
            .map_err(|_| format!("`{burst}` is not a whole burst size"))?,
        None => per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
    };
    Ok(RateLimit {
        per_second,
        burst,
        retry_after: true,
    })
}

impl EmulatorArgs {
    /// The faults every site starts with.
    pub fn faults(&self) -> Faults {
        Faults {
            latency: self.latency_ms.clone(),
            rate_limit: self.rate_limit.clone(),
            error_share: self.error_share,
            hang_share: self.hang_share,
            hang_for_ms: Some(self.hang_for_ms),
            drop_share: self.drop_share,
            seed: self.seed,
            ..Faults::default()
        }
    }

    /// The switches every site starts with.
    pub fn switches(&self) -> Switches {
        Switches {
            groups_merge: self.groups_merge,
            refuse_email_change: self.refuse_email_change,
            wire_shape: self.wire_shape,
        }
    }

    /// The sites to serve (the default site when none is given).
    pub fn site_specs(&self) -> anyhow::Result<Vec<SiteSpec>> {
        if self.sites.is_empty() {
            Ok(vec![
                SiteSpec::parse(DEFAULT_SITE).map_err(anyhow::Error::msg)?
            ])
        } else {
            Ok(self.sites.clone())
        }
    }

    /// A ready emulator with the faults and switches of the flags on every site.
    pub fn build(&self) -> anyhow::Result<Emulator> {
        let emulator = Emulator::with_call_log_capacity(self.site_specs()?, self.call_log_capacity);
        let faults = self.faults();
        faults.validate().map_err(anyhow::Error::msg)?;
        for site in emulator.site_names() {
            emulator.set_faults(&site, faults.clone());
            emulator.set_switches(&site, self.switches());
        }
        Ok(emulator)
    }
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let emulator = args.build()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {addr}, not loopback; the /_emulator/ admin API has no authentication"
        );
    }
    let base_url = format!("http://{addr}");
    let site = if args.sites.is_empty() {
        DEFAULT_SITE.to_owned()
    } else {
        emulator
            .site_names()
            .first()
            .map(|name| format!("{name}:<KEY>"))
            .unwrap_or_default()
    };
    println!("partner emulator listening on {base_url}");
    println!("sites: {}", emulator.site_names().join(", "));
    println!(
        "try: curl -s -H 'HTTP-X-PARTNER-AUTH: {site}' -H 'Content-Type: application/json' {base_url}/api/v1/users"
    );
    println!("admin: {base_url}/_emulator/calls, /_emulator/counters, /_emulator/sites/<site>");
    tracing::info!(%addr, "partner emulator started");
    emulator.serve(listener, shutdown_signal()).await?;
    tracing::info!("partner emulator stopped");
    Ok(())
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn flags_build_faults_and_switches() {
        let cli = Cli::try_parse_from([
            "x",
            "--site",
            "a:k1",
            "--site",
            "b:k2:boss@b.io",
            "--seed",
            "9",
            "--latency-ms",
            "5-10",
            "--rate-limit",
            "2.5",
            "--error-share",
            "0.1",
            "--groups-merge",
            "--wire-shape",
            "wrapped",
        ])
        .unwrap();
        let em = cli.args.build().unwrap();
        assert_eq!(em.site_names(), vec!["a", "b"]);
        let faults = em.faults("b").unwrap();
        assert_eq!(faults.seed, 9);
        assert_eq!(faults.latency, Some(Latency::UniformMs { min: 5, max: 10 }));
        assert_eq!(faults.rate_limit.unwrap().burst, 3);
        let switches = em.switches("a").unwrap();
        assert!(switches.groups_merge && !switches.refuse_email_change);
        assert_eq!(switches.wire_shape, WireShape::Wrapped);
        assert!(em.user("b", "BOSS@b.io").is_some());
    }

    #[test]
    fn help_names_every_flag() {
        use clap::CommandFactory;
        let help = Cli::command()
            .long_about(LONG_ABOUT)
            .render_long_help()
            .to_string();
        println!("{help}");
        for flag in [
            "--listen",
            "--site",
            "--seed",
            "--latency-ms",
            "--rate-limit",
            "--error-share",
            "--hang-share",
            "--hang-for-ms",
            "--drop-share",
            "--groups-merge",
            "--refuse-email-change",
            "--wire-shape",
            "--call-log-capacity",
        ] {
            assert!(help.contains(flag), "{flag}");
        }
    }

    #[test]
    fn defaults_and_bad_values() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen, "127.0.0.1:8090");
        assert_eq!(cli.args.build().unwrap().site_names(), vec!["sandbox"]);
        assert!(Cli::try_parse_from(["x", "--error-share", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--rate-limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--site", "nokey"]).is_err());
        assert!(Cli::try_parse_from(["x", "--latency-ms", "9-3"]).is_err());
    }
}
