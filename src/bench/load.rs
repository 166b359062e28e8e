//! The load tool: workers on a shared HTTP client (one keep-alive connection each), sending
//! requests and recording latency and status of every one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

/// One request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Appended to the client's base URL, unless it starts with `http`.
    pub path: String,
    pub body: Option<Value>,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
        }
    }
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body: Some(body),
        }
    }
    pub fn patch(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::PATCH,
            path: path.into(),
            body: Some(body),
        }
    }
}

/// A SCIM client for the load: base URL, bearer token, pooled connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
    /// Re-send after a 429 or 503 with `Retry-After`, as Okta and Entra do (see
    /// [`Client::honouring_retry_after`]).
    retry_after: bool,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>, connections: usize) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections.max(1))
                .timeout(Duration::from_secs(120))
                .no_proxy()
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            auth: token.map(|t| format!("Bearer {t}")),
            retry_after: false,
        })
    }

    /// The same client re-sending a request answered 429 or 503 with `Retry-After` after
    /// that wait (at most 10 s, at most 100 times), as IdPs do. Each answer is recorded.
    pub fn honouring_retry_after(mut self) -> Self {
        self.retry_after = true;
        self
    }

    /// Sends `req`; records it in `rec`; returns the status and the JSON body (Null if none).
    pub async fn send(&self, req: &Req, rec: &mut Recorder) -> (u16, Value) {
        let url = if req.path.starts_with("http") {
            req.path.clone()
        } else {
            format!("{}{}", self.base, req.path)
        };
        let mut retries = 0;
        loop {
            let mut b = self.http.request(req.method.clone(), &url);
            if let Some(a) = &self.auth {
                b = b.header("Authorization", a);
            }
            if let Some(body) = &req.body {
                b = b
                    .header("Content-Type", "application/scim+json")
                    .body(serde_json::to_vec(body).unwrap_or_default());
            }
            let started = Instant::now();
            let result = b.send().await;
            let (status, value, wait) = match result {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let wait = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let bytes = res.bytes().await.unwrap_or_default();
                    let value = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                    };
                    (status, value, wait)
                }
                Err(_) => (0, Value::Null, None),
            };
            rec.record(started.elapsed(), status);
            match wait {
                Some(wait) if self.retry_after && matches!(status, 429 | 503) && retries < 100 => {
                    retries += 1;
                    tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
                }
                _ => return (status, value),
            }
        }
    }
}

/// What one worker saw.
#[derive(Debug, Default)]
pub struct Recorder {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
}

impl Recorder {
    pub fn record(&mut self, latency: Duration, status: u16) {
        self.latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// Requests of one phase: counts, statuses and latency percentiles.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Status -> count (0: the request failed without an answer).
    pub statuses: BTreeMap<u16, u64>,
}

impl Stats {
    pub fn from(recorders: Vec<Recorder>, elapsed: Duration) -> Stats {
        let mut lat: Vec<u32> = Vec::new();
        let mut statuses = BTreeMap::new();
        for r in recorders {
            lat.extend(r.latencies_us);
            for (s, n) in r.statuses {
                *statuses.entry(s).or_default() += n;
            }
        }
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
            f64::from(lat.get(i).copied().unwrap_or(0)) / 1000.0
        };
        let secs = elapsed.as_secs_f64().max(1e-9);
        Stats {
            requests: lat.len() as u64,
            seconds: secs,
            per_second: lat.len() as f64 / secs,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: lat.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
            statuses,
        }
    }

    /// Answers outside 2xx (and 304).
    pub fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s) && **s != 304)
            .map(|(_, n)| n)
            .sum()
    }

    /// Answers with this status.
    pub fn count_of(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// Runs every job once on `connections` workers; a job is any async work that sends through
/// the client and records into the worker's recorder.
pub async fn run_jobs<J, F, Fut>(connections: usize, jobs: Vec<J>, work: F) -> Stats
where
    J: Send + 'static,
    F: Fn(J, Recorder) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Recorder> + Send,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..connections.max(1) {
        let (queue, work) = (queue.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                let Some(job) = job else { break };
                rec = work(job, rec).await;
            }
            rec
        }));
    }
    let mut recs = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            recs.push(r);
        }
    }
    Stats::from(recs, started.elapsed())
}

/// Sends requests made by `next` (given the worker index and a counter) on `connections`
/// workers until `duration` has passed.
pub async fn run_for<F>(connections: usize, duration: Duration, client: Client, next: F) -> Stats
where
    F: Fn(usize, u64) -> Req + Send + Sync + 'static,
{
    let next = Arc::new(next);
    let started = Instant::now();
    let end = started + duration;
    let mut handles = Vec::new();
    for w in 0..connections.max(1) {
        let (next, client) = (next.clone(), client.clone());
        handles.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            let mut i = 0u64;
            while Instant::now() < end {
                let req = next(w, i);
                client.send(&req, &mut rec).await;
                i += 1;
            }
            rec
        }));
    }
    let mut recs = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            recs.push(r);
        }
    }
    Stats::from(recs, started.elapsed())
}
