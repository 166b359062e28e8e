//! The console's user page body: a [`UserExplanation`] as tables an operator reads at a
//! glance (who, which groups, per site what should be and what is, what differs, the outbox
//! row, the history), with the JSON of `GET /admin/explain` below for a ticket.

use maud::{html, Markup};

use crate::bridge::explain::{UserAtSite, UserExplanation};

/// The whole explanation.
pub(super) fn user(e: &UserExplanation) -> Markup {
    html! {
        @match &e.user {
            Some(u) => {
                h2 { (u.user_name) " " span class="muted" { "(" (u.id) ")" } }
                table {
                    tr { th { "State" } td class=(if u.active { "ok" } else { "bad" }) { (if u.active { "active" } else { "inactive" }) } }
                    @if let Some(d) = &u.display_name { tr { th { "Display name" } td { (d) } } }
                    tr { th { "Partner email" } td { @if u.partner_email.is_empty() { span class="bad" { "none: the user is at no site" } } @else { (u.partner_email) } } }
                    tr { th { "Emails" } td { (u.emails.join(", ")) } }
                    tr { th { "Groups" } td {
                        @if e.groups.is_empty() { span class="muted" { "none" } }
                        @for (i, g) in e.groups.iter().enumerate() { @if i > 0 { ", " } (g.display_name) }
                    } }
                    tr { th { "Last modified" } td { (u.last_modified) " (version " (u.version) ")" } }
                }
            }
            None => {
                h2 { (e.query) }
                p class="notice warn" { "No SCIM user: deleted." }
            }
        }
        @if !e.removals.is_empty() {
            h2 { "Accounts being removed" }
            table {
                thead { tr { th { "Email" } th { "Why" } th { "Since" } th { "Done" } } }
                tbody { @for r in &e.removals { tr {
                    td { (r.email) } td { (r.kind) } td { (r.since) }
                    td { @match &r.done { Some(d) => span class="ok" { (d) }, None => span class="warn" { "pending at some site" } } }
                } } }
            }
        }
        @for site in &e.sites { (at_site(site, e.live)) }
        @if !e.live {
            p class="muted" { "The partner was not read: tick \u{201c}Read the partner now\u{201d} to compare each site with what it should hold." }
        }
        @if !e.recent.is_empty() {
            h2 { "Recent (newest first)" }
            table {
                thead { tr { th { "At" } th { "Operation" } th { "Credential" } th { "Status" } th { "Partner calls" } } }
                tbody { @for r in &e.recent { tr {
                    td { (r["at"].as_str().unwrap_or("")) }
                    td { (r["operation"].as_str().unwrap_or("")) " " span class="muted" { (r["resource_type"].as_str().unwrap_or("")) } }
                    td { (r["credential"].as_str().unwrap_or("")) }
                    td class="num" { (r["status"]) }
                    td { @for c in r["detail"]["partner_calls"].as_array().into_iter().flatten() {
                        code { (c["site"].as_str().unwrap_or("")) " " (c["call"].as_str().unwrap_or("")) " " (c["outcome"].as_str().unwrap_or("")) } " "
                    } }
                } } }
            }
        }
        details {
            summary { "JSON (as GET /admin/explain)" }
            pre { (serde_json::to_string_pretty(e).unwrap_or_default()) }
        }
    }
}

/// One site: what should be, what is, what differs, the outbox row.
fn at_site(site: &UserAtSite, live: bool) -> Markup {
    let d = &site.desired;
    let o = &site.outbox;
    let outbox_class = match o.state.as_str() {
        "in line" => "ok",
        "failing" | "overdue claim" | "parked" => "bad",
        _ => "warn",
    };
    html! {
        h2 { "Site " (site.site) " " span class="muted" { "(" (site.api) ")" } }
        table {
            tr { th { "Should be" } td { strong { (d.account) } ": " (d.rule) } }
            @if let (Some(f), Some(l)) = (&d.first_name, &d.last_name) { tr { th { "Names" } td { (f) " " (l) } } }
            @if d.account == "present" {
                tr { th { "Managed groups" } td {
                    @if d.groups.is_empty() { span class="muted" { "none" } } @else { (d.groups.join(", ")) }
                } }
            }
            @for r in &d.roles { tr { th { "Role" } td { (r) } } }
            @for w in &d.without_effect { tr { th { "No effect" } td { (w) } } }
            @for r in &d.removals { tr { th { "Also removing" } td { (r) } } }
            @if let Some(a) = &site.actual {
                tr { th { "At the site" } td {
                    @if let Some(err) = &a.error { span class="warn" { "unknown: " (err) } }
                    @else if a.present {
                        "present: " (a.first_name.as_deref().unwrap_or("")) " " (a.last_name.as_deref().unwrap_or(""))
                        "; groups: " (a.groups.join(", "))
                    } @else { "absent" }
                } }
                tr { th { "Differences" } td {
                    @if site.differences.is_empty() { span class="ok" { "none: the site is in line" } }
                    @for diff in &site.differences { div class="bad" { (diff) } }
                } }
            } @else if live {
                tr { th { "At the site" } td { span class="muted" { "not read (the user has no account to look for)" } } }
            }
            tr { th { "Outbox" } td {
                span class=(outbox_class) { (o.state) }
                @if o.attempts > 0 { ", " (o.attempts) " failed attempts" }
                @if let Some(due) = &o.due { ", next run " (due) }
                @if let Some(by) = &o.claimed_by { ", held by " code { (by) } }
                @if let Some(err) = &o.last_error { div class="muted" { (err) } }
            } }
        }
    }
}
