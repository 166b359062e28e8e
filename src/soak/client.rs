//! The workload's SCIM client: requests sent and retried the way an IdP does, every answer
//! logged, and the checks and bodies the workers use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::worker::Op;
use super::{GIVE_UP_AFTER, PATCH_SCHEMA};

/// One answer (or its absence), with when it was asked and answered.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) op: Op,
    /// Since the start of the run.
    pub(super) start: Duration,
    pub(super) end: Duration,
    /// 0: no answer (connection or timeout error).
    pub(super) status: u16,
    pub(super) retry_after: bool,
    /// Set when a 2xx carried the wrong content, or the status was one the op never expects.
    pub(super) wrong: Option<String>,
}

/// The SCIM client of the workload: answers with status, `Retry-After` and body.
#[derive(Clone)]
pub(super) struct Scim {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) auth: String,
    pub(super) epoch: Instant,
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) retry_after: Option<u64>,
    pub(super) body: Value,
    pub(super) start: Duration,
    pub(super) end: Duration,
}

impl Scim {
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.auth);
        if let Some(body) = body {
            b = b
                .header("Content-Type", "application/scim+json")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let start = self.epoch.elapsed();
        let (status, retry_after, body) = match b.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match res.bytes().await {
                    Ok(bytes) => (
                        status,
                        retry_after,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    ),
                    // The body broke off: no whole answer.
                    Err(_) => (0, None, Value::Null),
                }
            }
            Err(_) => (0, None, Value::Null),
        };
        Reply {
            status,
            retry_after,
            body,
            start,
            end: self.epoch.elapsed(),
        }
    }
}

/// Records every answer; shared by the workers.
#[derive(Clone, Default)]
pub(super) struct Log {
    pub(super) answers: Arc<Mutex<Vec<Answer>>>,
}

impl Log {
    pub(super) fn push(&self, a: Answer) {
        if let Ok(mut v) = self.answers.lock() {
            v.push(a);
        }
    }
}

/// Sends one IdP request the way an IdP does: on 429 or 503 with `Retry-After` it waits (at
/// most 3 s, to keep the workload moving) and sends it again, until an answer that is not one
/// of those or [`GIVE_UP_AFTER`]. Every answer is logged; `check` judges a final answer
/// (`Err(reason)`: wrong). Returns the final reply when it was a 2xx judged right.
pub(super) async fn call(
    scim: &Scim,
    log: &Log,
    op: Op,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    check: impl Fn(u16, &Value) -> Result<(), String>,
) -> Option<Reply> {
    let started = Instant::now();
    loop {
        let reply = scim.send(method.clone(), path, body).await;
        let retryable = matches!(reply.status, 429 | 503);
        let wrong = if retryable || reply.status == 0 {
            None
        } else {
            check(reply.status, &reply.body).err().map(|why| {
                let detail = reply.body["detail"].as_str().unwrap_or_default();
                format!("{} {path}: {} {why} {detail}", op.name(), reply.status)
            })
        };
        log.push(Answer {
            op,
            start: reply.start,
            end: reply.end,
            status: reply.status,
            retry_after: reply.retry_after.is_some(),
            wrong: wrong.clone(),
        });
        match reply.retry_after {
            Some(secs) if retryable && started.elapsed() < GIVE_UP_AFTER => {
                let wait = Duration::from_secs(secs.min(3)).max(Duration::from_millis(200));
                tokio::time::sleep(wait).await;
            }
            _ => {
                let good = wrong.is_none() && (200..300).contains(&reply.status);
                return good.then_some(reply);
            }
        }
    }
}

pub(super) fn status_is(expected: &'static [u16]) -> impl Fn(u16, &Value) -> Result<(), String> {
    move |status, _| {
        if expected.contains(&status) {
            Ok(())
        } else {
            Err(format!("(expected {expected:?})"))
        }
    }
}

pub(super) fn lookup_path(email: &str) -> String {
    let filter = format!("userName eq \"{email}\"");
    format!(
        "/Users?filter={}",
        percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
    )
}

pub(super) fn expect_total(n: u64) -> impl Fn(u16, &Value) -> Result<(), String> {
    move |status, body| {
        if status != 200 {
            return Err("(expected 200)".into());
        }
        match body["totalResults"].as_u64() {
            Some(t) if t == n => Ok(()),
            other => Err(format!("totalResults {other:?}, expected {n}")),
        }
    }
}

pub(super) fn patch_body(ops: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}
