//! The IdP model: its users and groups as the IdP intends them, and the client that sends a
//! request until a definitive answer; the request bodies and names it uses.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};

use super::instance::Targets;
use super::{ENTERPRISE, GIVE_UP_AFTER, NO_BRIDGE_LIMIT, PATCH_OP, TOKEN, USER_SCHEMA};

#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// SCIM id of the current incarnation; `None`: never created or deleted.
    pub(super) id: Option<String>,
    pub(super) email: String,
    pub(super) given: String,
    pub(super) family: String,
    pub(super) active: bool,
    /// Emails this slot's users have had (the current one included).
    pub(super) emails_used: BTreeSet<String>,
    /// Its partner account carries the unmanaged vendor group (until the account is deleted).
    pub(super) vendor: bool,
    /// The owner slot: protected, never renamed.
    pub(super) protected: bool,
    /// Bumped at each email change and re-create, for fresh emails.
    pub(super) version: u32,
    /// What the IdP did to this slot, with answers, for a failure's report.
    pub(super) history: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct GroupM {
    pub(super) id: Option<String>,
    pub(super) name: String,
    /// Names it had before renames.
    pub(super) old_names: BTreeSet<String>,
    /// SCIM ids of its members (ids of deleted users may stay; they do not matter).
    pub(super) members: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) users: Vec<Slot>,
    pub(super) groups: Vec<GroupM>,
    pub(super) acknowledged: usize,
    pub(super) violations: Vec<String>,
}

/// Shared by the IdP connections.
pub(super) struct Idp {
    pub(super) http: reqwest::Client,
    pub(super) targets: Arc<Targets>,
    pub(super) next: AtomicUsize,
    pub(super) retried: AtomicUsize,
    pub(super) cancelled: AtomicUsize,
    pub(super) cancel_share: f64,
    pub(super) model: Mutex<Model>,
    pub(super) epoch: Instant,
}

/// A definitive answer, and whether an earlier attempt may have landed.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) ambiguous: bool,
}

impl Idp {
    /// Appends to slot `u`'s history.
    pub(super) fn note(&self, u: usize, what: String) {
        let t = self.epoch.elapsed().as_millis();
        if let Ok(mut m) = self.model.lock() {
            m.users[u].history.push(format!("{t} ms: {what}"));
        }
    }

    pub(super) fn violation(&self, v: String) {
        if let Ok(mut m) = self.model.lock() {
            m.violations.push(v);
        }
    }

    /// Sends until a definitive answer (2xx or 4xx other than 429); `None` after
    /// [`GIVE_UP_AFTER`] (a violation is recorded).
    pub(super) async fn send(
        &self,
        rng: &mut SmallRng,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<Answer> {
        let end = Instant::now() + GIVE_UP_AFTER;
        let mut ambiguous = false;
        loop {
            if Instant::now() > end {
                self.violation(format!(
                    "{method} {path}: no definitive answer within {GIVE_UP_AFTER:?}"
                ));
                return None;
            }
            let Some(base) = self
                .targets
                .pick(self.next.fetch_add(1, Ordering::Relaxed))
                .await
            else {
                self.violation(format!(
                    "liveness: {method} {path}: no bridge instance up for {NO_BRIDGE_LIMIT:?}"
                ));
                return None;
            };
            let req = self.request(&base, method.clone(), path, body);
            match self.maybe_cancelled(rng, attempt(req)).await {
                Some((status, _, body)) if status != 429 && status < 500 => {
                    return Some(Answer {
                        status,
                        body,
                        ambiguous,
                    })
                }
                other => {
                    ambiguous = true;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = match other {
                        Some((_, Some(secs), _)) => (secs * 1000).min(300),
                        _ => rng.random_range(10..=120),
                    };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }

    /// The request to the bridge at `base`, with the bearer token and a SCIM body if any.
    fn request(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("Accept", "application/scim+json");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        req
    }

    /// Some attempts are cancelled: the future is dropped after a random time, as an IdP's own
    /// timeout does; a cancelled attempt is `None`, like one that got no answer.
    async fn maybe_cancelled(
        &self,
        rng: &mut SmallRng,
        attempt: impl Future<Output = Option<Attempt>>,
    ) -> Option<Attempt> {
        if rng.random_bool(self.cancel_share) {
            let after = Duration::from_millis(rng.random_range(1..=150));
            match tokio::time::timeout(after, attempt).await {
                Ok(r) => r,
                Err(_) => {
                    self.cancelled.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        } else {
            attempt.await
        }
    }

    /// The one resource a filter finds (after a 409 to a create that may have landed).
    pub(super) async fn find(
        &self,
        rng: &mut SmallRng,
        resource: &str,
        attr: &str,
        value: &str,
    ) -> Option<String> {
        let filter = format!("{attr} eq \"{value}\"");
        let path = format!(
            "/{resource}?filter={}",
            percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
        );
        let a = self.send(rng, reqwest::Method::GET, &path, None).await?;
        if a.status != 200 || a.body["totalResults"] != 1 {
            self.violation(format!(
                "GET /{resource}?filter={filter} after a 409: {} {}",
                a.status, a.body
            ));
            return None;
        }
        a.body["Resources"][0]["id"].as_str().map(str::to_owned)
    }

    /// A create: `Some(id)` once it exists.
    pub(super) async fn create(
        &self,
        rng: &mut SmallRng,
        resource: &str,
        body: &Value,
        attr: &str,
        value: &str,
    ) -> Option<String> {
        let path = format!("/{resource}");
        let a = self
            .send(rng, reqwest::Method::POST, &path, Some(body))
            .await?;
        match a.status {
            201 => match a.body["id"].as_str() {
                Some(id) => Some(id.to_owned()),
                None => {
                    self.violation(format!(
                        "POST {path} {value}: 201 without an id: {}",
                        a.body
                    ));
                    None
                }
            },
            409 if a.ambiguous => self.find(rng, resource, attr, value).await,
            s => {
                self.violation(format!("POST {path} {value}: unexpected {s}: {}", a.body));
                None
            }
        }
    }

    /// A change that must answer 2xx.
    pub(super) async fn change(
        &self,
        rng: &mut SmallRng,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Option<(u16, bool)> {
        let a = self.send(rng, method.clone(), path, body).await?;
        if (200..300).contains(&a.status)
            || (method == reqwest::Method::DELETE && a.status == 404 && a.ambiguous)
        {
            return Some((a.status, a.ambiguous));
        }
        self.violation(format!(
            "{what} ({method} {path}): unexpected {} (after {} attempt): {}",
            a.status,
            if a.ambiguous { "a retried" } else { "one" },
            a.body
        ));
        None
    }
}

/// One attempt's answer: the status, `Retry-After` in seconds if any, and the body.
type Attempt = (u16, Option<u64>, Value);

/// Sends one attempt; `None` when no full answer came (a refused connection, a timeout, a
/// body cut off).
async fn attempt(req: reqwest::RequestBuilder) -> Option<Attempt> {
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = res.bytes().await.ok()?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Some((status, retry_after, body))
}

pub(super) fn user_body(
    email: &str,
    given: &str,
    family: &str,
    active: bool,
    entra: bool,
) -> Value {
    if entra {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": email.split('@').next().unwrap_or_default(),
            "userName": email,
            "active": active,
            "displayName": format!("{given} {family}"),
            "emails": [{"primary": true, "type": "work", "value": email}],
            "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
            ENTERPRISE: {"department": "Simulation"},
        })
    } else {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": email,
            "name": {"givenName": given, "familyName": family},
            "emails": [{"primary": true, "value": email, "type": "work"}],
            "displayName": format!("{given} {family}"),
            "locale": "en-US",
            "groups": [],
            "active": active,
        })
    }
}

pub(super) fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

pub(super) fn slot_email(seed: u64, slot: usize, version: u32) -> String {
    format!("sim{seed}-u{slot}-v{version}@sim.example.com")
}

pub(super) fn group_name(g: usize, version: u32) -> String {
    if version == 0 {
        format!("Sim Team {g}")
    } else {
        format!("Sim Team {g} r{version}")
    }
}
