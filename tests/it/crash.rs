//! Crashes of the real binary (issue 8, "Crashes"): the bridge runs as a child process on a
//! store in a temporary folder (or a PostgreSQL schema of its own), several IdP connections
//! drive a sync through it (users and groups created, memberships added and removed by group
//! PATCHes, users deactivated), and the child is killed with SIGKILL at seeded random moments,
//! at least 20 times, and restarted on the same store each time. The driver behaves like an
//! IdP: a request that got no answer, a 5xx or a 429 is sent again (to the restarted bridge);
//! a 2xx is an acknowledged change. At the end every acknowledged change is at the partner
//! (each user's groups, each deactivated user gone), no user was created twice at the partner,
//! the store agrees, and the outbox is drained (`scim-bridge status` exits 0).
//!
//! The partner emulator runs in the test process, so its state and its call log outlive every
//! kill. The seed is printed; `SCIM_BRIDGE_CRASH_SEED` replays one.
//!
//! The pieces (child process, configuration, IdP driver, desired state, checks) are shared
//! with `replicas.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{Faults, Latency};
use scim_bridge::partner::emulator::{CallRecord, Emulator, RunningEmulator};
use scim_bridge::partner::CallKind;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");
pub const SITE: &str = "acme";
const TOKEN: &str = "crash-test-bearer-token-0123456789";
const OWNER: &str = "owner@acme.example.com";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEED_ENV: &str = "SCIM_BRIDGE_CRASH_SEED";
/// Generous: the machine running the tests may be busy.
const STARTUP: Duration = Duration::from_secs(60);

/// The seed of this run: `SCIM_BRIDGE_CRASH_SEED`, or a fixed default (so CI is repeatable).
pub fn seed(default: u64) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={s}")),
        Err(_) => default,
    };
    eprintln!("seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

// ---------------------------------------------------------------------------------------------
// The bridge as a child process.

/// The settings a test varies.
#[derive(Clone)]
pub struct ChildConfig {
    pub store_url: String,
    pub partner: String,
    /// Outbox claim lease: how long rows a killed process held wait on PostgreSQL.
    pub lease_ms: u64,
}

/// Writes the configuration file of one bridge process: one tenant on one emulated site, the
/// `remove` deprovisioning policy, short waits and retries, no periodic reconcile (it would
/// repair what the engine lost, and hide it).
pub fn write_config(dir: &Path, name: &str, c: &ChildConfig) -> PathBuf {
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}"

[store]
url = "{store}"

[log]
level = "info"
format = "json"

[http.rate_limit]
per_second = 0.0
burst = 1

[bridge]
wait_deadline_ms = 1000
workers = 4
lease_ms = {lease}
poll_ms = 50
retry_base_ms = 50
retry_max_ms = 500
coalesce_ms = 20
coalesce_max_ms = 200
reconcile_interval_s = 0

[bridge.partner]
request_timeout_ms = 1500
call_deadline_ms = 2000
max_attempts = 3
backoff_base_ms = 10
backoff_max_ms = 100
rate_per_second = 0.0
circuit_failure_threshold = 0

[[tenants]]
name = "acme"
base_path = "/scim/v2"
invited_by_email = "{OWNER}"
deprovision = "remove"

[[tenants.credentials.bearer_tokens]]
name = "idp"
token = "{TOKEN}"

[[tenants.sites]]
base_url = "{partner}"
site_name = "{SITE}"
api_key = "key-{SITE}"
api = "{api}"
"#,
        api = crate::support::default_api().as_str(),
        dir = dir.display(),
        store = c.store_url,
        lease = c.lease_ms,
        partner = c.partner,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A command with no SCIM_BRIDGE_* variables inherited from the developer's shell.
fn command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// One running bridge process; its output goes to a log file (a pipe nobody reads would
/// block it). Dropped, it is killed.
pub struct BridgeProc {
    child: Child,
    /// `http://127.0.0.1:PORT/scim/v2`
    pub base: String,
}

impl BridgeProc {
    /// Starts `scim-bridge --config CONFIG`, logging to `log`, and returns once it serves.
    pub async fn start(config: &Path, log: &Path) -> BridgeProc {
        Self::start_with(config, log, &[]).await
    }

    /// [`BridgeProc::start`] with more environment variables.
    pub async fn start_with(config: &Path, log: &Path, env: &[(&str, &str)]) -> BridgeProc {
        let file = std::fs::File::create(log).unwrap();
        let mut child = command()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let end = Instant::now() + STARTUP;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // The `serving` line names the address the listener was bound to.
            let listen = text.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "serving")
                    .then(|| v["fields"]["listen"].as_str().map(str::to_owned))
                    .flatten()
            });
            if let Some(listen) = listen {
                return BridgeProc {
                    child,
                    base: format!("http://{listen}/scim/v2"),
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the bridge exited ({status}) before serving:\n{text}");
            }
            assert!(Instant::now() < end, "the bridge did not serve:\n{text}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no shutdown, no cleanup, whatever it was doing.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `scim-bridge --config CONFIG ARGS` to its end.
pub async fn run_cli(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = command();
    cmd.arg("--config").arg(config).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The emulator, serving in the test process, with seeded latency (`min..=max` ms) on every
/// call so that kills often land while partner calls are in flight.
pub async fn emulator(seed: u64, min: u64, max: u64) -> (Emulator, RunningEmulator) {
    // A v1 site, or an RBAC site under `SCIM_BRIDGE_TEST_SITE_API=roles` (the child bridges'
    // configuration says the same API: `write_config`).
    let emu = crate::support::emulator_for(&crate::support::Options::default());
    emu.set_faults(
        SITE,
        Faults {
            latency: Some(Latency::UniformMs { min, max }),
            seed,
            ..Faults::default()
        },
    );
    let running = emu.clone().spawn().await.unwrap();
    (emu, running)
}

// ---------------------------------------------------------------------------------------------
// The IdP.

/// Where the IdP sends requests: the base URL of each bridge slot, `None` while it is down.
#[derive(Default)]
pub struct Targets {
    slots: Mutex<Vec<Option<String>>>,
}

impl Targets {
    pub fn new(n: usize) -> Arc<Targets> {
        Arc::new(Targets {
            slots: Mutex::new(vec![None; n]),
        })
    }

    pub fn set(&self, slot: usize, base: Option<String>) {
        self.slots.lock().unwrap()[slot] = base;
    }

    /// Slot `k % n`, or the next live one; waits while every slot is down.
    async fn pick(&self, k: usize) -> String {
        loop {
            {
                let slots = self.slots.lock().unwrap();
                let n = slots.len();
                if let Some(base) = (0..n).find_map(|i| slots[(k + i) % n].clone()) {
                    return base;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An IdP connection: sends each request until it is acknowledged.
pub struct Idp {
    http: reqwest::Client,
    targets: Arc<Targets>,
    /// Requests spread over the slots: attempt `k` goes to slot `k % n` when it is up.
    next: AtomicUsize,
    /// Attempts that got no answer, a 5xx or a 429.
    pub retried: AtomicUsize,
}

/// A final answer: status, body, and how many attempts it took.
struct Answer {
    status: StatusCode,
    body: Value,
    attempts: usize,
}

impl Idp {
    pub fn new(targets: Arc<Targets>) -> Idp {
        Idp {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            targets,
            next: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let end = Instant::now() + Duration::from_secs(60);
        let mut attempts = 0;
        loop {
            assert!(
                Instant::now() < end,
                "{method} {path} was not acknowledged within a minute"
            );
            attempts += 1;
            let base = self
                .targets
                .pick(self.next.fetch_add(1, Ordering::Relaxed))
                .await;
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .header("Accept", "application/scim+json");
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/scim+json")
                    .body(serde_json::to_vec(b).unwrap());
            }
            let answer = match req.send().await {
                Ok(res) => {
                    let status = res.status();
                    res.bytes().await.ok().map(|b| (status, b))
                }
                Err(_) => None,
            };
            match answer {
                Some((status, bytes))
                    if !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    let body = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&bytes).into_owned())
                        })
                    };
                    return Answer {
                        status,
                        body,
                        attempts,
                    };
                }
                // No answer (the bridge died), or "retry later": the IdP tries again.
                _ => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// The one resource a `filter` finds (an IdP matching what its lost create made).
    async fn find(&self, resource: &str, attr: &str, value: &str) -> String {
        let filter = format!("{attr} eq \"{value}\"");
        let path = format!(
            "/{resource}?filter={}",
            percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
        );
        let a = self.send(reqwest::Method::GET, &path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["totalResults"], 1, "{}", a.body);
        a.body["Resources"][0]["id"].as_str().unwrap().to_owned()
    }

    /// `POST`s a resource; a 409 on a retry means the lost attempt made it: the IdP looks it
    /// up, as Okta and Entra do, and links it.
    async fn create(&self, resource: &str, body: Value, attr: &str, value: &str) -> String {
        let a = self
            .send(reqwest::Method::POST, &format!("/{resource}"), Some(&body))
            .await;
        match a.status {
            StatusCode::CREATED => a.body["id"].as_str().unwrap().to_owned(),
            StatusCode::CONFLICT if a.attempts > 1 => self.find(resource, attr, value).await,
            s => panic!(
                "POST /{resource} {value}: {s} after {} tries: {}",
                a.attempts, a.body
            ),
        }
    }

    async fn patch(&self, path: &str, body: Value) {
        let a = self.send(reqwest::Method::PATCH, path, Some(&body)).await;
        assert!(
            a.status.is_success(),
            "PATCH {path}: {} after {} tries: {}",
            a.status,
            a.attempts,
            a.body
        );
    }

    async fn get(&self, path: &str) -> Value {
        let a = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.body);
        a.body
    }
}

// ---------------------------------------------------------------------------------------------
// The workload and the state the IdP wants.

pub fn email(u: usize) -> String {
    format!("crash{u:02}@acme.example.com")
}

pub fn group_name(g: usize) -> String {
    format!("Crash Team {g}")
}

/// The shape of a run.
#[derive(Clone, Copy)]
pub struct Workload {
    pub users: usize,
    pub groups: usize,
    pub connections: usize,
    /// Membership PATCHes and deactivations each connection sends at least.
    pub min_ops: usize,
    /// Share of a connection's operations that deactivate one of its users (at most a quarter
    /// of the users end up inactive).
    pub deactivate_share: f64,
}

/// What the IdP has been told is done: ids, members, active flags. Each (group, user) pair is
/// changed by one connection only (`(g + u) % connections`), each user's `active` by
/// connection `u % connections`, so acknowledged changes commute and this is the desired
/// state whatever the interleaving.
#[derive(Default, Debug)]
pub struct Model {
    pub user_ids: Vec<String>,
    pub group_ids: Vec<String>,
    pub members: Vec<BTreeSet<usize>>,
    pub active: Vec<bool>,
    pub acknowledged: usize,
}

impl Model {
    /// The partner groups user `u` must end with; `None`: it must not exist at the partner.
    pub fn desired(&self, u: usize) -> Option<BTreeSet<String>> {
        self.active[u].then(|| {
            (0..self.members.len())
                .filter(|g| self.members[*g].contains(&u))
                .map(group_name)
                .collect()
        })
    }
}

fn patch_members(add: &[&str], remove: &[&str]) -> Value {
    let mut ops = Vec::new();
    if !add.is_empty() {
        let values: Vec<Value> = add.iter().map(|i| json!({ "value": i })).collect();
        ops.push(json!({"op": "add", "path": "members", "value": values}));
    }
    for i in remove {
        ops.push(json!({"op": "remove", "path": format!("members[value eq \"{i}\"]")}));
    }
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// Runs the workload over `connections` concurrent IdP connections: first each creates its
/// users and groups, then each sends membership PATCHes (random groups, its own pairs) and
/// deactivations until it has sent `min_ops` and `keep_going` is false. Returns the model.
pub async fn drive(
    w: Workload,
    seed: u64,
    idps: &[Arc<Idp>],
    keep_going: &AtomicBool,
) -> Arc<Mutex<Model>> {
    let model = Arc::new(Mutex::new(Model {
        user_ids: vec![String::new(); w.users],
        group_ids: vec![String::new(); w.groups],
        members: vec![BTreeSet::new(); w.groups],
        active: vec![true; w.users],
        acknowledged: 0,
    }));
    let c_n = w.connections;
    // Creates: user u and group g by connection u % c_n and g % c_n.
    let creates = (0..c_n).map(|c| {
        let (model, idp) = (model.clone(), idps[c % idps.len()].clone());
        async move {
            for u in (c..w.users).step_by(c_n) {
                let e = email(u);
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": e,
                    "name": {"givenName": "Crash", "familyName": format!("User{u}")},
                    "emails": [{"value": e, "type": "work", "primary": true}],
                    "active": true,
                });
                let id = idp.create("Users", body, "userName", &e).await;
                let mut m = model.lock().unwrap();
                m.user_ids[u] = id;
                m.acknowledged += 1;
            }
            for g in (c..w.groups).step_by(c_n) {
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": group_name(g),
                });
                let id = idp
                    .create("Groups", body, "displayName", &group_name(g))
                    .await;
                let mut m = model.lock().unwrap();
                m.group_ids[g] = id;
                m.acknowledged += 1;
            }
        }
    });
    futures::future::join_all(creates).await;

    let changes = (0..c_n).map(|c| {
        let (model, idp) = (model.clone(), idps[c % idps.len()].clone());
        let mut rng = StdRng::seed_from_u64(seed ^ (0x9e37_79b9 * (c as u64 + 1)));
        async move {
            let max_inactive = (c..w.users).step_by(c_n).count() / 4;
            let (mut ops, mut inactive) = (0, 0);
            while ops < w.min_ops || keep_going.load(Ordering::Relaxed) {
                ops += 1;
                if inactive < max_inactive && rng.random_bool(w.deactivate_share) {
                    let u = c + c_n * rng.random_range(0..(w.users - c).div_ceil(c_n));
                    let id = {
                        let m = model.lock().unwrap();
                        if !m.active[u] {
                            continue;
                        }
                        m.user_ids[u].clone()
                    };
                    let body = json!({"schemas": [PATCH_OP], "Operations": [
                        {"op": "replace", "path": "active", "value": false}]});
                    idp.patch(&format!("/Users/{id}"), body).await;
                    inactive += 1;
                    let mut m = model.lock().unwrap();
                    m.active[u] = false;
                    m.acknowledged += 1;
                    continue;
                }
                let g = rng.random_range(0..w.groups);
                // The users whose membership of g this connection owns.
                let mine: Vec<usize> = (0..w.users).filter(|u| (g + u) % c_n == c).collect();
                let (gid, add, remove) = {
                    let m = model.lock().unwrap();
                    let (mut add, mut remove) = (Vec::new(), Vec::new());
                    for u in &mine {
                        let member = m.members[g].contains(u);
                        if !member && rng.random_bool(0.4) {
                            add.push(*u);
                        } else if member && rng.random_bool(0.25) {
                            remove.push(*u);
                        }
                    }
                    (m.group_ids[g].clone(), add, remove)
                };
                if add.is_empty() && remove.is_empty() {
                    continue;
                }
                let ids = |v: &[usize]| -> Vec<String> {
                    let m = model.lock().unwrap();
                    v.iter().map(|u| m.user_ids[*u].clone()).collect()
                };
                let (a, r) = (ids(&add), ids(&remove));
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                idp.patch(&format!("/Groups/{gid}"), patch_members(&a, &r))
                    .await;
                let mut m = model.lock().unwrap();
                m.members[g].extend(add);
                for u in remove {
                    m.members[g].remove(&u);
                }
                m.acknowledged += 1;
            }
        }
    });
    futures::future::join_all(changes).await;
    model
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The partner groups of `email` (without `All Users`), or `None` when it has no such user.
fn partner_groups(emu: &Emulator, email: &str) -> Option<BTreeSet<String>> {
    let everyone = crate::support::all_users_group(emu, SITE);
    crate::support::partner_user_of(emu, SITE, email)
        .map(|u| u.groups.into_iter().filter(|g| g != everyone).collect())
}

/// Where the partner differs from the model, one line per user.
fn differences(emu: &Emulator, model: &Model) -> Vec<String> {
    (0..model.active.len())
        .filter_map(|u| {
            let (want, got) = (model.desired(u), partner_groups(emu, &email(u)));
            (want != got).then(|| format!("{}: want {want:?}, partner has {got:?}", email(u)))
        })
        .collect()
}

/// Waits until the partner equals the model and the store's outbox is empty.
pub async fn converged(emu: &Emulator, model: &Model, store_url: &str, limit: Duration) {
    let store = scim_bridge::store::Store::connect(store_url).await.unwrap();
    let end = Instant::now() + limit;
    loop {
        let diff = differences(emu, model);
        let depth = store.outbox_stats().await.unwrap().depth;
        if diff.is_empty() && depth == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "not converged within {limit:?}: outbox depth {depth}, {} users differ:\n{}",
            diff.len(),
            diff.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
}

/// Every partner group of the model exists; the store's members equal the model's.
pub async fn store_agrees(idp: &Idp, emu: &Emulator, model: &Model) {
    let names: BTreeSet<String> = crate::support::partner_group_names(emu, SITE)
        .into_iter()
        .collect();
    for (g, id) in model.group_ids.iter().enumerate() {
        assert!(names.contains(&group_name(g)), "{} missing", group_name(g));
        let body = idp.get(&format!("/Groups/{id}")).await;
        let got: BTreeSet<String> = body["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = model.members[g]
            .iter()
            .map(|u| model.user_ids[*u].clone())
            .collect();
        assert_eq!(got, want, "store members of {}", group_name(g));
    }
}

/// No user was created twice at the partner: per email, the successful creates and deletes
/// in the call log alternate, starting with a create (a second create that succeeded while
/// the first user still existed would be a duplicate; the emulator refuses those with 409,
/// which the bridge must treat as "adopt", not as "create under another name").
pub fn assert_no_duplicate_creates(log: &[CallRecord]) {
    let mut exists: HashMap<String, bool> = HashMap::new();
    let mut ok: Vec<&CallRecord> = log
        .iter()
        .filter(|r| r.site == SITE && (200..300).contains(&r.status))
        .filter(|r| {
            matches!(
                r.call,
                CallKind::CreateUser
                    | CallKind::DeleteUser
                    | CallKind::CreateUserV2
                    | CallKind::DeleteUserV2
            )
        })
        .collect();
    ok.sort_by_key(|r| r.seq);
    for r in ok {
        let e = r.email.clone().unwrap_or_default().to_lowercase();
        let there = exists.entry(e.clone()).or_default();
        match r.call {
            CallKind::CreateUser | CallKind::CreateUserV2 => {
                assert!(!*there, "{e} created twice without a delete between: {r:?}");
                *there = true;
            }
            _ => *there = false,
        }
    }
}

/// Successful creates of user `email` (for the report).
fn creates_of(log: &[CallRecord], email: &str) -> usize {
    log.iter()
        .filter(|r| {
            matches!(r.call, CallKind::CreateUser | CallKind::CreateUserV2)
                && (200..300).contains(&r.status)
        })
        .filter(|r| {
            r.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// The crash test.

const WORKLOAD: Workload = Workload {
    users: 24,
    groups: 6,
    connections: 4,
    min_ops: 10,
    deactivate_share: 0.08,
};

/// Kills the bridge `kills` times at seeded random moments (after 100..700 ms of serving),
/// restarting it each time on the same configuration and store.
async fn killer(
    mut proc: BridgeProc,
    targets: Arc<Targets>,
    config: PathBuf,
    dir: PathBuf,
    kills: usize,
    seed: u64,
) -> BridgeProc {
    let mut rng = StdRng::seed_from_u64(seed);
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..700))).await;
        targets.set(0, None);
        proc.kill();
        proc = BridgeProc::start(&config, &dir.join(format!("bridge-{}.log", k + 1))).await;
        targets.set(0, Some(proc.base.clone()));
    }
    proc
}

async fn crash_run(store_url: String, kills: usize, default_seed: u64) {
    let started = Instant::now();
    let seed = seed(default_seed);
    let dir = tempfile::tempdir().unwrap();
    let (emu, running) = emulator(seed, 2, 30).await;
    let config = write_config(
        dir.path(),
        "bridge",
        &ChildConfig {
            store_url: store_url.clone(),
            partner: running.base_url.clone(),
            lease_ms: 2_500,
        },
    );
    let proc = BridgeProc::start(&config, &dir.path().join("bridge-0.log")).await;
    let targets = Targets::new(1);
    targets.set(0, Some(proc.base.clone()));
    let idps: Vec<Arc<Idp>> = (0..WORKLOAD.connections)
        .map(|_| Arc::new(Idp::new(targets.clone())))
        .collect();

    let keep_going = Arc::new(AtomicBool::new(true));
    let kill_task = {
        let (targets, config, keep_going) = (targets.clone(), config.clone(), keep_going.clone());
        let dir = dir.path().to_owned();
        tokio::spawn(async move {
            let proc = killer(proc, targets, config, dir, kills, seed).await;
            keep_going.store(false, Ordering::Relaxed);
            proc
        })
    };
    let model = drive(WORKLOAD, seed, &idps, &keep_going).await;
    let proc = kill_task.await.unwrap();
    let driven = started.elapsed();

    let model = std::mem::take(&mut *model.lock().unwrap());
    converged(&emu, &model, &store_url, Duration::from_secs(30)).await;
    let log = emu.call_log();
    assert_no_duplicate_creates(&log);
    for u in (0..model.active.len()).filter(|u| model.active[*u]) {
        assert_eq!(creates_of(&log, &email(u)), 1, "creates of {}", email(u));
    }
    store_agrees(&idps[0], &emu, &model).await;
    let (code, out) = run_cli(&config, &["status"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("outbox: empty"), "{out}");
    drop(proc);

    let retried: usize = idps.iter().map(|i| i.retried.load(Ordering::Relaxed)).sum();
    eprintln!(
        "crash ({}): {kills} kills, {} acknowledged changes, {retried} IdP retries, {} partner \
         calls, {} users inactive; driven in {driven:?}, converged and checked in {:?}",
        store_url.split(':').next().unwrap_or(""),
        model.acknowledged,
        log.len(),
        model.active.iter().filter(|a| !**a).count(),
        started.elapsed() - driven
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_repeated_sigkill_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    crash_run(url, 20, 0x5eed_c7a5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_repeated_sigkill_postgres() {
    crate::support::with_postgres_url(|url| crash_run(url, 20, 0x5eed_97a5)).await;
}

// ---------------------------------------------------------------------------------------------
// A race the crash runs can hit, made deterministic.

/// A deactivation (policy `remove`) that lands while a worker converges the same user stays a
/// deactivation. The worker read the user from the store (still active), then asks the
/// partner, which answers after the deactivation deleted the user there: it finds no user and
/// would create it again, with its groups, behind the committed deactivation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_during_a_convergence_of_the_user_is_not_undone() {
    use crate::support::{create_group, create_user, Harness, Options};
    use scim_bridge::partner::emulator::faults::FaultAction;

    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, &email(0), "Jane", "Doe").await;
    let group = create_group(&h, "Racers", &[]).await;
    // The engine's next look at the user hangs, after it has read the store.
    h.emulator.set_faults(
        SITE,
        Faults {
            hang_for_ms: Some(600),
            // (On an RBAC site the user read is by id, or by the user list when the adapter has
            // no id yet: the next of either hangs.)
            script: crate::support::scripted(
                &h.emulator,
                SITE,
                CallKind::GetUser,
                1,
                FaultAction::Hang,
            ),
            ..Faults::default()
        },
    );
    let reads = crate::support::count_job(&h.emulator, SITE, CallKind::GetUser, false);
    let add = patch_members(&[&jane], &[]);
    let deactivate = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "active", "value": false}]});
    let group_path = format!("/Groups/{group}");
    let (added, deactivated) = tokio::join!(h.patch(&group_path, add), async {
        let end = Instant::now() + Duration::from_secs(10);
        while crate::support::count_job(&h.emulator, SITE, CallKind::GetUser, false) == reads {
            assert!(Instant::now() < end, "the engine never read the user");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.patch(&format!("/Users/{jane}"), deactivate).await
    });
    assert_eq!(added.0, StatusCode::NO_CONTENT, "{}", added.1);
    assert_eq!(deactivated.0, StatusCode::OK, "{}", deactivated.1);
    assert_eq!(deactivated.1["active"], false);
    h.settle(Duration::from_secs(10)).await;
    let log = h.emulator.call_log();
    let user_calls: Vec<String> = log
        .iter()
        .filter(|r| r.email.as_deref() == Some(email(0).as_str()))
        .map(|r| format!("{:?} {}", r.call, r.status))
        .collect();
    assert!(
        h.partner_user(SITE, &email(0)).is_none(),
        "the deactivated user is back at the partner; its calls: {user_calls:?}"
    );
}
