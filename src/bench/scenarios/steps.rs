//! What the scenarios share: the names and bodies of their requests, the set-up steps that
//! create users and groups and PATCH memberships, and the measuring and checks of a report.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::super::load::{run_jobs, Recorder, Req, Stats};
use super::super::report::{cpu_seconds, peak_rss_mb, reset_peak_rss, ScenarioReport};
use super::env::Env;
use super::PATCH_SCHEMA;
use crate::partner::rbac::SiteApi;

/// The email of user `i` of a scenario (`prefix000042@bench.example.com`).
pub(super) fn email(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:06}@bench.example.com")
}

/// The body of an Entra-style user create for user `i`.
pub(super) fn user_body(email: &str, i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "externalId": format!("ext-{email}"),
        "active": true,
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"value": email, "type": "work", "primary": true}],
    })
}

/// Entra's `userName eq` lookup of `email`.
pub(super) fn lookup(email: &str) -> Req {
    let filter = format!("userName eq \"{email}\"");
    Req::get(format!(
        "/Users?filter={}&startIndex=1&count=100",
        percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
    ))
}

/// A group PATCH adding `ids` in one operation.
pub(super) fn add_members(ids: &[String]) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members",
        "value": ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()}]})
}

/// A group PATCH removing `ids`, one operation each (Okta's shape).
pub(super) fn remove_members(ids: &[String]) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ids.iter().map(|id| json!({"op": "remove",
        "path": format!("members[value eq \"{id}\"]")})).collect::<Vec<_>>()})
}

/// Creates users `prefix000000..` with the Entra probe before each POST; returns their ids in
/// order (an empty string where the create failed).
pub(super) async fn create_users(
    env: &Env,
    prefix: &str,
    n: usize,
    connections: usize,
) -> (Stats, Vec<String>) {
    let ids = Arc::new(Mutex::new(vec![String::new(); n]));
    let (client, ids2, prefix) = (env.client.clone(), ids.clone(), prefix.to_owned());
    let stats = run_jobs(
        connections,
        (0..n).collect(),
        move |i, mut rec: Recorder| {
            let (client, ids, prefix) = (client.clone(), ids2.clone(), prefix.clone());
            async move {
                let e = email(&prefix, i);
                client.send(&lookup(&e), &mut rec).await;
                let (status, body) = client
                    .send(&Req::post("/Users", user_body(&e, i)), &mut rec)
                    .await;
                if status == 201 {
                    if let (Some(id), Ok(mut ids)) = (body["id"].as_str(), ids.lock()) {
                        ids[i] = id.to_owned();
                    }
                }
                rec
            }
        },
    )
    .await;
    let ids = ids.lock().map(|v| v.clone()).unwrap_or_default();
    (stats, ids)
}

/// Creates empty groups `prefixNNN`; returns their ids in order.
pub(super) async fn create_groups(
    env: &Env,
    prefix: &str,
    n: usize,
    connections: usize,
) -> (Stats, Vec<String>) {
    let ids = Arc::new(Mutex::new(vec![String::new(); n]));
    let (client, ids2, prefix) = (env.client.clone(), ids.clone(), prefix.to_owned());
    let stats = run_jobs(
        connections,
        (0..n).collect(),
        move |i, mut rec: Recorder| {
            let (client, ids, prefix) = (client.clone(), ids2.clone(), prefix.clone());
            async move {
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                              "displayName": format!("{prefix}{i:03}"), "members": []});
                let (status, body) = client.send(&Req::post("/Groups", body), &mut rec).await;
                if status == 201 {
                    if let (Some(id), Ok(mut ids)) = (body["id"].as_str(), ids.lock()) {
                        ids[i] = id.to_owned();
                    }
                }
                rec
            }
        },
    )
    .await;
    let ids = ids.lock().map(|v| v.clone()).unwrap_or_default();
    (stats, ids)
}

/// Sends `(group id, body)` PATCHes on `connections` workers.
pub(super) async fn patch_groups(
    env: &Env,
    jobs: Vec<(String, Value)>,
    connections: usize,
) -> Stats {
    let client = env.client.clone();
    run_jobs(connections, jobs, move |(gid, body), mut rec: Recorder| {
        let client = client.clone();
        async move {
            client
                .send(&Req::patch(format!("/Groups/{gid}"), body), &mut rec)
                .await;
            rec
        }
    })
    .await
}

/// Starts measuring: resets the peak RSS; returns the CPU seconds so far and the time.
pub(super) fn measure_start() -> (f64, Instant) {
    reset_peak_rss();
    (cpu_seconds(), Instant::now())
}

/// Stops measuring: the peak RSS and the CPU seconds since `cpu0` go into the report.
pub(super) fn finish(r: &mut ScenarioReport, cpu0: f64) {
    r.peak_rss_mb = peak_rss_mb();
    r.cpu_s = cpu_seconds() - cpu0;
}

/// Adds a failure when a phase had answers outside 2xx.
pub(super) fn require_ok(r: &mut ScenarioReport, phase: &str, stats: &Stats) {
    if stats.errors() > 0 {
        r.failures.push(format!(
            "{phase}: {} answers outside 2xx: {:?}",
            stats.errors(),
            stats.statuses
        ));
    }
}

/// [`require_ok`], except that 429 and 503 answers do not count when the IdP `retried` them
/// (the partner's rate limit is part of the scenario; the final partner state is checked).
pub(super) fn require_done(r: &mut ScenarioReport, phase: &str, stats: &Stats, retried: bool) {
    let failed: u64 = stats
        .statuses
        .iter()
        .filter(|(s, _)| {
            let busy = retried && matches!(**s, 429 | 503);
            !(200..300).contains(*s) && !busy
        })
        .map(|(_, n)| *n)
        .sum();
    if failed > 0 {
        r.failures.push(format!(
            "{phase}: {failed} answers outside 2xx: {:?}",
            stats.statuses
        ));
    }
}

/// S1 and S3: writes at most the lower bound, reads at most one per write. On an RBAC site
/// only the writes are a target: finding a user's id by email reads the partner's user list,
/// so its reads are reported, not held to one per write.
pub(super) fn coalescing_targets(r: &mut ScenarioReport, api: SiteApi) {
    let ratio = r.write_ratio();
    r.targets.push((
        format!("partner writes {ratio:.3}x the lower bound (at most 1.0x)"),
        ratio <= 1.0,
    ));
    let rpw = r.reads_per_write();
    if api == SiteApi::Roles {
        r.notes.push(format!(
            "{rpw:.3} partner reads per write (RBAC site: reported only)"
        ));
        return;
    }
    r.targets.push((
        format!("{rpw:.3} partner reads per write (at most 1)"),
        rpw <= 1.0,
    ));
}
