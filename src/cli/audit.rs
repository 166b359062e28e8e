//! `scim-bridge audit`: prints the audit log (newest first), one line per write with its
//! credential, client address, request id, outcome and partner calls, or one JSON object per
//! line.

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
        partner_calls(e)
    )
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
