//! The command line: `serve` (the default), `partner-emulator`, `check-config`, `token new`.
//! `main.rs` parses and calls [`run`]; every command is a function here or in a submodule.

mod health;

/// The operator commands: `status`, `import-csv`, `delete-csv`, `add-user`.
mod admin;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::bridge::Bridge;
use crate::config::{
    BearerTokenConfig, Config, CredentialsConfig, LogFormat, SiteConfig, Sources, TenantConfig,
};
use crate::http::{self, AppState};
use crate::partner::emulator::{self, Emulator, SiteSpec};
use crate::secret::Secret;
use crate::store::Store;
use crate::telemetry::metrics::Exporter;

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
    /// non-zero when it is invalid.
    CheckConfig,
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
    /// Ask a running bridge's /readyz (for a container HEALTHCHECK): print one line, exit 0
    /// when it answers 200, 1 otherwise.
    Healthcheck(health::HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only entries since this time: RFC 3339 (2026-11-28T10:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this resource: an id, or a type (Users, Groups, Bulk).
    #[arg(long)]
    pub resource: Option<String>,
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
    // `serve`'s flags may come without the word `serve`, but not before another subcommand
    // (`--config` and `--log-format` are global and go anywhere).
    let top_level_serve_flags = cli.serve.listen.is_some()
        || cli.serve.data_dir.is_some()
        || cli.serve.sandbox
        || cli.serve.emulator_listen.is_some();
    let command = match cli.command {
        Some(Command::Serve(mut args)) => {
            args.listen = args.listen.or(cli.serve.listen);
            args.data_dir = args.data_dir.or(cli.serve.data_dir);
            args.sandbox |= cli.serve.sandbox;
            args.emulator_listen = args.emulator_listen.or(cli.serve.emulator_listen);
            Command::Serve(args)
        }
        Some(_) if top_level_serve_flags => {
            eprintln!(
                "error: --listen, --data-dir, --sandbox and --emulator-listen belong to `serve`"
            );
            return ExitCode::from(2);
        }
        Some(other) => other,
        None => Command::Serve(cli.serve),
    };
    match command {
        Command::Serve(args) => serve(cli.config, cli.log_format, args).await,
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
        Command::CheckConfig => check_config(cli.config),
        Command::Migrate => migrate(cli.config, cli.log_format).await,
        Command::Reconcile(args) => reconcile(cli.config, cli.log_format, args).await,
        Command::Token(TokenCommand::New {
            name,
            basic,
            oauth_client,
            admin,
        }) => match (basic, oauth_client) {
            (Some(user), _) => basic_new(&name, &user),
            (None, Some(client)) => {
                oauth_client_new(&name, &client);
                ExitCode::SUCCESS
            }
            (None, None) if admin => {
                admin_token_new();
                ExitCode::SUCCESS
            }
            (None, None) => {
                token_new(&name);
                ExitCode::SUCCESS
            }
        },
        Command::Audit(args) => audit(cli.config, cli.log_format, args).await,
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
    }
}

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

fn init_logging(format: Option<LogFormat>, config: Option<&Config>) {
    let mut log = config.map(|c| c.log.clone()).unwrap_or_default();
    if let Some(f) = format {
        log.format = f;
    }
    crate::telemetry::init(&log);
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
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

pub use crate::secret::random_token;

fn basic_new(name: &str, user: &str) -> ExitCode {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        eprintln!(
            "error: --basic: the user name must be non-empty, without ':' or control characters"
        );
        return ExitCode::from(2);
    }
    let password = random_token();
    let hash = hex::encode(crate::config::sha256(&password));
    println!("username: {user}");
    println!("password: {password}");
    println!("sha256:   {hash}");
    println!();
    println!("Give the user name and password to the identity provider; store only the hash");
    println!("(the password is 256 random bits, so its SHA-256 is checked at once and never");
    println!("waits behind anyone's guesses):");
    println!("  environment (single tenant): SCIM_BRIDGE_BASIC__USERNAME={user}");
    println!("                               SCIM_BRIDGE_BASIC__PASSWORD_SHA256={hash}");
    println!("  configuration file:");
    println!("    [[tenants.credentials.basic]]");
    println!("    name = \"{name}\"");
    println!("    username = \"{user}\"");
    println!("    password_sha256 = \"{hash}\"");
    ExitCode::SUCCESS
}

fn oauth_client_new(name: &str, client: &str) {
    let secret = random_token();
    let hash = hex::encode(crate::config::sha256(&secret));
    let signing_key = random_token();
    println!("client_id:     {client}");
    println!("client_secret: {secret}");
    println!("sha256:        {hash}");
    println!(
        "signing_key:   {signing_key}   (one per tenant, shared by all replicas; keep it secret)"
    );
    println!();
    println!("Give the client id and secret to the identity provider, with the token URL");
    println!("<public base URL><tenant base path>/oauth/token; store only the hash:");
    println!("  environment (single tenant): SCIM_BRIDGE_OAUTH__CLIENT_ID={client}");
    println!("                               SCIM_BRIDGE_OAUTH__CLIENT_SECRET_SHA256={hash}");
    println!("                               SCIM_BRIDGE_OAUTH__SIGNING_KEY_FILE=/run/secrets/oauth-signing-key");
    println!("  configuration file:");
    println!("    [tenants.credentials.oauth]");
    println!("    signing_key_file = \"/run/secrets/oauth-signing-key\"");
    println!("    [[tenants.credentials.oauth.clients]]");
    println!("    name = \"{name}\"");
    println!("    client_id = \"{client}\"");
    println!("    client_secret_sha256 = \"{hash}\"");
}

fn admin_token_new() {
    let token = random_token();
    let hash = hex::encode(crate::config::sha256(&token));
    println!("token:  {token}");
    println!("sha256: {hash}");
    println!();
    println!("Use it as `Authorization: Bearer <token>` on /admin/...; store only the hash:");
    println!("  environment: SCIM_BRIDGE_ADMIN__TOKEN_SHA256={hash}");
    println!("  configuration file:");
    println!("    [admin]");
    println!("    token_sha256 = \"{hash}\"");
}

async fn audit(path: Option<PathBuf>, log_format: Option<LogFormat>, args: AuditArgs) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    let mut query = crate::store::AuditQuery {
        tenant: args.tenant.clone(),
        since_ms: None,
        resource: args.resource.clone(),
        limit: args.limit.clamp(1, crate::http::admin::MAX_AUDIT_ENTRIES),
    };
    if let Some(s) = &args.since {
        match crate::store::AuditQuery::parse_since(s, crate::bridge::now_ms()) {
            Ok(ms) => query.since_ms = Some(ms),
            Err(e) => {
                eprintln!("error: --since: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let entries = match store.search_audit(&query).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot read the audit log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let j = crate::store::audit_entry_json(e);
        if args.json {
            let _ = writeln!(out, "{j}");
        } else {
            let calls = e
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d.get("partner_calls").cloned())
                .and_then(|c| c.as_array().cloned())
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            format!(
                                "{}:{}={}",
                                c["site"].as_str().unwrap_or(""),
                                c["call"].as_str().unwrap_or(""),
                                c["outcome"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{}  {}  {} {} {}  {}  credential={} client={} request={}  {}",
                j["at"].as_str().unwrap_or(""),
                e.tenant,
                e.operation,
                e.resource_type,
                e.resource_id.as_deref().unwrap_or("-"),
                e.status,
                e.credential,
                if e.client.is_empty() { "-" } else { &e.client },
                if e.request_id.is_empty() {
                    "-"
                } else {
                    &e.request_id
                },
                calls
            );
        }
    }
    if !args.json {
        let _ = writeln!(out, "# {} entries", entries.len());
    }
    store.close().await;
    ExitCode::SUCCESS
}

fn token_new(name: &str) {
    let token = random_token();
    let hash = hex::encode(crate::config::sha256(&token));
    println!("token:  {token}");
    println!("sha256: {hash}");
    println!();
    println!("Give the token to the identity provider; store only the hash:");
    println!("  environment (single tenant): SCIM_BRIDGE_BEARER_TOKEN_SHA256={hash}");
    println!("  configuration file:");
    println!("    [[tenants.credentials.bearer_tokens]]");
    println!("    name = \"{name}\"");
    println!("    sha256 = \"{hash}\"");
}

/// The default folder of the sandbox's SQLite store: apart from the production default
/// `./data`, so a sandbox never writes into a production store and a later production start
/// never finds the sandbox's tenant in its own.
pub const SANDBOX_DATA_DIR: &str = "./sandbox-data";

/// Whether `serve` runs the sandbox: with `--sandbox`, or when nothing at all is configured.
/// Settings without a tenant are an error (`Err` is its message): they mean a configuration
/// that did not load completely, and a production host must not quietly become a sandbox.
fn wants_sandbox(config: &Config, args: &ServeArgs) -> Result<bool, String> {
    // Listening beyond this machine is a production setting too (the sandbox serves a
    // printed token and an emulated partner: never on a public address unless asked for).
    if let Some(listen) = args
        .listen
        .filter(|l| !args.sandbox && !l.ip().is_loopback())
    {
        if config.is_unconfigured() {
            return Err(format!(
                "no tenant is configured, but --listen {listen} is not a loopback address: \
                 configure a tenant, or run the sandbox there on purpose with \
                 scim-bridge serve --sandbox"
            ));
        }
    }
    if args.sandbox || config.nothing_configured() {
        Ok(true)
    } else if config.is_unconfigured() {
        Err(no_tenant_error(config))
    } else {
        Ok(false)
    }
}

/// What was found and what is missing, when settings come without a tenant. Names only: no
/// value is printed.
fn no_tenant_error(config: &Config) -> String {
    format!(
        "no tenant is configured, but configuration was given: {}.\n\
         \x20 Missing: a tenant. For one tenant from the environment set SCIM_BRIDGE_SITE_NAME, \
         SCIM_BRIDGE_API_KEY (or SCIM_BRIDGE_API_KEY_FILE), SCIM_BRIDGE_INVITED_BY_EMAIL and a \
         credential (SCIM_BRIDGE_BEARER_TOKEN_SHA256, ...); or add [[tenants]] to the \
         configuration file (deploy/scim-bridge.example.toml).\n\
         \x20 Settings without a tenant usually mean the configuration did not load completely \
         (an environment file that was not read), so the bridge does not fall back to the \
         sandbox.\n\
         \x20 To run the sandbox (an emulated partner with its own store) anyway: \
         scim-bridge serve --sandbox",
        config.settings_given.join(", ")
    )
}

/// Points the configuration at the sandbox's own store: `--data-dir` or
/// [`SANDBOX_DATA_DIR`], never the production folder or SQLite file, and never `store.url`.
fn use_sandbox_store(config: &mut Config, data_dir: Option<&PathBuf>) -> Result<(), String> {
    let dir = data_dir
        .cloned()
        .unwrap_or_else(|| PathBuf::from(SANDBOX_DATA_DIR));
    let production_file = sqlite_file(config.store_url().expose());
    let sandbox_file = dir.join("scim-bridge.db");
    // A folder that holds a store the sandbox did not make (no marker) is someone's data:
    // a production folder given by --data-dir while the configuration failed to load.
    let foreign = sandbox_file.exists() && !dir.join(SANDBOX_MARKER).exists();
    if foreign
        || same_path(&dir, &config.data_dir)
        || production_file.is_some_and(|f| same_path(&f, &sandbox_file))
    {
        return Err(format!(
            "--data-dir {}: the sandbox keeps its store apart from the production store ({}); \
             choose another folder (the default is {SANDBOX_DATA_DIR})",
            dir.display(),
            config.data_dir.display()
        ));
    }
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(SANDBOX_MARKER), b"a scim-bridge sandbox store\n"))
        .map_err(|e| {
            format!(
                "--data-dir {}: cannot mark it as the sandbox's: {e}",
                dir.display()
            )
        })?;
    config.data_dir = dir;
    config.store.url = None;
    Ok(())
}

/// Marks a folder as the sandbox's: the sandbox uses a folder holding a store only with it.
const SANDBOX_MARKER: &str = ".scim-bridge-sandbox";

/// The file of a `sqlite:` store URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// True when two paths name the same place (resolved when they exist, else made absolute).
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    let norm = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    norm(a) == norm(b)
}

async fn serve(path: Option<PathBuf>, log_format: Option<LogFormat>, args: ServeArgs) -> ExitCode {
    let mut config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sandbox_wanted = match wants_sandbox(&config, &args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if sandbox_wanted {
        if let Err(e) = use_sandbox_store(&mut config, args.data_dir.as_ref()) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    } else if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    init_logging(log_format, Some(&config));
    if let Some(tls) = &config.http.tls {
        if let Err(e) = http::tls::load_certified_key(tls) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }

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

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen: cannot bind {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        config.listen = addr;
    }
    let exporter = match Exporter::bind(config.metrics_listen).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: metrics_listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = exporter.as_ref().map(Exporter::metrics).unwrap_or_default();
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Work a crashed predecessor had claimed is free at once (SQLite: one process).
    match store.release_stale_claims().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            released = n,
            "released outbox claims left by a previous run"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot release stale outbox claims"),
    }
    let bridge = match Bridge::build(store, &config, config.bridge.clone(), metrics.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut state = match AppState::from_config(&config) {
        Ok(s) => s.with_bridge(bridge.clone()).with_metrics(metrics),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every connection is an open file: make room for http.max_connections of them.
    state.connections.max_connections =
        http::server::fit_open_file_limit(state.connections.max_connections);
    let reconciler = bridge.start_reconciler();
    let audit_pruner = bridge.start_audit_pruner(config.audit.retention_days);
    let exporter =
        exporter.map(|e| e.spawn(bridge.store.clone(), bridge.options.outbox_stuck_after_s));
    if let Some(s) = &sandbox {
        print_sandbox_banner(&config, s);
    }
    tracing::info!(listen = %config.listen, tenants = config.tenants.len(), "serving");
    let served =
        http::tls::run_maybe_tls(listener, state, config.http.tls.as_ref(), shutdown_signal())
            .await;
    // In-flight requests are done; let the workers finish their current items.
    for task in reconciler.into_iter().chain(audit_pruner).chain(exporter) {
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

async fn reconcile(
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
    let mut all = Vec::new();
    let mut tenants: Vec<_> = bridge.tenants.values().cloned().collect();
    tenants.sort_by(|a, b| a.name().cmp(b.name()));
    if let Some(t) = &args.tenant {
        tenants.retain(|x| x.name() == t);
        if tenants.is_empty() {
            eprintln!("error: --tenant: no tenant named '{t}'");
            return ExitCode::from(2);
        }
    }
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
        // Let the engine work the marks before exiting.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
        loop {
            match bridge.store.outbox_stats().await {
                Ok(s) if s.depth == 0 => break,
                Ok(s) if std::time::Instant::now() >= end => {
                    eprintln!(
                        "warning: {} repairs still pending; `serve` will finish them",
                        s.depth
                    );
                    break;
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                Err(e) => {
                    eprintln!("error: store: {e}");
                    break;
                }
            }
        }
    }
    bridge.shutdown().await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
        );
    } else {
        print!(
            "{}",
            crate::bridge::reconcile::render_text(&all, args.apply)
        );
    }
    if args.apply || all.iter().all(|r| r.in_sync()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

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

async fn migrate(path: Option<PathBuf>, log_format: Option<LogFormat>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    if config.store.url.is_none() {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            eprintln!(
                "error: data_dir: cannot create {}: {e}",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    match open_store(&config).await {
        Ok(store) => {
            store.close().await;
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// What the sandbox started, for the banner.
pub struct Sandbox {
    pub emulator: Emulator,
    pub emulator_url: String,
    pub token: Secret,
    pub token_from_env: bool,
    /// Started by `--sandbox` (rather than because nothing is configured).
    pub by_flag: bool,
}

/// Starts the partner emulator and describes one tenant bound to it.
async fn start_sandbox(config: &mut Config, args: &ServeArgs) -> anyhow::Result<Sandbox> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "--data-dir: cannot create the sandbox folder {}: {e}",
            config.data_dir.display()
        )
    })?;
    let api_key = Secret::new(random_token());
    let owner = "owner@sandbox.example.com".to_owned();
    let emu = Emulator::new(vec![SiteSpec {
        name: "sandbox".into(),
        api_key: api_key.clone(),
        owner_email: owner.clone(),
    }]);
    let listener = tokio::net::TcpListener::bind(
        args.emulator_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await
    .map_err(|e| anyhow::anyhow!("--emulator-listen: cannot bind: {e}"))?;
    let emulator_url = format!("http://{}", listener.local_addr()?);
    let served = emu.clone();
    tokio::spawn(async move {
        if let Err(e) = served.serve(listener, std::future::pending()).await {
            tracing::error!(error = %e, "partner emulator stopped");
        }
    });
    let (token, token_from_env) = match std::env::var("SCIM_BRIDGE_SANDBOX_TOKEN") {
        Ok(t) if !t.trim().is_empty() => (Secret::new(t.trim()), true),
        _ => (Secret::new(random_token()), false),
    };
    config.tenants = vec![TenantConfig {
        name: "sandbox".into(),
        base_path: "/scim/v2".into(),
        credentials: CredentialsConfig {
            bearer_tokens: vec![BearerTokenConfig {
                name: "sandbox".into(),
                token: Some(token.clone()),
                token_file: None,
                sha256: None,
            }],
            ..CredentialsConfig::default()
        },
        sites: vec![SiteConfig {
            base_url: url::Url::parse(&emulator_url)?,
            site_name: "sandbox".into(),
            api_key: Some(api_key),
            api_key_file: None,
            allow_admin_grant: false,
        }],
        invited_by_email: owner,
        ..TenantConfig::default()
    }];
    config.validate()?;
    Ok(Sandbox {
        emulator: emu,
        emulator_url,
        token,
        token_from_env,
        by_flag: args.sandbox,
    })
}

fn print_sandbox_banner(config: &Config, sandbox: &Sandbox) {
    let base = format!("{}/scim/v2", config.public_base());
    let token_shown = if sandbox.token_from_env {
        "$SCIM_BRIDGE_SANDBOX_TOKEN".to_owned()
    } else {
        sandbox.token.expose().to_owned()
    };
    let emu = &sandbox.emulator_url;
    // Printed on stdout for the person who started the sandbox; never logged. A closed
    // stdout is no reason to stop serving.
    let why = if sandbox.by_flag {
        "--sandbox was given"
    } else {
        "no configuration was found"
    };
    let _ = writeln!(
        std::io::stdout().lock(),
        "\nscim-bridge sandbox: {why}, so this runs against an emulated partner.\n\
         \n  SCIM base URL     {base}\n  Bearer token      {token_shown}{}\n  Partner emulator  {emu}  (site \"sandbox\"; see its state at {emu}/_emulator/sites/sandbox)\n  Data              {}\n\
         \nTry it: create a user, then see it at the emulated partner:\n  curl -s -X POST -H \"Authorization: Bearer {token_shown}\" -H 'Content-Type: application/scim+json' \\\n       -d '{{\"userName\":\"jane.doe@example.com\",\"name\":{{\"givenName\":\"Jane\",\"familyName\":\"Doe\"}}}}' {base}/Users\n  curl -s {emu}/_emulator/sites/sandbox\n",
        if sandbox.token_from_env {
            "  (from the environment)"
        } else {
            "  (generated; set SCIM_BRIDGE_SANDBOX_TOKEN to choose one)"
        },
        config.data_dir.display(),
    );
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
