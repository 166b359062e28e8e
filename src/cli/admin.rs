//! The operator commands: `status` (the outbox and the last reconcile of every site, from the
//! store), and the bulk partner commands the vendor publishes as Python scripts: `import-csv`,
//! `delete-csv` and `add-user`.
//!
//! The bulk commands go straight to the partner, as the vendor's scripts do, through the same
//! [`PartnerClient`](crate::partner::client::PartnerClient) as `serve` (same configuration, so
//! the same per-site concurrency, rate limit, retries and circuit). They do not write the
//! store's users or groups (only, with `--apply`, the audit log: an entry per row): users they create are partner users unknown to SCIM, which reconciliation reports and
//! leaves alone. A user the identity provider manages through SCIM is refused unless `--force`:
//! changing or deleting it behind the IdP's back would be undone by the membership engine or
//! the next reconcile, or leave the store describing a partner user that is gone.
//!
//! Dry run by default: every partner write carries `test_mode=true` (the partner validates it
//! and changes nothing) until `--apply`. Exit codes: 0 everything done (or would be), 1 some
//! row or site failed or was refused, 2 bad input (configuration, flags, an unreadable file or
//! a missing column). These commands log only errors (`RUST_LOG` still wins): they report what
//! they did themselves.

mod bulk;
mod rows;
mod status;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

pub use bulk::{add_user, delete_csv, import_csv};
pub use status::status;

use crate::bridge::Tenant;
use crate::config::{Config, LogConfig, LogFormat};
use crate::store::Store;

/// Everything was done (or, in a dry run, would be).
const EXIT_OK: u8 = 0;
/// Some row or site failed or was refused; `status`: unhealthy.
const EXIT_FAILED: u8 = 1;
/// The configuration, the flags or the input file cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Most failing outbox items to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

/// Which tenant and sites a bulk command writes to, and whether for real.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The tenant (needed when several are configured).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this site of the tenant (default: every site of the tenant).
    #[arg(long)]
    pub site: Option<String>,
    /// Make the changes. Without it the command is a dry run: every partner write is sent
    /// with test_mode=true, so the partner validates it and changes nothing.
    #[arg(long)]
    pub apply: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ImportCsvArgs {
    /// The CSV file, with a header row; `-` reads standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Also change users the identity provider manages through SCIM (refused by default: the
    /// bridge would undo the change or trip over it).
    #[arg(long)]
    pub force: bool,
    /// Create the groups (on an RBAC site: roles) that rows name and a site lacks, before the
    /// rows, as the bridge creates groups (the tenant's access level). A dry run validates
    /// them with test_mode=true and does not send the rows that need them. Without it such
    /// a row fails.
    #[arg(long)]
    pub create_groups: bool,
    /// Column of the email (the partner's user key).
    #[arg(long, default_value = "email", value_name = "NAME")]
    pub email_column: String,
    /// Column of the first name.
    #[arg(long, default_value = "first_name", value_name = "NAME")]
    pub first_name_column: String,
    /// Column of the last name.
    #[arg(long, default_value = "last_name", value_name = "NAME")]
    pub last_name_column: String,
    /// Column of the group names (on an RBAC site: role names) [default: groups, else roles;
    /// optional in the file: without it, groups are left alone].
    #[arg(long, value_name = "NAME")]
    pub groups_column: Option<String>,
    /// Separator of the group names in their cell.
    #[arg(long, default_value_t = ';', value_name = "CHAR")]
    pub groups_separator: char,
    /// Separator of the CSV cells (one ASCII character).
    #[arg(long, default_value_t = ',', value_name = "CHAR")]
    pub delimiter: char,
    /// For users that exist already, make the row's groups their whole set (All Users is
    /// kept); by default the row's groups are added to the ones the user has.
    #[arg(long)]
    pub replace_groups: bool,
    /// The existing partner user named as inviter of new users [default: the tenant's
    /// invited_by_email].
    #[arg(long, value_name = "EMAIL")]
    pub invited_by: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteCsvArgs {
    /// The CSV file, with a header row; `-` reads standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Also delete users the identity provider manages through SCIM (refused by default: the
    /// store would describe a partner user that is gone) and the tenant's inviting user
    /// (invited_by_email, which every create needs).
    #[arg(long)]
    pub force: bool,
    /// Column of the emails to delete (the vendor's script reads `email_address`).
    #[arg(long, default_value = "email", value_name = "NAME")]
    pub column: String,
    /// Separator of the CSV cells (one ASCII character).
    #[arg(long, default_value_t = ',', value_name = "CHAR")]
    pub delimiter: char,
}

#[derive(Debug, Clone, Args)]
pub struct AddUserArgs {
    /// The user's email.
    pub email: String,
    /// The user's first name (required by the partner; where the user exists, it replaces
    /// the one it has).
    #[arg(long, value_name = "NAME")]
    pub first_name: String,
    /// The user's last name (required by the partner; where the user exists, it replaces
    /// the one it has).
    #[arg(long, value_name = "NAME")]
    pub last_name: String,
    /// Group names, comma-separated (on an RBAC site: role names, also as --roles); they must
    /// exist at every site.
    #[arg(long, alias = "roles", value_delimiter = ',', value_name = "NAMES")]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub target: Target,
    /// Also change the user where the identity provider manages it through SCIM (refused by
    /// default: the bridge would undo the change).
    #[arg(long)]
    pub force: bool,
    /// Where the user exists already, make --groups its whole set (All Users is kept); by
    /// default they are added.
    #[arg(long)]
    pub replace_groups: bool,
    /// The existing partner user named as inviter [default: the tenant's invited_by_email].
    #[arg(long, value_name = "EMAIL")]
    pub invited_by: Option<String>,
}

/// Loads the configuration and starts quiet logging; `Err` is the exit code (2: bad config).
fn load_quiet(path: Option<PathBuf>, log_format: Option<LogFormat>) -> Result<Config, ExitCode> {
    let config = super::load(path)?;
    crate::telemetry::init(&LogConfig {
        level: "error".into(),
        format: log_format.unwrap_or(config.log.format),
    });
    if config.is_unconfigured() {
        eprintln!("error: no tenant is configured (see `scim-bridge check-config`)");
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    Ok(config)
}

/// What a bulk command works on: the tenant with a client per chosen site, and the store.
struct Context {
    tenant: Tenant,
    store: Store,
    apply: bool,
    /// Sent on every partner write: true unless --apply, and true for a dry-run tenant.
    test_mode: bool,
    force: bool,
}

impl Context {
    /// Picks the tenant and sites of `target` and builds their partner clients as `serve`
    /// does. `Err` is the exit code (2 for an unknown tenant or site).
    async fn open(config: &Config, target: &Target, force: bool) -> Result<Context, ExitCode> {
        let bad = |message: String| {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        };
        let names = || {
            config
                .tenants
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tenant_config = match (&target.tenant, config.tenants.as_slice()) {
            (Some(name), tenants) => tenants.iter().find(|t| &t.name == name).ok_or_else(|| {
                bad(format!(
                    "--tenant: no tenant named '{name}' (configured: {})",
                    names()
                ))
            })?,
            (None, [only]) => only,
            (None, _) => {
                return Err(bad(format!(
                    "several tenants are configured: choose one with --tenant ({})",
                    names()
                )))
            }
        };
        let mut tenant_config = tenant_config.clone();
        if let Some(site) = &target.site {
            tenant_config.sites.retain(|s| &s.site_name == site);
            if tenant_config.sites.is_empty() {
                return Err(bad(format!(
                    "--site: tenant '{}' has no site named '{site}'",
                    tenant_config.name
                )));
            }
        }
        let tenant = Tenant::connect(&tenant_config, &config.bridge.partner).map_err(bad)?;
        let store = super::open_store(config).await?;
        tenant.keep_links_in(&store);
        let test_mode = !target.apply || tenant.dry_run();
        if target.apply && tenant.dry_run() {
            eprintln!(
                "note: tenant '{}' is configured with dry_run = true: writes still carry \
                 test_mode=true",
                tenant.name()
            );
        }
        Ok(Context {
            tenant,
            store,
            apply: target.apply,
            test_mode,
            force,
        })
    }
}

/// Progress on stderr: a bar when stderr is a terminal, else a plain line every tenth of the
/// work. Result lines go to stdout through [`Progress::println`], which keeps the bar intact.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        label: String,
        total: u64,
        done: u64,
        every: u64,
    },
}

impl Progress {
    fn new(label: &str, total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
            ) {
                bar.set_style(style);
            }
            bar.set_message(label.to_owned());
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                label: label.to_owned(),
                total,
                done: 0,
                every: (total / 10).max(1),
            }
        }
    }

    fn inc(&mut self) {
        match self {
            Progress::Bar(bar) => bar.inc(1),
            Progress::Lines {
                label,
                total,
                done,
                every,
            } => {
                *done += 1;
                if *done % *every == 0 || *done == *total {
                    eprintln!("{label}: {done}/{total}");
                }
            }
        }
    }

    fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| println!("{line}")),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `ms` since the Unix epoch as RFC 3339.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A duration in milliseconds as `45s`, `12m 5s`, `3h 5m` or `2d 4h`.
fn human(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(-5), "0s");
        assert_eq!(human(59_999), "59s");
        assert_eq!(human(725_000), "12m 5s");
        assert_eq!(human(3 * 3_600_000 + 5 * 60_000), "3h 5m");
        assert_eq!(human(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
