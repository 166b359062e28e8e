//! The `partner-emulator` subcommand: runs the emulator as a standalone HTTP server for people
//! and outside tools, with faults and switches from flags (changeable later through the admin
//! API under `/_emulator/`).

use anyhow::Context;

use super::faults::{Faults, Latency, RateLimit};
use super::{Emulator, SiteKind, SiteSpec, Switches, WireShape};

/// The site served when no `--site` is given. Its key is not a secret.
pub const DEFAULT_SITE: &str = "sandbox:sandbox-key";

/// One line for the subcommand's `about`.
pub const ABOUT: &str =
    "Run a fake partner API (Periscope Data / Sisense for Cloud Data Teams users and groups, or users and roles) with fault injection";

/// The subcommand's `long_about`: use `#[command(about = ABOUT, long_about = LONG_ABOUT)]`.
pub const LONG_ABOUT: &str = "\
Run a fake Periscope Data / Sisense for Cloud Data Teams partner API (users and groups) with \
fault injection, for tests and trials.

Each site starts with its owner (an administrator, usable as `invited_by_email`) and the \
built-in groups `Administrators` and `All Users`. A site given with --rbac-site speaks the \
\"User and Role Management API\" instead (users under /api/v2/users, roles under /api/v1/roles) \
and starts with its owner and the roles `Admin`, `Everyone`, `Analyst`, `Business User` and \
`Read`. State lives in memory only. Writes take `?test_mode=true` for a dry run.

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

    /// An RBAC site to serve (users under /api/v2/users with role ids, roles under
    /// /api/v1/roles), given as --site is. Repeat for several; may be mixed with --site.
    #[arg(long = "rbac-site", value_name = "NAME:KEY[:OWNER]", value_parser = SiteSpec::parse)]
    pub rbac_sites: Vec<SiteSpec>,

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

    /// The v1 sites to serve (the default site when neither `--site` nor `--rbac-site` is
    /// given).
    pub fn site_specs(&self) -> anyhow::Result<Vec<SiteSpec>> {
        if self.sites.is_empty() && self.rbac_sites.is_empty() {
            Ok(vec![
                SiteSpec::parse(DEFAULT_SITE).map_err(anyhow::Error::msg)?
            ])
        } else {
            Ok(self.sites.clone())
        }
    }

    /// Every site to serve with its kind: the v1 sites, then the RBAC sites.
    pub fn sites_with_kinds(&self) -> anyhow::Result<Vec<(SiteSpec, SiteKind)>> {
        let v1 = self.site_specs()?.into_iter().map(|s| (s, SiteKind::V1));
        let rbac = self.rbac_sites.iter().map(|s| (s.clone(), SiteKind::Rbac));
        Ok(v1.chain(rbac).collect())
    }

    /// A ready emulator with the faults and switches of the flags on every site.
    pub fn build(&self) -> anyhow::Result<Emulator> {
        let emulator = self
            .sites_with_kinds()?
            .into_iter()
            .fold(Emulator::builder(), |builder, (spec, kind)| {
                builder.site_of_kind(spec, kind)
            })
            .call_log_capacity(self.call_log_capacity)
            .build();
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
    let first = emulator.site_names().into_iter().next().unwrap_or_default();
    let site = if args.sites.is_empty() && args.rbac_sites.is_empty() {
        DEFAULT_SITE.to_owned()
    } else {
        format!("{first}:<KEY>")
    };
    let users_path = match emulator.site_kind(&first) {
        Some(SiteKind::Rbac) => "/api/v2/users",
        _ => "/api/v1/users",
    };
    println!("partner emulator listening on {base_url}");
    println!("sites: {}", emulator.site_names().join(", "));
    let rbac: Vec<String> = emulator
        .site_names()
        .into_iter()
        .filter(|name| emulator.site_kind(name) == Some(SiteKind::Rbac))
        .collect();
    if !rbac.is_empty() {
        println!("RBAC sites (users and roles): {}", rbac.join(", "));
    }
    println!(
        "try: curl -s -H 'HTTP-X-PARTNER-AUTH: {site}' -H 'Content-Type: application/json' {base_url}{users_path}"
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
    fn rbac_sites_beside_v1_sites() {
        let cli = Cli::try_parse_from([
            "x",
            "--rbac-site",
            "r:k1:boss@r.io",
            "--site",
            "a:k2",
            "--rbac-site",
            "s:k:3",
            "--groups-merge",
        ])
        .unwrap();
        let em = cli.args.build().unwrap();
        assert_eq!(em.site_names(), vec!["a", "r", "s"]);
        assert_eq!(em.site_kind("a"), Some(SiteKind::V1));
        assert_eq!(em.site_kind("r"), Some(SiteKind::Rbac));
        assert!(em.rbac_user_by_email("r", "BOSS@r.io").is_some());
        assert_eq!(em.roles("s").len(), 5);
        assert!(em.switches("s").unwrap().groups_merge);
        // only RBAC sites: no default v1 site
        let cli = Cli::try_parse_from(["x", "--rbac-site", "r:k"]).unwrap();
        assert_eq!(cli.args.build().unwrap().site_names(), vec!["r"]);
        assert!(Cli::try_parse_from(["x", "--rbac-site", "nokey"]).is_err());
        assert!(Cli::try_parse_from(["x", "--rbac-site", ":key"]).is_err());
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--rbac-site"), "{help}");
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
