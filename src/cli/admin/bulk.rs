//! `import-csv`, `delete-csv` and `add-user`: the vendor's bulk scripts, made safe to run.
//!
//! Each command reads and checks all of its input first, then per site reads the partner's
//! users (and groups) once, decides per row what to do, and sends the writes through the
//! site's client, as many at once as the client allows. Rows are never sent when they are bad,
//! when their email belongs to a user SCIM manages (without `--force`), or when they name a
//! group the site does not have (unless `import-csv --create-groups`, which creates it first).
//! Result lines print in line order. A summary at the end lists every such row and every
//! failed call with its reason.
//!
//! With `--apply` every row goes into the audit log as an entry of its own (the command, the
//! row's email lowercased as the resource id, the outcome as a status, the site, the line and
//! the file in `detail`), beside one summary entry per site, so `scim-bridge audit --resource
//! grace@example.com` answers who deleted grace. Dry runs change nothing and are not recorded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::stream::{self, StreamExt};

use super::rows::{self, BadRow, DeleteRow, ImportColumns, ImportRow, Table};
use super::{
    load_quiet, AddUserArgs, Context, DeleteCsvArgs, ImportCsvArgs, Progress, EXIT_BAD_INPUT,
    EXIT_FAILED, EXIT_OK,
};
use crate::bridge::mapping::same_groups;
use crate::bridge::Site;
use crate::config::LogFormat;
use crate::partner::client::{NewGroup, NewUser, UserUpdate};
use crate::partner::{PartnerErrorKind, PartnerGroup, PartnerUser, ALL_USERS_GROUP};
use crate::store::AuditEntry;

/// What happened to one row at one site.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created,
    /// With the fields that changed.
    Updated(Vec<&'static str>),
    Unchanged,
    Deleted,
    /// `delete-csv`: the site has no such user (nothing to do).
    Absent,
    Failed(String),
}

impl Outcome {
    fn ok(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }

    /// The summary's key, in its order.
    fn key(&self) -> usize {
        match self {
            Outcome::Created => 0,
            Outcome::Updated(_) => 1,
            Outcome::Unchanged => 2,
            Outcome::Deleted => 3,
            Outcome::Absent => 4,
            Outcome::Failed(_) => 5,
        }
    }

    fn label(key: usize, apply: bool) -> &'static str {
        match (key, apply) {
            (0, true) => "created",
            (0, false) => "would be created",
            (1, true) => "updated",
            (1, false) => "would be updated",
            (2, _) => "unchanged",
            (3, true) => "deleted",
            (3, false) => "would be deleted",
            (4, _) => "not at the site",
            _ => "failed",
        }
    }

    /// The outcome in the audit log: a word and an HTTP-like status.
    fn audit(&self) -> (&'static str, u16) {
        match self {
            Outcome::Created => ("created", 201),
            Outcome::Updated(_) => ("updated", 200),
            Outcome::Unchanged => ("unchanged", 200),
            Outcome::Deleted => ("deleted", 204),
            Outcome::Absent => ("absent", 404),
            Outcome::Failed(_) => ("failed", 502),
        }
    }

    fn describe(&self, apply: bool) -> String {
        match self {
            Outcome::Updated(fields) => {
                format!("{} ({})", Outcome::label(1, apply), fields.join(", "))
            }
            Outcome::Failed(reason) => format!("FAILED: {reason}"),
            other => Outcome::label(other.key(), apply).to_owned(),
        }
    }
}

/// One write to send, or what was decided without one.
enum Plan {
    Create(NewUser),
    Update(UserUpdate, Vec<&'static str>),
    Delete,
    Done(Outcome),
}

/// One (row, site) of the run.
struct Op<'a> {
    line: u64,
    email: String,
    site: &'a Site,
    plan: Plan,
}

/// A row refused before any site was asked.
struct Refused {
    line: u64,
    email: String,
    reason: String,
}

/// A group `import-csv --create-groups` created (or would create) at a site.
struct GroupMade {
    site: String,
    name: String,
    /// `Ok(true)`: created; `Ok(false)`: the site had it meanwhile (adopted).
    outcome: Result<bool, String>,
}

/// Everything a run produced, for the summary and the exit code.
#[derive(Default)]
struct Results {
    bad: Vec<BadRow>,
    refused: Vec<Refused>,
    /// (line, email, site, outcome), in line order.
    done: Vec<(u64, String, String, Outcome)>,
    groups: Vec<GroupMade>,
}

impl Results {
    fn all_ok(&self) -> bool {
        self.bad.is_empty()
            && self.refused.is_empty()
            && self.done.iter().all(|d| d.3.ok())
            && self.groups.iter().all(|g| g.outcome.is_ok())
    }
}

/// `scim-bridge import-csv`.
pub async fn import_csv(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: ImportCsvArgs,
) -> ExitCode {
    let config = match load_quiet(path, log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let table = match read_table(&args.file, args.delimiter) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let column = |flag: &str, name: &str| {
        table.column(name).ok_or_else(|| {
            eprintln!(
                "error: {flag}: the file has no column '{name}' (its columns: {})",
                table.headers.join(", ")
            );
            ExitCode::from(EXIT_BAD_INPUT)
        })
    };
    let columns = match (|| {
        Ok::<_, ExitCode>(ImportColumns {
            email: column("--email-column", &args.email_column)?,
            first_name: column("--first-name-column", &args.first_name_column)?,
            last_name: column("--last-name-column", &args.last_name_column)?,
            groups: match &args.groups_column {
                Some(name) => Some(column("--groups-column", name)?),
                // An RBAC site's file may call the column `roles` (role names).
                None => table.column("groups").or_else(|| table.column("roles")),
            },
        })
    })() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = check_invited_by(args.invited_by.as_deref()) {
        return code;
    }
    let ctx = match Context::open(&config, &args.target, args.force).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (rows, bad) = table.import_rows(columns, args.groups_separator);
    let invited_by = args
        .invited_by
        .clone()
        .unwrap_or_else(|| ctx.tenant.config.invited_by_email.clone());
    let input = format!("{} ({} rows)", args.file.display(), table.len());
    header("import-csv", &input, &ctx);
    let results = upsert(
        &ctx,
        rows,
        bad,
        &invited_by,
        Options {
            replace_groups: args.replace_groups,
            create_groups: args.create_groups,
            progress_label: Some("import-csv"),
        },
    )
    .await;
    finish(
        &ctx,
        "IMPORT_CSV",
        &args.file.display().to_string(),
        None,
        results,
    )
    .await
}

/// `scim-bridge add-user`.
pub async fn add_user(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: AddUserArgs,
) -> ExitCode {
    let config = match load_quiet(path, log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let email = args.email.trim().to_owned();
    let first_name = args.first_name.trim().to_owned();
    let last_name = args.last_name.trim().to_owned();
    let checked = rows::check_email(&email)
        .map_err(|e| format!("EMAIL: {e}"))
        .and_then(|()| rows::check_name("first name", &first_name))
        .and_then(|()| rows::check_name("last name", &last_name))
        .and_then(|()| rows::parse_groups(&args.groups.join(","), ','));
    let groups = match checked {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if let Err(code) = check_invited_by(args.invited_by.as_deref()) {
        return code;
    }
    let ctx = match Context::open(&config, &args.target, args.force).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let invited_by = args
        .invited_by
        .clone()
        .unwrap_or_else(|| ctx.tenant.config.invited_by_email.clone());
    header("add-user", &email, &ctx);
    let row = ImportRow {
        line: 0,
        email: email.clone(),
        first_name,
        last_name,
        groups: Some(groups),
    };
    let results = upsert(
        &ctx,
        vec![row],
        Vec::new(),
        &invited_by,
        Options {
            replace_groups: args.replace_groups,
            create_groups: false,
            progress_label: None,
        },
    )
    .await;
    // Lowercased, as the rows: `audit --resource` finds both.
    let resource = email.to_lowercase();
    finish(&ctx, "ADD_USER", &email, Some(&resource), results).await
}

/// `scim-bridge delete-csv`.
pub async fn delete_csv(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: DeleteCsvArgs,
) -> ExitCode {
    let config = match load_quiet(path, log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let table = match read_table(&args.file, args.delimiter) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let Some(column) = table.column(&args.column) else {
        eprintln!(
            "error: --column: the file has no column '{}' (its columns: {})",
            args.column,
            table.headers.join(", ")
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let ctx = match Context::open(&config, &args.target, args.force).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (rows, bad) = table.delete_rows(column);
    let input = format!("{} ({} rows)", args.file.display(), table.len());
    header("delete-csv", &input, &ctx);
    let results = delete(&ctx, rows, bad).await;
    finish(
        &ctx,
        "DELETE_CSV",
        &args.file.display().to_string(),
        None,
        results,
    )
    .await
}

/// Reads the whole file (or standard input for `-`) and parses it; `Err` is exit code 2.
fn read_table(file: &Path, delimiter: char) -> Result<Table, ExitCode> {
    let bad = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let delimiter = u8::try_from(delimiter)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| bad("--delimiter must be one ASCII character".into()))?;
    let bytes = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| bad(format!("cannot read standard input: {e}")))?;
        buf
    } else {
        std::fs::read(file).map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?
    };
    let table =
        Table::parse(&bytes, delimiter).map_err(|e| bad(format!("{}: {e}", file.display())))?;
    if table.is_empty() {
        return Err(bad(format!("{}: no rows after the header", file.display())));
    }
    Ok(table)
}

fn check_invited_by(invited_by: Option<&str>) -> Result<(), ExitCode> {
    match invited_by.map(rows::check_email) {
        Some(Err(e)) => {
            eprintln!("error: --invited-by: {e}");
            Err(ExitCode::from(EXIT_BAD_INPUT))
        }
        _ => Ok(()),
    }
}

fn header(command: &str, input: &str, ctx: &Context) {
    println!(
        "{command} {input}: tenant {}, site{} {}",
        ctx.tenant.name(),
        if ctx.tenant.sites.len() == 1 { "" } else { "s" },
        ctx.tenant.site_names().join(", ")
    );
    if !ctx.apply {
        println!("DRY RUN: every partner write is sent with test_mode=true; nothing will change (--apply to make the changes)");
    }
}

/// Lowercased partner emails of the tenant's SCIM users -> their SCIM id.
async fn scim_managed(ctx: &Context) -> Result<HashMap<String, String>, String> {
    let users = ctx
        .store
        .find_users(ctx.tenant.name(), &[])
        .await
        .map_err(|e| format!("cannot read the store's users: {e}"))?;
    Ok(users
        .into_iter()
        .filter(|u| !u.partner_email.is_empty())
        .map(|u| (u.partner_email.to_lowercase(), u.id))
        .collect())
}

/// Splits off the rows whose email a SCIM user of the tenant has (unless `--force`). `Err`
/// when the store cannot tell: then nothing is sent at all.
async fn guard<R>(
    ctx: &Context,
    rows: Vec<R>,
    email: impl Fn(&R) -> (&str, u64),
    results: &mut Results,
) -> Result<Vec<R>, String> {
    if ctx.force {
        return Ok(rows);
    }
    let managed = scim_managed(ctx).await?;
    let mut kept = Vec::new();
    for row in rows {
        let (e, line) = email(&row);
        match managed.get(&e.to_lowercase()) {
            Some(id) => results.refused.push(Refused {
                line,
                email: e.to_owned(),
                reason: format!(
                    "managed by SCIM (user {id}): change it in the identity provider, or pass --force"
                ),
            }),
            None => kept.push(row),
        }
    }
    Ok(kept)
}

/// How `upsert` treats the rows.
struct Options<'a> {
    /// Make the row's groups the user's whole set (All Users kept) instead of adding them.
    replace_groups: bool,
    /// Create the groups the rows name and a site lacks, before the rows.
    create_groups: bool,
    /// The progress label of a bulk command; `None` for add-user (every site's line prints).
    progress_label: Option<&'a str>,
}

/// Creates or updates every row at every site of the context.
async fn upsert(
    ctx: &Context,
    rows: Vec<ImportRow>,
    bad: Vec<BadRow>,
    invited_by: &str,
    options: Options<'_>,
) -> Result<Results, String> {
    let mut results = Results {
        bad,
        ..Results::default()
    };
    let rows = guard(ctx, rows, |r| (r.email.as_str(), r.line), &mut results).await?;
    let mut ops = Vec::new();
    for site in &ctx.tenant.sites {
        let read = tokio::try_join!(site.client.list_users(), site.client.list_groups());
        let (users, mut groups) = match read {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("cannot read the site: {e}");
                ops.extend(rows.iter().map(|r| Op {
                    line: r.line,
                    email: r.email.clone(),
                    site,
                    plan: Plan::Done(Outcome::Failed(reason.clone())),
                }));
                continue;
            }
        };
        let users: HashMap<String, PartnerUser> = users
            .into_iter()
            .map(|u| (u.email.to_lowercase(), u))
            .collect();
        // Groups made in test mode exist only as a promise: the partner cannot check a user
        // write that names them, so those rows are decided here and not sent.
        let mut promised: HashSet<String> = HashSet::new();
        if options.create_groups {
            for name in missing_groups(&rows, &groups) {
                let made = create_group(ctx, site, &name, invited_by).await;
                let text = format!(
                    "group '{name}'  site {}: {}",
                    site.name,
                    match &made {
                        Ok(true) if ctx.apply => "created".to_owned(),
                        Ok(true) => "would be created".to_owned(),
                        Ok(false) => "exists at the site (used as it is)".to_owned(),
                        Err(reason) => format!("FAILED: {reason}"),
                    }
                );
                println!("{text}");
                if made.is_ok() {
                    if ctx.test_mode {
                        promised.insert(name.to_lowercase());
                    }
                    groups.push(PartnerGroup {
                        name: name.clone(),
                        access: ctx.tenant.config.access_for(&name),
                    });
                }
                results.groups.push(GroupMade {
                    site: site.name.clone(),
                    name,
                    outcome: made,
                });
            }
        }
        for row in &rows {
            let mut plan = plan_upsert(
                row,
                users.get(&row.email.to_lowercase()),
                &groups,
                invited_by,
                options.replace_groups,
            );
            let needs_promised = row
                .groups
                .iter()
                .flatten()
                .any(|g| promised.contains(&g.to_lowercase()));
            if needs_promised {
                plan = match plan {
                    Plan::Create(_) => Plan::Done(Outcome::Created),
                    Plan::Update(_, fields) => Plan::Done(Outcome::Updated(fields)),
                    other => other,
                };
            }
            ops.push(Op {
                line: row.line,
                email: row.email.clone(),
                site,
                plan,
            });
        }
    }
    results.done = run(ctx, ops, options.progress_label).await;
    Ok(results)
}

/// The groups the rows name that `site_groups` lacks (case-insensitive), each once, spelled
/// as first met, in row order.
fn missing_groups(rows: &[ImportRow], site_groups: &[PartnerGroup]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for g in rows.iter().flat_map(|r| r.groups.iter().flatten()) {
        let known = site_groups.iter().any(|s| s.name.eq_ignore_ascii_case(g))
            || missing.iter().any(|m| m.eq_ignore_ascii_case(g));
        if !known {
            missing.push(g.clone());
        }
    }
    missing
}

/// Creates group `name` at `site` as the bridge creates a SCIM group there (the tenant's
/// access level for it; on an RBAC site a role, through the same client call), with
/// test_mode=true in a dry run. `Ok(false)`: the site has it already (the create conflicted).
async fn create_group(
    ctx: &Context,
    site: &Site,
    name: &str,
    invited_by: &str,
) -> Result<bool, String> {
    let new = NewGroup {
        name: name.to_owned(),
        access: ctx.tenant.config.access_for(name),
        created_by_email: Some(invited_by.to_owned()),
    };
    match site.client.create_group(&new, ctx.test_mode).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == PartnerErrorKind::Conflict => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// What to do for one row at a site whose users and groups are known.
fn plan_upsert(
    row: &ImportRow,
    existing: Option<&PartnerUser>,
    site_groups: &[PartnerGroup],
    invited_by: &str,
    replace_groups: bool,
) -> Plan {
    // The site's spelling of each group; a group the site lacks fails the row unsent.
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for g in row.groups.iter().flatten() {
        match site_groups.iter().find(|s| s.name.eq_ignore_ascii_case(g)) {
            Some(s) => wanted.push(s.name.clone()),
            None => unknown.push(g.as_str()),
        }
    }
    if !unknown.is_empty() {
        return Plan::Done(Outcome::Failed(format!(
            "the site has no group {} (create {} first, or pass --create-groups)",
            unknown
                .iter()
                .map(|g| format!("'{g}'"))
                .collect::<Vec<_>>()
                .join(", "),
            if unknown.len() == 1 { "it" } else { "them" }
        )));
    }
    let Some(user) = existing else {
        return Plan::Create(NewUser {
            email: row.email.clone(),
            first_name: row.first_name.clone(),
            last_name: row.last_name.clone(),
            groups: wanted,
            invited_by_email: invited_by.to_owned(),
        });
    };
    let mut update = UserUpdate::default();
    let mut changed = Vec::new();
    if user.first_name != row.first_name {
        update.first_name = Some(row.first_name.clone());
        changed.push("first_name");
    }
    if user.last_name != row.last_name {
        update.last_name = Some(row.last_name.clone());
        changed.push("last_name");
    }
    if row.groups.is_some() {
        let mut target: Vec<String> = if replace_groups {
            user.groups
                .iter()
                .filter(|g| g.eq_ignore_ascii_case(ALL_USERS_GROUP))
                .cloned()
                .collect()
        } else {
            user.groups.clone()
        };
        for g in wanted {
            if !target.iter().any(|t| t.eq_ignore_ascii_case(&g)) {
                target.push(g);
            }
        }
        if !same_groups(&user.groups, &target) {
            // The full intended list, as the partner contract wants it on a PUT.
            update.groups = Some(target);
            changed.push("groups");
        }
    }
    if changed.is_empty() {
        Plan::Done(Outcome::Unchanged)
    } else {
        Plan::Update(update, changed)
    }
}

/// Deletes every row's user at every site of the context.
async fn delete(ctx: &Context, rows: Vec<DeleteRow>, bad: Vec<BadRow>) -> Result<Results, String> {
    let mut results = Results {
        bad,
        ..Results::default()
    };
    // The inviting user is how new users get in: deleting it breaks every later create.
    let inviter = ctx.tenant.config.invited_by_email.to_lowercase();
    let rows: Vec<DeleteRow> = rows
        .into_iter()
        .filter_map(|r| {
            if !ctx.force && r.email.to_lowercase() == inviter {
                results.refused.push(Refused {
                    line: r.line,
                    email: r.email,
                    reason: "the tenant's invited_by_email user, needed to create users: pass --force to delete it".into(),
                });
                None
            } else {
                Some(r)
            }
        })
        .collect();
    let rows = guard(ctx, rows, |r| (r.email.as_str(), r.line), &mut results).await?;
    let mut ops = Vec::new();
    for site in &ctx.tenant.sites {
        let present: Result<HashSet<String>, String> = site
            .client
            .list_users()
            .await
            .map(|users| users.into_iter().map(|u| u.email.to_lowercase()).collect())
            .map_err(|e| format!("cannot read the site: {e}"));
        for row in &rows {
            let plan = match &present {
                Err(reason) => Plan::Done(Outcome::Failed(reason.clone())),
                Ok(p) if p.contains(&row.email.to_lowercase()) => Plan::Delete,
                Ok(_) => Plan::Done(Outcome::Absent),
            };
            ops.push(Op {
                line: row.line,
                email: row.email.clone(),
                site,
                plan,
            });
        }
    }
    results.done = run(ctx, ops, Some("delete-csv")).await;
    Ok(results)
}

/// Sends the writes, as many at once as the sites' clients allow, reporting progress and a
/// line per change or failure in (line, site) order (a write that finishes early waits for
/// the lines before it to print). Returns every outcome in that order.
async fn run(
    ctx: &Context,
    mut ops: Vec<Op<'_>>,
    progress_label: Option<&str>,
) -> Vec<(u64, String, String, Outcome)> {
    let total = ops.len() as u64;
    let mut progress = progress_label.map(|label| Progress::new(label, total));
    let site_order: Vec<String> = ctx.tenant.site_names();
    let place = |site: &str| {
        site_order
            .iter()
            .position(|s| s == site)
            .unwrap_or(usize::MAX)
    };
    ops.sort_by_key(|op| (op.line, place(&op.site.name)));
    let parallel: usize = ctx
        .tenant
        .sites
        .iter()
        .map(|s| s.client.options().max_concurrency)
        .sum::<usize>()
        .max(1);
    let test_mode = ctx.test_mode;
    let mut done = Vec::with_capacity(ops.len());
    let mut outcomes = stream::iter(ops.into_iter().map(|op| async move {
        let outcome = match op.plan {
            Plan::Done(outcome) => outcome,
            Plan::Create(new) => match op.site.client.create_user(&new, test_mode).await {
                Ok(_) => Outcome::Created,
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Plan::Update(update, fields) => {
                match op
                    .site
                    .client
                    .update_user(&op.email, &update, test_mode)
                    .await
                {
                    Ok(_) => Outcome::Updated(fields),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Plan::Delete => match op.site.client.delete_user(&op.email, test_mode).await {
                Ok(()) => Outcome::Deleted,
                Err(e) => Outcome::Failed(e.to_string()),
            },
        };
        (op.line, op.email, op.site.name.clone(), outcome)
    }))
    .buffered(parallel);
    while let Some((line, email, site, outcome)) = outcomes.next().await {
        // add-user (no progress) prints every site; the bulk commands only what changed or
        // failed, the summary counts the rest.
        let print = progress.is_none() || !matches!(outcome, Outcome::Unchanged | Outcome::Absent);
        if print {
            let text = format!(
                "{}{email}  site {site}: {}",
                at_line(line),
                outcome.describe(ctx.apply)
            );
            match &progress {
                Some(p) => p.println(&text),
                None => println!("{text}"),
            }
        }
        if let Some(p) = progress.as_mut() {
            p.inc();
        }
        done.push((line, email, site, outcome));
    }
    if let Some(p) = progress {
        p.finish();
    }
    done
}

fn at_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// Prints the summary, records the run in the audit log (with --apply) and picks the exit
/// code.
async fn finish(
    ctx: &Context,
    operation: &str,
    input: &str,
    resource_id: Option<&str>,
    results: Result<Results, String>,
) -> ExitCode {
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}; nothing was sent");
            ctx.store.close().await;
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let per_site = print_summary(ctx, operation, &results);
    print_problems(&results);
    let all_ok = results.all_ok();
    if ctx.apply && !ctx.test_mode {
        record_rows(ctx, operation, input, &results).await;
        record(ctx, operation, input, resource_id, &per_site, all_ok).await;
    }
    ctx.store.close().await;
    ExitCode::from(if all_ok { EXIT_OK } else { EXIT_FAILED })
}

/// Prints the summary: per site, every count that matters to the command and any other that is
/// not zero, then the rows not sent. Returns the counts per site, for the audit log.
fn print_summary(ctx: &Context, operation: &str, results: &Results) -> Vec<(String, [u64; 6])> {
    println!();
    println!(
        "summary{}:",
        if ctx.apply {
            ""
        } else {
            " (dry run: nothing was changed)"
        }
    );
    let mut per_site: Vec<(String, [u64; 6])> = ctx
        .tenant
        .site_names()
        .into_iter()
        .map(|s| (s, [0; 6]))
        .collect();
    for (_, _, site, outcome) in &results.done {
        if let Some((_, counts)) = per_site.iter_mut().find(|(s, _)| s == site) {
            counts[outcome.key()] += 1;
        }
    }
    // Every count that matters to the command, and any other that is not zero.
    let always: &[usize] = if operation == "DELETE_CSV" {
        &[3, 4, 5]
    } else {
        &[0, 1, 2, 5]
    };
    for (site, counts) in &per_site {
        let parts: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(key, n)| **n > 0 || always.contains(key))
            .map(|(key, n)| format!("{n} {}", Outcome::label(key, ctx.apply)))
            .collect();
        println!("  site {site}: {}", parts.join(", "));
    }
    for (site, _) in &per_site {
        let made: Vec<&GroupMade> = results.groups.iter().filter(|g| &g.site == site).collect();
        if made.is_empty() {
            continue;
        }
        let count =
            |f: fn(&Result<bool, String>) -> bool| made.iter().filter(|g| f(&g.outcome)).count();
        println!(
            "  groups at site {site}: {} {}, {} already there, {} failed",
            count(|o| matches!(o, Ok(true))),
            if ctx.apply {
                "created"
            } else {
                "would be created"
            },
            count(|o| matches!(o, Ok(false))),
            count(Result::is_err),
        );
    }
    if !results.bad.is_empty() || !results.refused.is_empty() {
        println!(
            "  rows not sent: {} invalid, {} refused",
            results.bad.len(),
            results.refused.len()
        );
    }
    per_site
}

/// Prints every invalid, refused or failed row, in line order (groups that could not be
/// created first).
fn print_problems(results: &Results) {
    let mut problems: Vec<(u64, String)> = Vec::new();
    for g in &results.groups {
        if let Err(reason) = &g.outcome {
            problems.push((
                0,
                format!(
                    "group '{}': site {}: could not be created: {reason}",
                    g.name, g.site
                ),
            ));
        }
    }
    for b in &results.bad {
        problems.push((
            b.line,
            format!(
                "{}{}: invalid: {}",
                at_line(b.line),
                shown(&b.email),
                b.reason
            ),
        ));
    }
    for r in &results.refused {
        problems.push((
            r.line,
            format!(
                "{}{}: refused: {}",
                at_line(r.line),
                shown(&r.email),
                r.reason
            ),
        ));
    }
    for (line, email, site, outcome) in &results.done {
        if let Outcome::Failed(reason) = outcome {
            problems.push((
                *line,
                format!("{}{email}: site {site}: failed: {reason}", at_line(*line)),
            ));
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|(line, _)| *line);
        println!("problems ({}):", problems.len());
        for (_, p) in &problems {
            println!("  {p}");
        }
    }
}

fn shown(email: &str) -> String {
    if email.is_empty() {
        "(no email)".into()
    } else {
        format!("{email:?}")
    }
}

/// Who ran the command, for the audit log's client field: the login name the environment
/// gives (`USER`, `LOGNAME`, `USERNAME`), else nothing.
fn operator() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .map(|u| format!("cli:{}", u.trim()))
        .unwrap_or_default()
}

/// One audit entry per row and site (and per group created) of a run that changed the
/// partner: the row's email, lowercased, is the resource id, so the audit's `--resource`
/// finds it. Rows refused or invalid are recorded too (no site), with 403 and 400.
async fn record_rows(ctx: &Context, operation: &str, input: &str, results: &Results) {
    let at_ms = crate::bridge::now_ms();
    let client = operator();
    let entry =
        |resource_type: &str, resource: &str, status: u16, detail: serde_json::Value| AuditEntry {
            at_ms,
            tenant: ctx.tenant.name().to_owned(),
            credential: "cli".into(),
            client: client.clone(),
            request_id: String::new(),
            operation: operation.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: Some(resource.to_lowercase()).filter(|r| !r.is_empty()),
            status,
            detail: Some(detail.to_string()),
        };
    let mut entries = Vec::new();
    for g in &results.groups {
        let (outcome, status, reason) = match &g.outcome {
            Ok(true) => ("created", 201, None),
            Ok(false) => ("exists", 200, None),
            Err(r) => ("failed", 502, Some(r.as_str())),
        };
        let detail = serde_json::json!({
            "site": g.site, "input": input, "group": g.name, "outcome": outcome, "reason": reason,
        });
        entries.push(entry("Groups", &g.name, status, detail));
    }
    let mut rows: Vec<(u64, AuditEntry)> = Vec::new();
    for b in &results.bad {
        let detail = serde_json::json!({
            "line": b.line, "input": input, "email": b.email, "outcome": "invalid",
            "reason": b.reason,
        });
        rows.push((b.line, entry("Users", &b.email, 400, detail)));
    }
    for r in &results.refused {
        let detail = serde_json::json!({
            "line": r.line, "input": input, "email": r.email, "outcome": "refused",
            "reason": r.reason,
        });
        rows.push((r.line, entry("Users", &r.email, 403, detail)));
    }
    for (line, email, site, outcome) in &results.done {
        let (word, status) = outcome.audit();
        let mut detail = serde_json::json!({
            "site": site, "line": line, "input": input, "email": email, "outcome": word,
        });
        if *line == 0 {
            // add-user: no file, no line.
            if let Some(d) = detail.as_object_mut() {
                d.remove("line");
                d.remove("input");
            }
        }
        match outcome {
            Outcome::Updated(fields) => detail["fields"] = serde_json::json!(fields),
            Outcome::Failed(reason) => detail["reason"] = serde_json::json!(reason),
            _ => {}
        }
        rows.push((*line, entry("Users", email, status, detail)));
    }
    rows.sort_by_key(|(line, _)| *line);
    entries.extend(rows.into_iter().map(|(_, e)| e));
    ctx.store.record_audit_batch(&entries).await;
}

/// One audit entry per site for a run that changed the partner.
async fn record(
    ctx: &Context,
    operation: &str,
    input: &str,
    resource_id: Option<&str>,
    per_site: &[(String, [u64; 6])],
    all_ok: bool,
) {
    for (site, c) in per_site {
        let detail = serde_json::json!({
            "site": site,
            "input": input,
            "created": c[0],
            "updated": c[1],
            "unchanged": c[2],
            "deleted": c[3],
            "absent": c[4],
            "failed": c[5],
        });
        ctx.store
            .record_audit(&AuditEntry {
                at_ms: crate::bridge::now_ms(),
                tenant: ctx.tenant.name().to_owned(),
                credential: "cli".into(),
                client: operator(),
                request_id: String::new(),
                operation: operation.to_owned(),
                resource_type: "Users".into(),
                resource_id: resource_id.map(str::to_owned),
                // 207: some rows of the run failed.
                status: if all_ok { 200 } else { 207 },
                detail: Some(detail.to_string()),
            })
            .await;
    }
}

#[cfg(test)]
mod tests;
