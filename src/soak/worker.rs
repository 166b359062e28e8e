//! One IdP connection's workload: the kinds of request, the users it keeps, the run's names,
//! and the fault schedule's rotation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::partner::emulator::faults::{Faults, Latency, RateLimit};

use super::client::{call, expect_total, lookup_path, patch_body, status_is, Log, Scim};
use super::USER_SCHEMA;

/// The kinds of IdP request the workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Op {
    LookupHit,
    LookupMiss,
    ListPage,
    GetGroup,
    CreateUser,
    DeleteUser,
    PatchName,
    Deactivate,
    Reactivate,
    GroupAdd,
    GroupRemove,
    Setup,
}

impl Op {
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::LookupHit => "userName eq (hit)",
            Op::LookupMiss => "userName eq (miss)",
            Op::ListPage => "GET /Users page",
            Op::GetGroup => "GET /Groups/{id}",
            Op::CreateUser => "POST /Users",
            Op::DeleteUser => "DELETE /Users/{id}",
            Op::PatchName => "PATCH user name",
            Op::Deactivate => "PATCH active=false",
            Op::Reactivate => "PATCH active=true",
            Op::GroupAdd => "PATCH group add",
            Op::GroupRemove => "PATCH group remove",
            Op::Setup => "set-up (POST /Groups)",
        }
    }
}

/// A user as the workload left it; the partner must end up agreeing.
#[derive(Debug, Clone)]
pub(super) struct ModelUser {
    pub(super) id: String,
    pub(super) email: String,
    pub(super) given: String,
    pub(super) active: bool,
    pub(super) groups: BTreeSet<usize>,
}

/// The run's names: emails and group names carry a run tag so a shared PostgreSQL store and
/// the partner's other users never mix with this run's.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) tag: String,
}

impl Names {
    pub(super) fn email(&self, worker: usize, n: u64) -> String {
        format!("soak-{}-w{worker}-{n}@soak.example.com", self.tag)
    }
    pub(super) fn group(&self, g: usize) -> String {
        format!("soak-{}-g{g}", self.tag)
    }
    pub(super) fn group_prefix(&self) -> String {
        format!("soak-{}-g", self.tag)
    }
    pub(super) fn email_prefix(&self) -> String {
        format!("soak-{}-w", self.tag)
    }
}

/// One connection's loop: its own users, a seeded mix of requests, paced to `interval`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn worker(
    w: usize,
    seed: u64,
    scim: Scim,
    log: Log,
    names: Names,
    groups: Arc<Vec<String>>,
    target_users: usize,
    interval: Duration,
    end: Instant,
) -> Vec<ModelUser> {
    let mut rng = SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut users: Vec<ModelUser> = Vec::new();
    let mut next_email = 0u64;
    let mut next_name = 0u64;
    let mut due = Instant::now();
    while Instant::now() < end {
        due += interval;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Behind (retries, slow answers): do not burst to catch up.
            due = now;
        }
        let roll = rng.random_range(0..100u32);
        let pick = if users.is_empty() {
            None
        } else {
            Some(rng.random_range(0..users.len()))
        };
        match (roll, pick) {
            // A new user, or one removed once the connection has its share.
            (0..=11, _) | (_, None) if users.len() < target_users => {
                let email = names.email(w, next_email);
                next_email += 1;
                next_name += 1;
                let given = format!("Given{next_name}");
                // Entra's probe first, as it does before every create.
                call(
                    &scim,
                    &log,
                    Op::LookupMiss,
                    reqwest::Method::GET,
                    &lookup_path(&email),
                    None,
                    expect_total(0),
                )
                .await;
                let body = json!({
                    "schemas": [USER_SCHEMA],
                    "userName": email,
                    "externalId": format!("ext-{email}"),
                    "active": true,
                    "name": {"givenName": given, "familyName": format!("Family{w}")},
                    "emails": [{"value": email, "type": "work", "primary": true}],
                });
                let created = call(
                    &scim,
                    &log,
                    Op::CreateUser,
                    reqwest::Method::POST,
                    "/Users",
                    Some(&body),
                    status_is(&[201]),
                )
                .await;
                if let Some(id) = created.and_then(|r| r.body["id"].as_str().map(str::to_owned)) {
                    users.push(ModelUser {
                        id,
                        email,
                        given,
                        active: true,
                        groups: BTreeSet::new(),
                    });
                }
            }
            (0..=11, Some(i)) => {
                let u = users.swap_remove(i);
                let ok = call(
                    &scim,
                    &log,
                    Op::DeleteUser,
                    reqwest::Method::DELETE,
                    &format!("/Users/{}", u.id),
                    None,
                    status_is(&[204]),
                )
                .await;
                if ok.is_none() {
                    // Unknown outcome: keep it and let the final check judge it as the IdP
                    // would leave it (the request is already counted as an error).
                    users.push(u);
                }
            }
            (_, None) => {}
            (12..=36, Some(i)) => {
                call(
                    &scim,
                    &log,
                    Op::LookupHit,
                    reqwest::Method::GET,
                    &lookup_path(&users[i].email),
                    None,
                    expect_total(1),
                )
                .await;
            }
            (37..=46, _) => {
                let email = format!("{}@soak.example.com", uuid::Uuid::new_v4());
                call(
                    &scim,
                    &log,
                    Op::LookupMiss,
                    reqwest::Method::GET,
                    &lookup_path(&email),
                    None,
                    expect_total(0),
                )
                .await;
            }
            (47..=54, _) => {
                let start = rng.random_range(0..200u32) + 1;
                call(
                    &scim,
                    &log,
                    Op::ListPage,
                    reqwest::Method::GET,
                    &format!("/Users?startIndex={start}&count=50"),
                    None,
                    status_is(&[200]),
                )
                .await;
            }
            (55..=59, _) => {
                let g = rng.random_range(0..groups.len());
                call(
                    &scim,
                    &log,
                    Op::GetGroup,
                    reqwest::Method::GET,
                    &format!("/Groups/{}?excludedAttributes=members", groups[g]),
                    None,
                    status_is(&[200]),
                )
                .await;
            }
            (60..=69, Some(i)) => {
                next_name += 1;
                let given = format!("Given{next_name}");
                let body = patch_body(json!([{"op": "replace", "path": "name.givenName",
                    "value": given}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::PatchName,
                    reqwest::Method::PATCH,
                    &format!("/Users/{}", users[i].id),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].given = given;
                }
            }
            (70..=75, Some(i)) => {
                let (op, active) = if users[i].active {
                    (Op::Deactivate, false)
                } else {
                    (Op::Reactivate, true)
                };
                // Okta's shape: replace with an object value.
                let body = patch_body(json!([{"op": "replace", "value": {"active": active}}]));
                let ok = call(
                    &scim,
                    &log,
                    op,
                    reqwest::Method::PATCH,
                    &format!("/Users/{}", users[i].id),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].active = active;
                }
            }
            (76..=89, Some(i)) => {
                let g = rng.random_range(0..groups.len());
                let body = patch_body(json!([{"op": "add", "path": "members",
                    "value": [{"value": users[i].id}]}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::GroupAdd,
                    reqwest::Method::PATCH,
                    &format!("/Groups/{}", groups[g]),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].groups.insert(g);
                }
            }
            (_, Some(i)) => {
                let Some(&g) = users[i]
                    .groups
                    .iter()
                    .nth(rng.random_range(0..users[i].groups.len().max(1)))
                else {
                    continue;
                };
                let body = patch_body(json!([{"op": "remove",
                    "path": format!("members[value eq \"{}\"]", users[i].id)}]));
                let ok = call(
                    &scim,
                    &log,
                    Op::GroupRemove,
                    reqwest::Method::PATCH,
                    &format!("/Groups/{}", groups[g]),
                    Some(&body),
                    status_is(&[200, 204]),
                )
                .await;
                if ok.is_some() {
                    users[i].groups.remove(&g);
                }
            }
        }
    }
    users
}

/// The faults of window `k`, in rotation. They are harsh enough that the bridge's own retries
/// (4 attempts within 6 s) often fail too, so the IdP sees 429/503 and retries.
pub(super) fn fault_for(k: usize, seed: u64) -> (&'static str, Faults) {
    let seed = seed.wrapping_add(k as u64);
    match k % 5 {
        0 => (
            "429 storm (0.5 calls/s, Retry-After)",
            Faults {
                rate_limit: Some(RateLimit {
                    per_second: 0.5,
                    burst: 1,
                    retry_after: true,
                }),
                seed,
                ..Faults::default()
            },
        ),
        1 => (
            "503 burst (90% of the calls)",
            Faults {
                error_share: 0.9,
                error_statuses: vec![503],
                seed,
                ..Faults::default()
            },
        ),
        2 => (
            "latency 50-1500 ms",
            Faults {
                latency: Some(Latency::UniformMs { min: 50, max: 1500 }),
                seed,
                ..Faults::default()
            },
        ),
        3 => (
            "connections dropped mid-response (60%)",
            Faults {
                drop_share: 0.6,
                seed,
                ..Faults::default()
            },
        ),
        _ => (
            "mixed: 500/502/503 20%, drops 10%, latency 0-300 ms",
            Faults {
                error_share: 0.2,
                error_statuses: vec![500, 502, 503],
                drop_share: 0.1,
                latency: Some(Latency::UniformMs { min: 0, max: 300 }),
                seed,
                ..Faults::default()
            },
        ),
    }
}
