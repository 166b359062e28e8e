//! The sandbox `serve` starts when nothing is configured or with `--sandbox`: whether to
//! start it, its own store apart from the production one, the in-process partner emulator and
//! the banner that tells the person who started it how to try it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ServeArgs;
use crate::config::{BearerTokenConfig, Config, CredentialsConfig, SiteConfig, TenantConfig};
use crate::partner::emulator::{Emulator, SiteSpec};
use crate::partner::rbac::SiteApi;
use crate::secret::{random_token, Secret};

/// The default folder of the sandbox's SQLite store: apart from the production default
/// `./data`, so a sandbox never writes into a production store and a later production start
/// never finds the sandbox's tenant in its own.
pub const SANDBOX_DATA_DIR: &str = "./sandbox-data";

/// Whether `serve` runs the sandbox: with `--sandbox`, or when nothing at all is configured.
/// Settings without a tenant are an error (`Err` is its message): they mean a configuration
/// that did not load completely, and a production host must not quietly become a sandbox.
pub(super) fn wants_sandbox(config: &Config, args: &ServeArgs) -> Result<bool, String> {
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
pub(super) fn no_tenant_error(config: &Config) -> String {
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
pub(super) fn use_sandbox_store(
    config: &mut Config,
    data_dir: Option<&PathBuf>,
) -> Result<(), String> {
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

/// What the sandbox started, for the banner.
pub struct Sandbox {
    pub emulator: Emulator,
    pub emulator_url: String,
    pub token: Secret,
    pub token_from_env: bool,
    /// Started by `--sandbox` (rather than because nothing is configured).
    pub by_flag: bool,
    /// The API of the emulated site.
    pub api: SiteApi,
}

/// Starts the partner emulator and describes one tenant bound to it.
pub(super) async fn start_sandbox(
    config: &mut Config,
    args: &ServeArgs,
) -> anyhow::Result<Sandbox> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "--data-dir: cannot create the sandbox folder {}: {e}",
            config.data_dir.display()
        )
    })?;
    let api_key = Secret::new(random_token());
    let owner = "owner@sandbox.example.com".to_owned();
    let spec = SiteSpec {
        name: "sandbox".into(),
        api_key: api_key.clone(),
        owner_email: owner.clone(),
    };
    let api = args.sandbox_site_api;
    let emu = match api {
        SiteApi::Groups => Emulator::builder().site(spec),
        SiteApi::Roles => Emulator::builder().rbac_site(spec),
    }
    .build();
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
            ..SiteConfig::default()
        }],
        invited_by_email: owner,
        ..TenantConfig::default()
    }];
    // The README invites conformance tools (scim2-cli's `test`, the IdPs' validators) to run
    // against the sandbox; they send bursts well above a production tenant's budget. The
    // sandbox keeps an inbound limit only when the operator set one.
    if !config.rate_limit_given {
        config.http.rate_limit.per_second = 0.0;
    }
    config.validate()?;
    Ok(Sandbox {
        emulator: emu,
        emulator_url,
        token,
        token_from_env,
        by_flag: args.sandbox,
        api,
    })
}

/// Prints, for the person who started the sandbox, where it is and how to try it.
pub(super) fn print_sandbox_banner(config: &Config, sandbox: &Sandbox) {
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
         \n  SCIM base URL     {base}\n  Bearer token      {token_shown}{}\n  Partner emulator  {emu}  (site \"sandbox\", {} API; see its state at {emu}/_emulator/sites/sandbox)\n  Data              {}\n\
         \nTry it: create a user, then see it at the emulated partner:\n  curl -s -X POST -H \"Authorization: Bearer {token_shown}\" -H 'Content-Type: application/scim+json' \\\n       -d '{{\"userName\":\"jane.doe@example.com\",\"name\":{{\"givenName\":\"Jane\",\"familyName\":\"Doe\"}}}}' {base}/Users\n  curl -s {emu}/_emulator/sites/sandbox\n",
        if sandbox.token_from_env {
            "  (from the environment)"
        } else {
            "  (generated; set SCIM_BRIDGE_SANDBOX_TOKEN to choose one)"
        },
        match sandbox.api {
            SiteApi::Groups => "v1 groups",
            SiteApi::Roles => "RBAC roles",
        },
        config.data_dir.display(),
    );
}
