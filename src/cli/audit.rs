//! `scim-bridge audit`: prints the audit log (newest first), one line per write with its
//! credential, client address, request id, outcome and partner calls (for a bulk command's
//! row: its site, outcome and line), or one JSON object per line. `--resource` takes an id,
//! an email, a userName or a group name (see `Store::search_audit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{init_logging, load, open_store, AuditArgs};
use crate::config::LogFormat;
use crate::store::{AuditEntry, AuditQuery};

/// Runs `audit`: reads the entries the flags select and prints them.
pub(super) async fn audit(
    path: Option<PathBuf>,
    log_format: Option<LogFormat>,
    args: AuditArgs,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    let query = match query(&args) {
        Ok(q) => q,
        Err(code) => return code,
    };
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
            let _ = writeln!(out, "{}", text_line(e, &j));
        }
    }
    if !args.json {
        let _ = writeln!(out, "# {} entries", entries.len());
    }
    store.close().await;
    ExitCode::SUCCESS
}

/// The store query the flags ask for; exit code 2 (after saying why) on a bad `--since`.
fn query(args: &AuditArgs) -> Result<AuditQuery, ExitCode> {
    let mut query = AuditQuery {
        tenant: args.tenant.clone(),
        since_ms: None,
        resource: args.resource.clone(),
        resource_type: args.resource_type.clone(),
        limit: args.limit.clamp(1, crate::http::admin::MAX_AUDIT_ENTRIES),
    };
    if let Some(s) = &args.since {
        match AuditQuery::parse_since(s, crate::bridge::now_ms()) {
            Ok(ms) => query.since_ms = Some(ms),
            Err(e) => {
                eprintln!("error: --since: {e}");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(query)
}

/// One entry as a text line; `j` is the entry as JSON, for its time.
fn text_line(e: &AuditEntry, j: &serde_json::Value) -> String {
    format!(
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
        if e.operation.ends_with("_CSV") || e.operation == "ADD_USER" {
            bulk_row(j)
        } else {
            partner_calls(e)
        }
    )
}

/// A bulk command's entry as `site=... outcome=... line=... reason=...` words (the ones it
/// has); its summary entry as its counts.
fn bulk_row(j: &serde_json::Value) -> String {
    let detail = &j["detail"];
    let Some(fields) = detail.as_object() else {
        return String::new();
    };
    fields
        .iter()
        .filter(|(k, v)| k.as_str() != "input" && !v.is_null())
        .map(|(k, v)| match v.as_str() {
            Some(text) => format!("{k}={text}"),
            None => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The entry's partner calls as `site:call=outcome` words, or nothing when it has none.
fn partner_calls(e: &AuditEntry) -> String {
    e.detail
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
        .unwrap_or_default()
}
