//! The console's pages: overview, failing items (with "retry now"), reconcile (dry run, then
//! apply after a confirmation), audit log, and the sign-in page. Handlers extract, make one
//! `Bridge` call, render (maud, escaped by construction).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup, DOCTYPE};

use super::session::Session;
use super::{action, html as respond, see_other, signed_in, ConsoleState};
use crate::bridge::operator::{AuditQuery, RetryFilter};
use crate::bridge::reconcile::{self, outcome, SiteReport};
use crate::bridge::KeyState;
use crate::bridge::Tenant;

/// Audit entries per page.
const AUDIT_PAGE: usize = 50;
/// Most audit entries one search reads before the credential and time filters.
const AUDIT_SCAN: u32 = 10_000;
/// Most failing items listed.
const FAILING_LIMIT: u32 = 500;
/// What the console's actions are recorded under in the audit log: `console:<admin token
/// name>`, so the log says both where an action came from and whose token signed in.
fn console_credential(session: &Session) -> String {
    format!("console:{}", session.credential)
}

/// The frame of every page: the navigation (with sign-out) when signed in.
fn layout(title: &str, here: &str, session: Option<&Session>, body: Markup) -> Markup {
    let nav = [
        ("/console", "Overview"),
        ("/console/failing", "Failing items"),
        ("/console/reconcile", "Reconcile"),
        ("/console/audit", "Audit log"),
        ("/console/user", "User"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - scim-bridge console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header {
                    span class="brand" { "scim-bridge" }
                    @if let Some(s) = session {
                        @for (href, label) in nav {
                            a href=(href) class=[(href == here).then_some("here")] { (label) }
                        }
                        form class="inline" method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out (" (s.credential) ")" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page that says one thing.
pub(super) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    session: Option<&Session>,
) -> Response {
    respond(
        status,
        layout(
            title,
            "",
            session,
            html! { p class="notice bad" { (text) } },
        ),
    )
}

pub(super) fn sign_in_page(status: StatusCode, error: Option<&str>) -> Response {
    respond(
        status,
        layout(
            "Sign in",
            "",
            None,
            html! {
                div class="signin" {
                    @if let Some(e) = error { p class="notice bad" { (e) } }
                    form method="post" action="/console/sign-in" {
                        label for="token" { "Admin token" }
                        input id="token" type="password" name="token" autocomplete="off" required;
                        button type="submit" { "Sign in" }
                    }
                    p class="muted" { "The token of [admin] in the bridge's configuration \
                        (scim-bridge token new --admin)." }
                }
            },
        ),
    )
}

/// `GET /console/sign-in`.
pub(super) async fn sign_in_form() -> Response {
    sign_in_page(StatusCode::OK, None)
}

fn query_map(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn age(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

fn unavailable(session: &Session, what: &str, e: &dyn std::fmt::Display) -> Response {
    // The store's or partner's text stays in the log.
    tracing::warn!(error = %e, "console: {what}");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        &format!("{what}; retry in a moment (the bridge's log says why)."),
        Some(session),
    )
}

fn tenants_sorted(s: &ConsoleState) -> Vec<std::sync::Arc<Tenant>> {
    let mut t: Vec<_> = s.bridge.tenants.values().cloned().collect();
    t.sort_by(|a, b| a.name().cmp(b.name()));
    t
}

/// `text` for a URL query value.
fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// What the last reconcile's status means.
fn reconcile_result(status: u16) -> (&'static str, &'static str) {
    match status {
        outcome::IN_SYNC => ("in sync", "ok"),
        outcome::REPAIRED => ("repaired", "ok"),
        outcome::DRIFTED => ("drift found, not repaired", "warn"),
        _ => ("failed", "bad"),
    }
}

/// `GET /console`: per tenant and site, health, outbox, last reconcile, partner calls.
pub(super) async fn overview(
    State(s): State<ConsoleState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let session = match signed_in(&s, &method, &headers) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let now = crate::bridge::now_ms();
    let stats = match s.bridge.outbox_by_site(None).await {
        Ok(x) => x,
        Err(e) => return unavailable(&session, "The store cannot be read", &e),
    };
    let stuck_after = (s.bridge.options.outbox_stuck_after_s > 0)
        .then(|| std::time::Duration::from_secs(s.bridge.options.outbox_stuck_after_s));
    let health = match s.bridge.outbox_health(now, stuck_after).await {
        Ok(x) => x,
        Err(e) => return unavailable(&session, "The store cannot be read", &e),
    };
    let mut rows = Vec::new();
    for tenant in tenants_sorted(&s) {
        for site in &tenant.sites {
            let st = stats
                .iter()
                .find(|x| x.tenant == tenant.name() && x.site == site.name);
            let last = match s.bridge.last_reconcile(tenant.name(), &site.name).await {
                Ok(x) => x,
                Err(e) => return unavailable(&session, "The store cannot be read", &e),
            };
            let calls = s.bridge.calls.last_hour(tenant.name(), &site.name, now);
            rows.push((tenant.clone(), site.clone(), st.cloned(), last, calls));
        }
    }
    let body = html! {
        p class={"notice " @if health.stuck { "bad" } @else if health.failing > 0 { "warn" } @else { "ok" }} {
            @if health.stuck { "Degraded: " (health.describe()) }
            @else if health.failing > 0 { (health.failing) " outbox item(s) failing; retried automatically." }
            @else { "Ready: nothing is failing." }
        }
        table {
            thead { tr {
                th { "Tenant" } th { "Site" } th { "Health" } th { "API key" } th { "Circuit" }
                th { "Outbox depth" } th { "Failing" } th { "Parked" }
                th { "Last reconcile" } th { "Partner calls, last hour" }
            } }
            tbody {
                @for (tenant, site, st, last, calls) in &rows {
                    @let failing = st.as_ref().map_or(0, |x| x.failing);
                    @let open = site.client.circuit_open();
                    @let key = site.client.key_state();
                    @let drift = last.as_ref().is_some_and(|e| !matches!(e.status, outcome::IN_SYNC | outcome::REPAIRED));
                    @let total: u32 = calls.iter().map(|m| m.calls).sum();
                    @let errors: u32 = calls.iter().map(|m| m.errors).sum();
                    tr {
                        td { (tenant.name()) }
                        td { (site.name) " " span class="muted" { "(" (site.client.api().as_str()) ")" } }
                        td { @if open || failing > 0 || drift || key == KeyState::Refused { span class="bad" { "attention" } } @else { span class="ok" { "healthy" } } }
                        td { @match key {
                            KeyState::Accepted => span class="ok" { "accepted" },
                            KeyState::Refused => span class="bad" { "REFUSED: fix api_key, restart" },
                            KeyState::Unknown => span class="muted" { "not checked yet" },
                        } }
                        td { @if open { span class="bad" { "open" } } @else { span class="ok" { "closed" } } }
                        td class="num" { (st.as_ref().map_or(0, |x| x.depth)) }
                        td class="num" {
                            @if failing > 0 { a href={"/console/failing?tenant=" (enc(tenant.name())) "&site=" (enc(&site.name))} { span class="bad" { (failing) } } }
                            @else { "0" }
                        }
                        td class="num" { (st.as_ref().map_or(0, |x| x.parked)) }
                        td {
                            @if let Some(e) = last {
                                @let (text, class) = reconcile_result(e.status);
                                span class=(class) { (text) } br;
                                span class="muted" { (when(e.at_ms)) " (" (age(now - e.at_ms)) " ago) by " (e.credential) }
                                @if let Some(d) = e.detail.as_deref() { br; code { (d) } }
                            } @else { span class="muted" { "never" } }
                        }
                        td {
                            (super::chart::calls_chart(calls)) br;
                            span class="muted" { (total) " calls, " (errors) " failed" }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout("Overview", "/console", Some(&session), body),
    )
}

/// `GET /console/failing?tenant=&site=&retried=`: failing items with "retry now".
pub(super) async fn failing(
    State(s): State<ConsoleState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match signed_in(&s, &method, &headers) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let q = query_map(query);
    let tenant = q.get("tenant").cloned();
    let site = q.get("site").cloned();
    let items = match s
        .bridge
        .outbox_failures(tenant.as_deref(), FAILING_LIMIT)
        .await
    {
        Ok(x) => x,
        Err(e) => return unavailable(&session, "The store cannot be read", &e),
    };
    let now = crate::bridge::now_ms();
    let items: Vec<_> = items
        .into_iter()
        .filter(|i| site.as_ref().is_none_or(|x| &i.site == x))
        .collect();
    let retry_form = |t: &str, st: &str, user: &str, label: &str| {
        html! {
            form class="inline" method="post" action="/console/failing/retry" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="tenant" value=(t);
                @if !st.is_empty() { input type="hidden" name="site" value=(st); }
                @if !user.is_empty() { input type="hidden" name="user" value=(user); }
                button type="submit" { (label) }
            }
        }
    };
    let body = html! {
        @if let Some(n) = q.get("retried") {
            p class="notice" { (n) " item(s) made due now; the workers take them at once." }
        }
        @if items.is_empty() {
            p class="notice ok" { "No outbox item is failing." }
        } @else {
            p { (items.len()) " failing item(s). A failing item is retried with backoff by itself; \"retry now\" makes it due at once." }
            @for t in tenants_sorted(&s).iter().filter(|t| items.iter().any(|i| i.tenant == t.name())) {
                p { (retry_form(t.name(), site.as_deref().unwrap_or(""), "", &format!("Retry all failing items of {}", t.name()))) }
            }
            table {
                thead { tr {
                    th { "Tenant" } th { "Site" } th { "User" } th { "Attempts" }
                    th { "Last error" } th { "Marked" } th { "Next try" } th {}
                } }
                tbody {
                    @for i in &items {
                        tr {
                            td { (i.tenant) } td { (i.site) }
                            td { (i.email.as_deref().unwrap_or("")) br; span class="muted" { (i.user_id) } }
                            td class="num" { (i.attempts) }
                            td { (i.last_error.as_deref().unwrap_or("")) }
                            td { (when(i.marked_ms)) br; span class="muted" { (age(now - i.marked_ms)) " ago" } }
                            td { @if i.due_ms <= now { "due now" } @else { "in " (age(i.due_ms - now)) } }
                            td { (retry_form(&i.tenant, &i.site, &i.user_id, "Retry now")) }
                        }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout("Failing items", "/console/failing", Some(&session), body),
    )
}

/// `POST /console/failing/retry` (tenant, optional site and user): makes them due now.
pub(super) async fn retry(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match action(&s, &headers, &body) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let tenant = f.get("tenant").map(|t| t.trim()).filter(|t| !t.is_empty());
    let Some(t) = tenant.and_then(|t| s.bridge.tenant(t)) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "No such tenant.",
            Some(&session),
        );
    };
    let site = f
        .get("site")
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty());
    if let Some(site) = &site {
        if t.site(site).is_none() {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "No such site of this tenant.",
                Some(&session),
            );
        }
    }
    let filter = RetryFilter {
        tenant: Some(t.name().to_owned()),
        site,
        user: f
            .get("user")
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty()),
    };
    match s.bridge.retry_failing(&filter).await {
        Ok(n) => {
            tracing::info!(credential = %session.credential, tenant = t.name(), count = n, "console: retry now");
            s.bridge
                .record_audit(&crate::bridge::operator::AuditEntry {
                    at_ms: crate::bridge::now_ms(),
                    tenant: t.name().to_owned(),
                    credential: console_credential(&session),
                    client: "console".into(),
                    request_id: String::new(),
                    operation: "RETRY".into(),
                    resource_type: "Outbox".into(),
                    resource_id: filter.user.clone().or_else(|| filter.site.clone()),
                    status: 200,
                    detail: Some(
                        serde_json::json!({
                            "site": filter.site,
                            "user": filter.user,
                            "made_due": n,
                        })
                        .to_string(),
                    ),
                })
                .await;
            see_other(&format!("/console/failing?retried={n}"))
        }
        Err(e) => unavailable(&session, "The store cannot be written", &e),
    }
}

fn tenant_picker(s: &ConsoleState, session: &Session, action: &str, label: &str) -> Markup {
    html! {
        form class="filters" method="post" action=(action) {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Tenant" select name="tenant" {
                @for t in tenants_sorted(s) { option value=(t.name()) { (t.name()) } }
            } }
            button type="submit" { (label) }
        }
    }
}

/// `GET /console/reconcile`: choose a tenant for a dry run.
pub(super) async fn reconcile_form(
    State(s): State<ConsoleState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let session = match signed_in(&s, &method, &headers) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let body = html! {
        p { "A dry run reads every site of the tenant and compares it with the store; it changes nothing. Its drift can then be repaired." }
        (tenant_picker(&s, &session, "/console/reconcile/dry-run", "Run a dry run"))
    };
    respond(
        StatusCode::OK,
        layout("Reconcile", "/console/reconcile", Some(&session), body),
    )
}

fn chosen_tenant(
    s: &ConsoleState,
    session: &Session,
    f: &HashMap<String, String>,
) -> Result<std::sync::Arc<Tenant>, Box<Response>> {
    f.get("tenant")
        .and_then(|t| s.bridge.tenant(t.trim()))
        .ok_or_else(|| {
            Box::new(message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "No such tenant.",
                Some(session),
            ))
        })
}

fn names(list: &[String]) -> String {
    list.join(", ")
}

/// The drift of each site as a table.
fn drift_table(reports: &[SiteReport]) -> Markup {
    html! {
        @for r in reports {
            h2 { "Site " (r.site) " "
                @if r.in_sync() { span class="ok" { "in sync" } } @else { span class="warn" { "drift" } } }
            table {
                thead { tr { th { "Kind" } th { "Count" } th { "Which" } } }
                tbody {
                    tr { td { "Users missing at the site" } td class="num" { (r.users_missing.len()) } td { (names(&r.users_missing)) } }
                    tr { td { "Deactivated users not removed" } td class="num" { (r.users_not_removed.len()) } td { (names(&r.users_not_removed)) } }
                    tr { td { "Deleted users still present" } td class="num" { (r.deleted_users_present.len()) }
                        td { @for d in &r.deleted_users_present { (d.email) " " } } }
                    tr { td { "Memberships drifted" } td class="num" { (r.memberships_drifted.len()) }
                        td { @for d in &r.memberships_drifted {
                            (d.email)
                            @if !d.missing.is_empty() { " missing: " (names(&d.missing)) }
                            @if !d.extra.is_empty() { " extra: " (names(&d.extra)) }
                            br;
                        } } }
                    tr { td { "Names drifted" } td class="num" { (r.names_drifted.len()) }
                        td { @for d in &r.names_drifted {
                            (d.email) ": " (d.first_name) " " (d.last_name) " \u{2192} " (d.want_first_name) " " (d.want_last_name) br;
                        } } }
                    tr { td { "Groups missing" } td class="num" { (r.groups_missing.len()) } td { (names(&r.groups_missing)) } }
                    tr { td { "Groups without a role (reported)" } td class="num" { (r.groups_unmapped.len()) } td { (names(&r.groups_unmapped)) } }
                    tr { td { "Partner users unknown to SCIM (reported)" } td class="num" { (r.unknown_partner_users.len()) } td { (names(&r.unknown_partner_users)) } }
                }
            }
        }
    }
}

/// `POST /console/reconcile/dry-run` (tenant): the drift, with the way to repair it.
pub(super) async fn reconcile_dry_run(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match action(&s, &headers, &body) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let tenant = match chosen_tenant(&s, &session, &f) {
        Ok(t) => t,
        Err(res) => return *res,
    };
    let reports =
        match reconcile::run(&s.bridge, &tenant, false, &console_credential(&session)).await {
            Ok(r) => r,
            Err(e) => return unavailable(&session, "The reconcile run failed", &e),
        };
    let in_sync = reports.iter().all(SiteReport::in_sync);
    let body = html! {
        p { "Dry run of tenant " strong { (tenant.name()) } ": nothing was changed." }
        (drift_table(&reports))
        @if in_sync {
            p class="notice ok" { "Every site matches the store." }
        } @else {
            form method="post" action="/console/reconcile/confirm" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="tenant" value=(tenant.name());
                button type="submit" { "Repair this drift\u{2026}" }
            }
        }
    };
    respond(
        StatusCode::OK,
        layout(
            "Reconcile: dry run",
            "/console/reconcile",
            Some(&session),
            body,
        ),
    )
}

/// `POST /console/reconcile/confirm` (tenant): asks before repairing.
pub(super) async fn reconcile_confirm(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match action(&s, &headers, &body) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let tenant = match chosen_tenant(&s, &session, &f) {
        Ok(t) => t,
        Err(res) => return *res,
    };
    let body = html! {
        p class="notice" {
            "Repairing writes to every site of tenant " strong { (tenant.name()) } ": missing groups are created, "
            "drifted users are converged to what the store holds, and leavers who kept access are removed. "
            "The sites are read again first, so what is repaired is the drift as it is now."
        }
        form class="inline" method="post" action="/console/reconcile/apply" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="tenant" value=(tenant.name());
            input type="hidden" name="confirm" value="yes";
            button class="danger" type="submit" { "Yes, repair the drift" }
        }
        " "
        a href="/console/reconcile" { "Cancel" }
    };
    respond(
        StatusCode::OK,
        layout(
            "Reconcile: confirm",
            "/console/reconcile",
            Some(&session),
            body,
        ),
    )
}

/// `POST /console/reconcile/apply` (tenant, confirm=yes): repairs the drift.
pub(super) async fn reconcile_apply(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, f) = match action(&s, &headers, &body) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let tenant = match chosen_tenant(&s, &session, &f) {
        Ok(t) => t,
        Err(res) => return *res,
    };
    if f.get("confirm").map(String::as_str) != Some("yes") {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The repair was not confirmed.",
            Some(&session),
        );
    }
    let reports =
        match reconcile::run(&s.bridge, &tenant, true, &console_credential(&session)).await {
            Ok(r) => r,
            Err(e) => return unavailable(&session, "The reconcile run failed", &e),
        };
    tracing::info!(credential = %session.credential, tenant = tenant.name(), "console: reconcile applied");
    let body = html! {
        p class="notice ok" { "Repair started for tenant " strong { (tenant.name()) } ": the membership engine converges the marked users now." }
        table {
            thead { tr { th { "Site" } th { "Users marked" } th { "Groups created" } th { "Groups renamed" } } }
            tbody { @for r in &reports { tr {
                td { (r.site) } td class="num" { (r.marked) } td class="num" { (r.groups_created) } td class="num" { (r.groups_renamed) }
            } } }
        }
        h2 { "What was found" }
        (drift_table(&reports))
        p { a href="/console/reconcile" { "Run another dry run" } }
    };
    respond(
        StatusCode::OK,
        layout(
            "Reconcile: repaired",
            "/console/reconcile",
            Some(&session),
            body,
        ),
    )
}

/// `GET /console/audit?tenant=&resource=&credential=&since=&until=&page=`.
pub(super) async fn audit(
    State(s): State<ConsoleState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match signed_in(&s, &method, &headers) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let q = query_map(query);
    let now = crate::bridge::now_ms();
    let bad = |text: String| {
        message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &text,
            Some(&session),
        )
    };
    let since_ms = match q
        .get("since")
        .map(|v| AuditQuery::parse_since(v, now))
        .transpose()
    {
        Ok(x) => x,
        Err(e) => return bad(format!("since: {e}")),
    };
    let until_ms = match q
        .get("until")
        .map(|v| AuditQuery::parse_since(v, now))
        .transpose()
    {
        Ok(x) => x,
        Err(e) => return bad(format!("until: {e}")),
    };
    let page: usize = match q.get("page").map(|p| p.parse::<usize>()).transpose() {
        Ok(p) => p.unwrap_or(1).max(1),
        Err(_) => return bad("page: not a number".into()),
    };
    let entries = match s
        .bridge
        .audit_entries(&AuditQuery {
            tenant: q.get("tenant").cloned(),
            since_ms,
            resource: q.get("resource").cloned(),
            resource_type: None,
            limit: AUDIT_SCAN,
        })
        .await
    {
        Ok(x) => x,
        Err(e) => return unavailable(&session, "The audit log cannot be read", &e),
    };
    let credential = q.get("credential");
    let matching: Vec<_> = entries
        .into_iter()
        .filter(|e| credential.is_none_or(|c| &e.credential == c))
        .filter(|e| until_ms.is_none_or(|u| e.at_ms <= u))
        .collect();
    let pages = matching.len().div_ceil(AUDIT_PAGE).max(1);
    let shown = matching
        .iter()
        .skip((page - 1) * AUDIT_PAGE)
        .take(AUDIT_PAGE);
    let link = |p: usize| {
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("page".into(), p.to_string()));
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("/console/audit?{encoded}")
    };
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    let body = html! {
        form class="filters" method="get" action="/console/audit" {
            label { "Tenant" select name="tenant" {
                option value="" { "any" }
                @for t in tenants_sorted(&s) { option value=(t.name()) selected[q.get("tenant").map(String::as_str) == Some(t.name())] { (t.name()) } }
            } }
            label { "Resource (id or Users, Groups, Site)" input name="resource" value=(field("resource")); }
            label { "Credential" input name="credential" value=(field("credential")); }
            label { "Since (2h, 7d, RFC 3339)" input name="since" value=(field("since")); }
            label { "Until" input name="until" value=(field("until")); }
            button type="submit" { "Filter" }
        }
        @if matching.len() >= AUDIT_SCAN as usize {
            p class="notice" { "Only the newest " (AUDIT_SCAN) " entries of this tenant, resource and time were searched; narrow the filter." }
        }
        p { (matching.len()) " entries; page " (page) " of " (pages) "." }
        table {
            thead { tr {
                th { "Time" } th { "Tenant" } th { "Credential" } th { "Client" } th { "Operation" }
                th { "Resource" } th { "Status" } th { "Request id" }
            } }
            tbody { @for e in shown { tr {
                td { (when(e.at_ms)) } td { (e.tenant) } td { (e.credential) } td { (e.client) }
                td { (e.operation) } td { (e.resource_type) " " span class="muted" { (e.resource_id.as_deref().unwrap_or("")) } }
                td class="num" { (e.status) } td { code { (e.request_id) } }
            } } }
        }
        div class="pager" {
            @if page > 1 { a href=(link(page - 1)) { "\u{2190} newer" } }
            @if page < pages { a href=(link(page + 1)) { "older \u{2192}" } }
        }
    };
    respond(
        StatusCode::OK,
        layout("Audit log", "/console/audit", Some(&session), body),
    )
}

/// `GET /console/user?tenant=&q=&live=`: why a person has or lacks access
/// (`crate::bridge::explain`, as `GET /admin/explain` and `scim-bridge explain`).
pub(super) async fn user(
    State(s): State<ConsoleState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    use crate::bridge::explain::{self, ExplainError};
    let session = match signed_in(&s, &method, &headers) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let q = query_map(query);
    let live = q.get("live").is_some_and(|v| v == "true");
    let form = html! {
        form class="filters" method="get" action="/console/user" {
            label { "Tenant" select name="tenant" {
                @for t in tenants_sorted(&s) { option value=(t.name()) selected[q.get("tenant").map(String::as_str) == Some(t.name())] { (t.name()) } }
            } }
            label { "User (SCIM id, userName or email)" input name="q" value=(q.get("q").cloned().unwrap_or_default()) required; }
            label { "Read the partner now" input type="checkbox" name="live" value="true" checked[live]; }
            button type="submit" { "Explain" }
        }
    };
    let Some(query) = q.get("q") else {
        return respond(
            StatusCode::OK,
            layout("User", "/console/user", Some(&session), form),
        );
    };
    let tenant = match q.get("tenant").and_then(|t| s.bridge.tenant(t)) {
        Some(t) => t,
        None => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "No such tenant.",
                Some(&session),
            )
        }
    };
    let (status, found) = match explain::user(&s.bridge.store, &tenant, query, live).await {
        Ok(e) => (StatusCode::OK, Ok(e)),
        Err(ExplainError::NotFound(what)) => (StatusCode::NOT_FOUND, Err(what)),
        Err(ExplainError::Store(e)) => {
            return unavailable(&session, "The store cannot be read", &e)
        }
    };
    let body = html! {
        (form)
        @match &found {
            Err(what) => p class="notice bad" { (what) },
            Ok(e) => (super::explain_view::user(e)),
        }
    };
    respond(
        status,
        layout("User", "/console/user", Some(&session), body),
    )
}
