//! The command line: `serve` (the default), `partner-emulator`, `check-config`, `token new`.
//! `main.rs` parses and calls [`run`]; every command is a function here or in a submodule.

mod health;

/// The operator commands: `status`, `import-csv`, `delete-csv`, `add-user`.
mod admin;

/// `audit`: the audit log, newest first, as text or JSON lines.
mod audit;
/// `check-config`: load, validate and print the configuration.
mod check_config;
/// `explain` and `explain-group`: why a person has or lacks access.
mod explain;
/// `migrate`: apply the store's migrations.
mod migrate;
/// `reconcile`: compare every partner site with the store, and repair with `--apply`.
mod reconcile;
/// `retry`: failing and parked outbox items made due now.
mod retry;
/// The sandbox `serve` starts without configuration or with `--sandbox`.
mod sandbox;
/// `serve`: the SCIM API, its workers and the shutdown on a signal.
mod serve;
/// `token new`: the credential helpers.
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat, Sources};
use crate::partner::emulator;
use crate::store::Store;

pub use sandbox::{Sandbox, SANDBOX_DATA_DIR};
pub use serve::shutdown_signal;

/// SCIM 2.0 provisioning bridge for Periscope Data / Sisense for Cloud Data Teams.
///
/// Identity providers (Okta, Microsoft Entra ID, OneLogin, JumpCloud, Ping) provision users and
/// groups over SCIM; the bridge carries every change onto the partner API of one or more sites.
/// Run without a subcommand (or with `serve`) and without any configuration (or with
/// `--sandbox`) to start a sandbox with an emulated partner.
#[derive(Debug, Parser)]
#[command(name = "scim-bridge", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file; environment variables SCIM_BRIDGE_* override it.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "SCIM_BRIDGE_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// Log format: auto (JSON unless stderr is a terminal), json or text.
    #[arg(
        long,
        global = true,
        env = "SCIM_BRIDGE_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,

    /// Flags of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the SCIM API (the default). With no configuration at all (no --config file, no
    /// SCIM_BRIDGE_* variable besides logging ones and SCIM_BRIDGE_SANDBOX_TOKEN), or with
    /// --sandbox, starts the sandbox: an in-process partner emulator, its own SQLite file under
    /// --data-dir (default ./sandbox-data) and one tenant at /scim/v2. Settings without a tenant
    /// stop the start with an error naming them.
    Serve(ServeArgs),
    #[command(about = emulator::cli::ABOUT, long_about = emulator::cli::LONG_ABOUT)]
    PartnerEmulator(emulator::cli::EmulatorArgs),
    /// Load and validate the configuration, print it with secrets shown as ***, and exit
    /// non-zero when it is invalid. With --online, also check every partner site's API key.
    CheckConfig(check_config::CheckConfigArgs),
    /// Apply the store's migrations and exit (`serve` also applies them at start).
    Migrate,
    /// Compare every partner site with the store: users missing, managed memberships drifted,
    /// partner users unknown to SCIM. Prints a report; with --apply, repairs the drift (missing
    /// groups created, drifted users converged by the membership engine). Exits 0 when in sync
    /// or repaired, 3 when drift was found and not repaired.
    Reconcile(ReconcileArgs),
    /// Credential helpers: bearer tokens, Basic passwords, OAuth clients, admin tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Benchmark: the bridge and the partner emulator in this process under IdP-like load
    /// (scenarios S1-S5), printed as a table or JSON. Use a release build.
    Bench(crate::bench::BenchArgs),
    /// Soak: a mixed workload with partner faults against the bridge as a child process,
    /// sampling its memory and open descriptors; fails on errors beyond the injected faults,
    /// a partner state that differs at the end, or an upward trend.
    Soak(crate::soak::SoakArgs),
    /// Simulate: seeded random IdP traffic (Okta and Entra shapes) against two bridges on one
    /// store, with partner faults, cancelled requests, killed and restarted instances and
    /// short deadlines; checks the partner against the IdP's intent, overlapping user writes
    /// and the outbox after each seed. Prints a line per seed; exits 1 on any violation.
    Simulate(crate::simulate::SimulateArgs),
    /// Print the audit log (newest first): every write with its credential, client address,
    /// request id, outcome and partner calls.
    Audit(AuditArgs),
    /// Why a user has or lacks access: the SCIM user (by SCIM id, userName or email; deleted
    /// users too), its groups, what each site should hold and the rule that decides it, the
    /// outbox row carrying it there (queued, failing with its error, parked) and its recent
    /// audit entries and convergences. --live reads each site now and names the differences.
    /// Writes nothing to the partner. Exits 0 when found, 1 when not, 2 on bad input.
    Explain(ExplainArgs),
    /// Explain a group (by SCIM id or displayName): its members, and at each site the partner
    /// group or role it maps to, whether it is managed there, and whether its role was adopted
    /// or created by the bridge; --live reads each site now. Exit codes as explain.
    ExplainGroup(ExplainArgs),
    /// Per tenant and site: the outbox (depth, failing items with their last error, parked
    /// rows, overdue claims), pending deletions and the last reconcile, from the store. Exits 0
    /// when healthy, 1 when an outbox item is failing, a claim is overdue, a deletion has been
    /// pending longer than `bridge.outbox_stuck_after_s` (15 min when 0), or a site's last
    /// reconcile failed or found drift it did not repair, 2 on a bad configuration.
    Status(admin::StatusArgs),
    /// Create or update partner users from a CSV file (email, first_name, last_name, groups),
    /// straight at the partner like the vendor's bulk script. Dry run (test_mode=true) unless
    /// --apply; users SCIM manages are refused unless --force. Exits 0 when every row is done,
    /// 1 when a row was invalid, refused or failed, 2 on bad input.
    ImportCsv(admin::ImportCsvArgs),
    /// Delete the partner users whose emails are in a CSV column, like the vendor's bulk
    /// delete script. Dry run unless --apply; users SCIM manages and the tenant's inviting
    /// user are refused unless --force. Exit codes as import-csv.
    DeleteCsv(admin::DeleteCsvArgs),
    /// Add one user, with groups, to every site of a tenant (the vendor's multi-site script).
    /// Dry run unless --apply; a result line per site; exits 1 if any site failed.
    AddUser(admin::AddUserArgs),
    /// Make the failing and parked outbox items (of a tenant, site or user) due now instead
    /// of at their backoff time; prints how many. Items a worker holds are left alone.
    Retry(retry::RetryArgs),
    /// Ask a running bridge's /readyz (for a container HEALTHCHECK): print one line, exit 0
    /// when it answers 200, 1 otherwise.
    Healthcheck(health::HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// explain: a SCIM id, a userName or an email; explain-group: a SCIM id or a displayName.
    #[arg(value_name = "WHO")]
    pub who: String,
    /// The tenant (needed when several are configured).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Read each site now (one read per site) and name what differs from what it should hold.
    #[arg(long)]
    pub live: bool,
    /// Print JSON (the body of GET /admin/explain) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only entries since this time: RFC 3339 (2026-11-28T10:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries about this: a SCIM id, an email, a userName or a group name (any case;
    /// a deleted user by the email it had), or a type (Users, Groups, Bulk).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only this resource type, in any case, singular or plural (user = Users).
    #[arg(long = "type", value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Most entries to print.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `listen`); default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Folder for the SQLite store (overrides `data_dir`); default ./data. The sandbox's
    /// folder: default ./sandbox-data, never the production one.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start the sandbox (an emulated partner, one tenant, its own store) even when a
    /// configuration is present; the configured tenants, data_dir and store.url are not used.
    /// Without this flag the sandbox starts only when nothing at all is configured.
    #[arg(long)]
    pub sandbox: bool,
    /// Sandbox only: address of the in-process partner emulator; default a free port on
    /// 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub emulator_listen: Option<SocketAddr>,
    /// Sandbox only: the API of the emulated site, `groups` (a v1 site) or `roles` (an RBAC
    /// site: SCIM groups become roles).
    #[arg(
        long,
        value_name = "API",
        env = "SCIM_BRIDGE_SANDBOX_SITE_API",
        default_value = "groups"
    )]
    pub sandbox_site_api: crate::partner::rbac::SiteApi,
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Repair what drifted.
    #[arg(long)]
    pub apply: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// With --apply: seconds to wait for the membership engine to finish the repairs.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random bearer token, its SHA-256, and the lines to put in the
    /// configuration (only the hash needs to be stored).
    ///
    /// With --basic USER: a random password for HTTP Basic and its SHA-256. With
    /// --oauth-client ID: a client secret for the OAuth token endpoint and a signing key. With
    /// --admin: a token for the admin endpoints.
    New {
        /// Name of the credential, shown in logs and the audit log.
        #[arg(long, default_value = "idp")]
        name: String,
        /// Make HTTP Basic credentials for this user name.
        #[arg(long, value_name = "USER", conflicts_with_all = ["oauth_client", "admin"])]
        basic: Option<String>,
        /// Make an OAuth client secret for this client id.
        #[arg(long, value_name = "CLIENT_ID", conflicts_with = "admin")]
        oauth_client: Option<String>,
        /// Make an admin token.
        #[arg(long)]
        admin: bool,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let command = match with_serve_flags(cli.command, cli.serve) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        Command::Serve(args) => serve::serve(cli.config, cli.log_format, args).await,
        Command::PartnerEmulator(args) => {
            init_logging(cli.log_format, None);
            match emulator::cli::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig(args) => check_config::check_config(cli.config, args).await,
        Command::Migrate => migrate::migrate(cli.config, cli.log_format).await,
        Command::Reconcile(args) => reconcile::reconcile(cli.config, cli.log_format, args).await,
        Command::Token(command) => token::token(command),
        Command::Audit(args) => audit::audit(cli.config, cli.log_format, args).await,
        Command::Explain(args) => explain::explain(cli.config, cli.log_format, args, false).await,
        Command::ExplainGroup(args) => {
            explain::explain(cli.config, cli.log_format, args, true).await
        }
        Command::Bench(args) => {
            // Warnings only: the audit log alone would print a line per request.
            let mut log = crate::config::LogConfig {
                level: "warn".into(),
                ..crate::config::LogConfig::default()
            };
            if let Some(f) = cli.log_format {
                log.format = f;
            }
            crate::telemetry::init(&log);
            crate::bench::run(args).await
        }
        Command::Soak(args) => {
            // Warnings only, as for `bench`; the bridge child logs to a file of its own.
            crate::telemetry::init(&crate::config::LogConfig {
                level: "warn".into(),
                format: cli.log_format.unwrap_or_default(),
            });
            crate::soak::run(args).await
        }
        Command::Simulate(args) => {
            // Two bridges log into this process, and the faults make them warn all the time:
            // nothing unless --verbose (then warnings).
            crate::telemetry::init(&crate::config::LogConfig {
                level: if args.verbose { "warn" } else { "off" }.into(),
                format: cli.log_format.unwrap_or_default(),
            });
            crate::simulate::run(args).await
        }
        Command::Status(args) => admin::status(cli.config, cli.log_format, args).await,
        Command::ImportCsv(args) => admin::import_csv(cli.config, cli.log_format, args).await,
        Command::DeleteCsv(args) => admin::delete_csv(cli.config, cli.log_format, args).await,
        Command::AddUser(args) => admin::add_user(cli.config, cli.log_format, args).await,
        Command::Healthcheck(args) => health::healthcheck(cli.config, args).await,
        Command::Retry(args) => retry::retry(cli.config, cli.log_format, args).await,
    }
}

/// The command to run, with `serve`'s flags given before the word `serve` folded into it.
/// `serve`'s flags may come without the word `serve`, but not before another subcommand
/// (`--config` and `--log-format` are global and go anywhere): that is exit code 2.
fn with_serve_flags(command: Option<Command>, top: ServeArgs) -> Result<Command, ExitCode> {
    let top_level_serve_flags = top.listen.is_some()
        || top.data_dir.is_some()
        || top.sandbox
        || top.emulator_listen.is_some();
    match command {
        Some(Command::Serve(mut args)) => {
            args.listen = args.listen.or(top.listen);
            args.data_dir = args.data_dir.or(top.data_dir);
            args.sandbox |= top.sandbox;
            args.emulator_listen = args.emulator_listen.or(top.emulator_listen);
            Ok(Command::Serve(args))
        }
        Some(_) if top_level_serve_flags => {
            eprintln!(
                "error: --listen, --data-dir, --sandbox and --emulator-listen belong to `serve`"
            );
            Err(ExitCode::from(2))
        }
        Some(other) => Ok(other),
        None => Ok(Command::Serve(top)),
    }
}

/// Loads the configuration; exit code 2 (after saying why) when it cannot be used.
fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(&Sources {
        file: config,
        env: None,
    })
    .map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Starts logging as the configuration says, with `--log-format` over its format.
fn init_logging(format: Option<LogFormat>, config: Option<&Config>) {
    let mut log = config.map(|c| c.log.clone()).unwrap_or_default();
    if let Some(f) = format {
        log.format = f;
    }
    crate::telemetry::init(&log);
}

pub use crate::secret::random_token;

/// Connects to the store and applies the migrations.
async fn open_store(config: &Config) -> Result<Store, ExitCode> {
    let url = config.store_url();
    let store = Store::connect(url.expose()).await.map_err(|e| {
        eprintln!("error: store.url: cannot open the store: {e}");
        ExitCode::FAILURE
    })?;
    store.migrate().await.map_err(|e| {
        eprintln!("error: store: migrations failed: {e}");
        ExitCode::FAILURE
    })?;
    Ok(store)
}
