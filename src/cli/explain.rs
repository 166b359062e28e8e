//! `scim-bridge explain` and `explain-group`: why a person has or lacks access, from the store
//! (and with `--live`, the partner read now), as text or JSON. Writes nothing; starts no
//! worker.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{init_logging, load, open_store, ExplainArgs};
use crate::bridge::explain::{self, ExplainError, GroupExplanation, UserExplanation};
use crate::bridge::Tenant;
use crate::config::LogFormat;

/// Runs `explain` (`group` false) or `explain-group`: exit code 0 when found, 1 when no such
/// user or group (or the store failed), 2 on bad input.
pub(super) async fn explain(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: ExplainArgs,
    group: bool,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    let names = config
        .tenants
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let tenant_config = match (&args.tenant, config.tenants.as_slice()) {
        (Some(name), tenants) => match tenants.iter().find(|t| &t.name == name) {
            Some(t) => t,
            None => {
                eprintln!("error: --tenant: no tenant named '{name}' (configured: {names})");
                return ExitCode::from(2);
            }
        },
        (None, [only]) => only,
        (None, []) => {
            eprintln!("error: no tenant is configured");
            return ExitCode::from(2);
        }
        (None, _) => {
            eprintln!("error: several tenants are configured: choose one with --tenant ({names})");
            return ExitCode::from(2);
        }
    };
    let tenant = match Tenant::connect(tenant_config, &config.bridge.partner) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    tenant.keep_links_in(&store);
    let out = if group {
        explain::group(&store, &tenant, &args.who, args.live)
            .await
            .map(|g| render(&g, args.json, group_text))
    } else {
        explain::user(&store, &tenant, &args.who, args.live)
            .await
            .map(|u| render(&u, args.json, user_text))
    };
    store.close().await;
    match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(ExplainError::NotFound(what)) => {
            eprintln!("error: {what}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn render<T: serde::Serialize>(value: &T, json: bool, text: fn(&T) -> String) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
        s.push('\n');
        s
    } else {
        text(value)
    }
}

/// The user as text, for a terminal.
pub fn user_text(e: &UserExplanation) -> String {
    let mut s = String::new();
    match &e.user {
        Some(u) => {
            let _ = writeln!(
                s,
                "user {} ({}) in tenant {}: {}",
                u.user_name,
                u.id,
                e.tenant,
                if u.active { "active" } else { "INACTIVE" }
            );
            if let Some(d) = &u.display_name {
                let _ = writeln!(s, "  displayName   {d}");
            }
            let _ = writeln!(
                s,
                "  partner email {}",
                if u.partner_email.is_empty() {
                    "(none)"
                } else {
                    &u.partner_email
                }
            );
            let _ = writeln!(s, "  emails        {}", u.emails.join(", "));
            let _ = writeln!(
                s,
                "  modified      {} (version {})",
                u.last_modified, u.version
            );
        }
        None => {
            let _ = writeln!(
                s,
                "no SCIM user '{}' in tenant {}: deleted",
                e.query, e.tenant
            );
        }
    }
    for r in &e.removals {
        let _ = writeln!(
            s,
            "  removal       {} ({}, user {}) since {}: {}",
            r.email,
            r.kind,
            r.user_id,
            r.since,
            r.done
                .as_deref()
                .map_or("PENDING at some site".to_owned(), |d| format!("done {d}"))
        );
    }
    let groups: Vec<&str> = e.groups.iter().map(|g| g.display_name.as_str()).collect();
    let _ = writeln!(
        s,
        "  groups        {}",
        if groups.is_empty() {
            "(none)".to_owned()
        } else {
            groups.join(", ")
        }
    );
    for site in &e.sites {
        let d = &site.desired;
        let _ = writeln!(s, "\nsite {} ({})", site.site, site.api);
        let _ = writeln!(s, "  should be     {}: {}", d.account, d.rule);
        if let (Some(f), Some(l)) = (&d.first_name, &d.last_name) {
            let _ = writeln!(s, "  names         {f} {l}");
        }
        if d.account == "present" {
            let _ = writeln!(
                s,
                "  groups        {}",
                if d.groups.is_empty() {
                    "(no managed group)".to_owned()
                } else {
                    d.groups.join(", ")
                }
            );
        }
        for r in &d.roles {
            let _ = writeln!(s, "  role          {r}");
        }
        for w in &d.without_effect {
            let _ = writeln!(s, "  no effect     {w}");
        }
        if let Some(a) = &site.actual {
            if let Some(err) = &a.error {
                let _ = writeln!(s, "  at the site   unknown: {err}");
            } else if a.present {
                let _ = writeln!(
                    s,
                    "  at the site   present, {} {}, groups: {}",
                    a.first_name.as_deref().unwrap_or(""),
                    a.last_name.as_deref().unwrap_or(""),
                    a.groups.join(", ")
                );
            } else {
                let _ = writeln!(s, "  at the site   absent");
            }
            if site.differences.is_empty() {
                let _ = writeln!(s, "  differences   none: the site is in line");
            }
            for diff in &site.differences {
                let _ = writeln!(s, "  DIFFERS       {diff}");
            }
        }
        let o = &site.outbox;
        let mut line = format!("  outbox        {}", o.state);
        if o.attempts > 0 {
            let _ = write!(line, ", {} failed attempts", o.attempts);
        }
        if let Some(due) = &o.due {
            let _ = write!(line, ", next run {due}");
        }
        if let Some(by) = &o.claimed_by {
            let _ = write!(line, ", held by {by}");
        }
        let _ = writeln!(s, "{line}");
        if let Some(err) = &o.last_error {
            let _ = writeln!(s, "  last error    {err}");
        }
    }
    if !e.live {
        let _ = writeln!(
            s,
            "\n(the partner was not read: --live reads each site now and names the differences)"
        );
    }
    recent_text(&mut s, &e.recent);
    s
}

/// The group as text.
pub fn group_text(e: &GroupExplanation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "group {} ({}) in tenant {}: {} members",
        e.display_name, e.id, e.tenant, e.member_count
    );
    if let Some(x) = &e.external_id {
        let _ = writeln!(s, "  externalId    {x}");
    }
    for m in &e.members {
        let _ = writeln!(
            s,
            "  member        {} <{}>{}",
            m.user_name,
            m.email,
            if m.active { "" } else { " (inactive)" }
        );
    }
    if (e.members.len() as u64) < e.member_count {
        let _ = writeln!(
            s,
            "  ... and {} more",
            e.member_count - e.members.len() as u64
        );
    }
    for site in &e.sites {
        let _ = writeln!(s, "\nsite {} ({})", site.site, site.api);
        let kind = if site.api == "roles" { "role" } else { "group" };
        let _ = writeln!(s, "  maps to       {kind} {}", site.maps_to);
        let _ = writeln!(
            s,
            "  managed       {}",
            if site.managed { "yes" } else { "no" }
        );
        if let Some(n) = &site.note {
            let _ = writeln!(s, "  note          {n}");
        }
        if let Some(id) = &site.role_id {
            let how = match site.adopted {
                Some(true) => "adopted (found at the site; never renamed or deleted)",
                _ => "created by the bridge",
            };
            let _ = writeln!(s, "  linked role   {id}: {how}");
        }
        if let Some(a) = &site.actual {
            if let Some(err) = &a.error {
                let _ = writeln!(s, "  at the site   unknown: {err}");
            } else if a.exists {
                let _ = writeln!(
                    s,
                    "  at the site   present as {}{}{}",
                    a.name.as_deref().unwrap_or(""),
                    a.role_id
                        .as_deref()
                        .map_or(String::new(), |id| format!(" (id {id})")),
                    match a.made_by_bridge {
                        Some(true) => ", made by the bridge",
                        Some(false) => ", not made by the bridge",
                        None => "",
                    }
                );
            } else {
                let _ = writeln!(
                    s,
                    "  at the site   MISSING: the next write naming it makes it again"
                );
            }
        }
    }
    recent_text(&mut s, &e.recent);
    s
}

fn recent_text(s: &mut String, recent: &[serde_json::Value]) {
    if recent.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nrecent (newest first)");
    for r in recent {
        let _ = writeln!(
            s,
            "  {}  {} {}  {}  {}{}",
            r["at"].as_str().unwrap_or(""),
            r["operation"].as_str().unwrap_or(""),
            r["resource_type"].as_str().unwrap_or(""),
            r["status"],
            r["credential"].as_str().unwrap_or(""),
            match &r["detail"] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(d) => format!("  {d}"),
                other => format!("  {other}"),
            }
        );
    }
}
