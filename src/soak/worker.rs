//! One IdP connection's workload: the kinds of request, the users it keeps, the run's names,
//! and the fault schedule's rotation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::partner::emulator::faults::{Faults, Latency, RateLimit};

use super::client::{call, expect_total, lookup_path, patch_body, status_is, Log, Reply, Scim};
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

/// What every connection shares: the client, the answer log, the run's names and the groups.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) scim: Scim,
    pub(super) log: Log,
    pub(super) names: Names,
    pub(super) groups: Arc<Vec<String>>,
}

/// How one connection paces itself: the users it keeps, the time between its requests, and
/// when it stops.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    pub(super) target_users: usize,
    pub(super) interval: Duration,
    pub(super) end: Instant,
}

/// One connection's loop: its own users, a seeded mix of requests, paced to `pace.interval`.
pub(super) async fn worker(w: usize, seed: u64, shared: Shared, pace: Pace) -> Vec<ModelUser> {
    let mut worker = Worker {
        w,
        rng: SmallRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        shared,
        users: Vec::new(),
        next_email: 0,
        next_name: 0,
    };
    let mut due = Instant::now();
    while Instant::now() < pace.end {
        due += pace.interval;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Behind (retries, slow answers): do not burst to catch up.
            due = now;
        }
        worker.step(pace.target_users).await;
    }
    worker.users
}

/// One connection's state: its random choices, its users and the counters its names use.
struct Worker {
    w: usize,
    rng: SmallRng,
    shared: Shared,
    users: Vec<ModelUser>,
    next_email: u64,
    next_name: u64,
}

impl Worker {
    /// Picks one request by a roll of 100 (and a user, when it has any) and sends it.
    async fn step(&mut self, target_users: usize) {
        let users = &self.users;
        let roll = self.rng.random_range(0..100u32);
        let pick = if users.is_empty() {
            None
        } else {
            Some(self.rng.random_range(0..users.len()))
        };
        match (roll, pick) {
            // A new user, or one removed once the connection has its share.
            (0..=11, _) | (_, None) if users.len() < target_users => self.create_user().await,
            (0..=11, Some(i)) => self.delete_user(i).await,
            (_, None) => {}
            (12..=36, Some(i)) => self.lookup_hit(i).await,
            (37..=46, _) => self.lookup_miss().await,
            (47..=54, _) => self.list_page().await,
            (55..=59, _) => self.get_group().await,
            (60..=69, Some(i)) => self.patch_name(i).await,
            (70..=75, Some(i)) => self.toggle_active(i).await,
            (76..=89, Some(i)) => self.group_add(i).await,
            (_, Some(i)) => self.group_remove(i).await,
        }
    }

    /// Sends one request and logs its answer; `Some` when it passed `check`.
    async fn call(
        &self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        check: impl Fn(u16, &serde_json::Value) -> Result<(), String>,
    ) -> Option<Reply> {
        let Shared { scim, log, .. } = &self.shared;
        call(scim, log, op, method, path, body, check).await
    }

    /// Entra's probe, then a create; the user is kept once the bridge answers 201.
    async fn create_user(&mut self) {
        let email = self.shared.names.email(self.w, self.next_email);
        self.next_email += 1;
        self.next_name += 1;
        let given = format!("Given{}", self.next_name);
        // Entra's probe first, as it does before every create.
        let probe = lookup_path(&email);
        self.call(
            Op::LookupMiss,
            reqwest::Method::GET,
            &probe,
            None,
            expect_total(0),
        )
        .await;
        let body = json!({
            "schemas": [USER_SCHEMA],
            "userName": email,
            "externalId": format!("ext-{email}"),
            "active": true,
            "name": {"givenName": given, "familyName": format!("Family{}", self.w)},
            "emails": [{"value": email, "type": "work", "primary": true}],
        });
        let created = self
            .call(
                Op::CreateUser,
                reqwest::Method::POST,
                "/Users",
                Some(&body),
                status_is(&[201]),
            )
            .await;
        if let Some(id) = created.and_then(|r| r.body["id"].as_str().map(str::to_owned)) {
            self.users.push(ModelUser {
                id,
                email,
                given,
                active: true,
                groups: BTreeSet::new(),
            });
        }
    }

    /// Deletes user `i`; kept when the outcome is unknown.
    async fn delete_user(&mut self, i: usize) {
        let u = self.users.swap_remove(i);
        let ok = self
            .call(
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
            self.users.push(u);
        }
    }

    /// A `userName eq` lookup of user `i`, which must find it.
    async fn lookup_hit(&mut self, i: usize) {
        let path = lookup_path(&self.users[i].email);
        self.call(
            Op::LookupHit,
            reqwest::Method::GET,
            &path,
            None,
            expect_total(1),
        )
        .await;
    }

    /// A `userName eq` lookup of an email nobody has, which must find nothing.
    async fn lookup_miss(&mut self) {
        let email = format!("{}@soak.example.com", uuid::Uuid::new_v4());
        let path = lookup_path(&email);
        self.call(
            Op::LookupMiss,
            reqwest::Method::GET,
            &path,
            None,
            expect_total(0),
        )
        .await;
    }

    /// A page of 50 users from a random start.
    async fn list_page(&mut self) {
        let start = self.rng.random_range(0..200u32) + 1;
        self.call(
            Op::ListPage,
            reqwest::Method::GET,
            &format!("/Users?startIndex={start}&count=50"),
            None,
            status_is(&[200]),
        )
        .await;
    }

    /// A random group, without its members.
    async fn get_group(&mut self) {
        let g = self.rng.random_range(0..self.shared.groups.len());
        self.call(
            Op::GetGroup,
            reqwest::Method::GET,
            &format!(
                "/Groups/{}?excludedAttributes=members",
                self.shared.groups[g]
            ),
            None,
            status_is(&[200]),
        )
        .await;
    }

    /// A new given name for user `i`.
    async fn patch_name(&mut self, i: usize) {
        self.next_name += 1;
        let given = format!("Given{}", self.next_name);
        let body = patch_body(json!([{"op": "replace", "path": "name.givenName",
            "value": given}]));
        let ok = self
            .call(
                Op::PatchName,
                reqwest::Method::PATCH,
                &format!("/Users/{}", self.users[i].id),
                Some(&body),
                status_is(&[200, 204]),
            )
            .await;
        if ok.is_some() {
            self.users[i].given = given;
        }
    }

    /// Deactivates user `i`, or reactivates it when inactive.
    async fn toggle_active(&mut self, i: usize) {
        let (op, active) = if self.users[i].active {
            (Op::Deactivate, false)
        } else {
            (Op::Reactivate, true)
        };
        // Okta's shape: replace with an object value.
        let body = patch_body(json!([{"op": "replace", "value": {"active": active}}]));
        let ok = self
            .call(
                op,
                reqwest::Method::PATCH,
                &format!("/Users/{}", self.users[i].id),
                Some(&body),
                status_is(&[200, 204]),
            )
            .await;
        if ok.is_some() {
            self.users[i].active = active;
        }
    }

    /// Adds user `i` to a random group.
    async fn group_add(&mut self, i: usize) {
        let g = self.rng.random_range(0..self.shared.groups.len());
        let body = patch_body(json!([{"op": "add", "path": "members",
            "value": [{"value": self.users[i].id}]}]));
        let ok = self
            .call(
                Op::GroupAdd,
                reqwest::Method::PATCH,
                &format!("/Groups/{}", self.shared.groups[g]),
                Some(&body),
                status_is(&[200, 204]),
            )
            .await;
        if ok.is_some() {
            self.users[i].groups.insert(g);
        }
    }

    /// Removes user `i` from one of its groups (nothing when it has none).
    async fn group_remove(&mut self, i: usize) {
        let Some(&g) = self.users[i]
            .groups
            .iter()
            .nth(self.rng.random_range(0..self.users[i].groups.len().max(1)))
        else {
            return;
        };
        let body = patch_body(json!([{"op": "remove",
            "path": format!("members[value eq \"{}\"]", self.users[i].id)}]));
        let ok = self
            .call(
                Op::GroupRemove,
                reqwest::Method::PATCH,
                &format!("/Groups/{}", self.shared.groups[g]),
                Some(&body),
                status_is(&[200, 204]),
            )
            .await;
        if ok.is_some() {
            self.users[i].groups.remove(&g);
        }
    }
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
