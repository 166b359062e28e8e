//! Acceptance tests of the membership engine (DESIGN.md section 4): concurrent group writes
//! (no lost update, at most one partner write in flight per user, coalescing), a crash with
//! work in the outbox, several sites with one failing, dry run, adoption of partner users and
//! groups, and groups the bridge does not manage.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::emulator::{CallRecord, Emulator};
use scim_bridge::partner::{CallKind, PartnerUser};
use serde_json::{json, Value};

use crate::support::{
    all_users_group, count_job, create_group, create_user, kind_at, partner_group_names,
    partner_user_of, partner_users_of, seed_group, seed_user, Harness, Options,
};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Options for these tests: no client-side rate limit (the emulator is local), short partner
/// deadlines so a failing site costs little, a circuit that recovers quickly.
fn options() -> Options {
    let mut o = Options::default();
    o.bridge.partner.rate_per_second = 0.0;
    o.bridge.partner.call_deadline_ms = 1_000;
    o.bridge.partner.request_timeout_ms = 1_000;
    o.bridge.partner.circuit_open_ms = 200;
    o.bridge.retry_base_ms = 50;
    o.bridge.retry_max_ms = 500;
    o
}

/// An emulator with the sites `Harness::start` would make.
fn emulator(sites: &[&'static str]) -> Emulator {
    crate::support::emulator_for(&Options {
        sites: sites.to_vec(),
        ..Options::default()
    })
}

fn add_members(ids: &[String]) -> Value {
    let members: Vec<Value> = ids.iter().map(|i| json!({ "value": i })).collect();
    json!({"schemas": [PATCH_OP],
           "Operations": [{"op": "add", "path": "members", "value": members}]})
}

fn remove_members(ids: &[String]) -> Value {
    let ops: Vec<Value> = ids
        .iter()
        .map(|i| json!({"op": "remove", "path": format!("members[value eq \"{i}\"]")}))
        .collect();
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn email(i: usize) -> String {
    format!("user{i:02}@acme.example.com")
}

fn is_user_write(r: &CallRecord) -> bool {
    r.call.is_user_write()
}

/// User writes of `site` among `log`.
fn user_writes<'a>(log: &'a [CallRecord], site: &str) -> Vec<&'a CallRecord> {
    log.iter()
        .filter(|r| r.site == site && is_user_write(r))
        .collect()
}

/// Asserts that no two user writes of one (site, email) overlap in time.
pub(crate) fn assert_one_write_in_flight_per_user(log: &[CallRecord]) {
    let mut by_user: HashMap<(String, String), Vec<&CallRecord>> = HashMap::new();
    for r in log.iter().filter(|r| is_user_write(r)) {
        let email = r.email.clone().unwrap_or_default().to_lowercase();
        by_user.entry((r.site.clone(), email)).or_default().push(r);
    }
    for ((site, email), mut calls) in by_user {
        calls.sort_by_key(|r| r.started_us);
        for pair in calls.windows(2) {
            assert!(
                pair[1].started_us >= pair[0].finished_us,
                "overlapping writes of {email} at {site}: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

/// Polls `check` until it holds or `limit` passes; returns how long it took.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `n` users concurrently; ids in order.
async fn create_users(h: &Harness, n: usize) -> Vec<String> {
    join_all((0..n).map(|i| async move {
        let e = email(i);
        create_user(h, &e, "User", &format!("N{i}")).await
    }))
    .await
}

async fn create_groups(h: &Harness, n: usize) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = (0..n).map(|g| format!("Team {g:02}")).collect();
    let ids = join_all(names.iter().map(|n| create_group(h, n, &[]))).await;
    (ids, names)
}

// ---------------------------------------------------------------------------------------------
// 1. Race

const USERS: usize = 50;
const GROUPS: usize = 20;

/// The users phase 2 takes out of group `g` (g < GROUPS / 2) with its two PATCHes; they
/// overlap.
fn removed_from(g: usize) -> (Vec<usize>, Vec<usize>) {
    let a = (0..USERS).filter(|i| (i + g) % 3 == 0).collect();
    let b = (0..USERS).filter(|i| (i + 2 * g) % 4 == 0).collect();
    (a, b)
}

/// The race on one or two bridges sharing one store: `bridges[k % len]` serves request `k`.
async fn race(label: &str, bridges: &[&Harness]) {
    let h = bridges[0];
    let started = Instant::now();
    let users = create_users(h, USERS).await;
    let (groups, names) = create_groups(h, GROUPS).await;
    let pick = |k: usize| bridges[k % bridges.len()];

    // Phase 1: every group gets every user, 20 PATCHes at once.
    let before = h.emulator.call_log().len();
    let t = Instant::now();
    let answers = join_all(groups.iter().enumerate().map(|(k, g)| {
        let users = users.clone();
        async move {
            pick(k)
                .patch(&format!("/Groups/{g}"), add_members(&users))
                .await
        }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::NO_CONTENT, "{body}");
    }
    for b in bridges {
        b.settle(Duration::from_secs(20)).await;
    }
    let phase1 = t.elapsed();
    let all: BTreeSet<String> = names.iter().cloned().collect();
    for i in 0..USERS {
        let got: BTreeSet<String> = h.partner_groups("acme", &email(i)).into_iter().collect();
        assert_eq!(got, all, "phase 1: groups of {}", email(i));
    }
    let log = h.emulator.call_log();
    let writes1 = user_writes(&log[before..], "acme").len();

    // Phase 2: half the groups lose overlapping sets of users, two PATCHes per group.
    let before = log.len();
    let mut expected: Vec<BTreeSet<String>> = vec![all.clone(); USERS];
    let mut requests = Vec::new();
    for g in 0..GROUPS / 2 {
        let (a, b) = removed_from(g);
        for i in a.iter().chain(&b) {
            expected[*i].remove(&names[g]);
        }
        requests.push((groups[g].clone(), a));
        requests.push((groups[g].clone(), b));
    }
    let changed = expected.iter().filter(|e| **e != all).count();
    let t = Instant::now();
    let answers = join_all(requests.iter().enumerate().map(|(k, (g, rm))| {
        let ids: Vec<String> = rm.iter().map(|i| users[*i].clone()).collect();
        async move {
            pick(k)
                .patch(&format!("/Groups/{g}"), remove_members(&ids))
                .await
        }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::NO_CONTENT, "{body}");
    }
    for b in bridges {
        b.settle(Duration::from_secs(20)).await;
    }
    let phase2 = t.elapsed();
    for (i, want) in expected.iter().enumerate() {
        let got: BTreeSet<String> = h.partner_groups("acme", &email(i)).into_iter().collect();
        assert_eq!(&got, want, "phase 2: groups of {}", email(i));
    }
    // The store agrees with the partner.
    for (g, id) in groups.iter().enumerate() {
        let (status, body) = h.get(&format!("/Groups/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        let n = body["members"].as_array().map_or(0, Vec::len);
        let want = expected.iter().filter(|e| e.contains(&names[g])).count();
        assert_eq!(n, want, "members of {}", names[g]);
    }

    let log = h.emulator.call_log();
    let writes2 = user_writes(&log[before..], "acme").len();
    assert_one_write_in_flight_per_user(&log);
    eprintln!(
        "race ({label}, {} bridge(s)): phase 1 {writes1} partner writes (lower bound {USERS}, worst \
         {}) in {phase1:?}; phase 2 {writes2} writes (lower bound {changed}, worst {}) in \
         {phase2:?}; total {:?}",
        bridges.len(),
        USERS * GROUPS,
        requests.len() * USERS,
        started.elapsed()
    );
    assert!(writes1 >= USERS && writes2 >= changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_sqlite() {
    let h = Harness::start(options()).await;
    race("sqlite", &[&h]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let h = Harness::start(Options {
            store_url: Some(url),
            ..options()
        })
        .await;
        race("postgres", &[&h]).await;
    })
    .await;
}

/// Two replicas on one PostgreSQL schema and one emulator, requests spread across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_two_bridges_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let opts = Options {
            store_url: Some(url),
            ..options()
        };
        let h1 = Harness::start(opts.clone()).await;
        let running = h1.emulator.clone().spawn().await.unwrap();
        let h2 = Harness::start_with(opts, h1.emulator.clone(), running).await;
        race("postgres", &[&h1, &h2]).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Crash

/// Work left in the outbox by a bridge that dies abruptly is done by the next one on the same
/// store.
async fn crash(store_url: String) {
    let emu = emulator(&["acme"]);
    let _serving = emu.clone().spawn().await.unwrap();
    let mut opts = options();
    opts.store_url = Some(store_url);
    opts.bridge.wait_deadline_ms = 300;
    // A lease longer than a call's deadline, as it must be, and short enough for a test: rows
    // claimed by the dead bridge are free again when it ends.
    opts.bridge.lease_ms = 3_000;
    opts.bridge.partner.call_deadline_ms = 2_500;
    // The first bridge keeps retrying its calls, so its workers hold their rows when it dies.
    let mut first_opts = opts.clone();
    first_opts.bridge.partner.max_attempts = 10_000;
    first_opts.bridge.partner.circuit_failure_threshold = 0;

    // The first bridge runs on a runtime of its own; dropping that runtime ends every task of
    // the bridge (server, workers) wherever it is: no shutdown, no cleanup.
    let first = {
        let (emu, opts) = (emu.clone(), first_opts);
        let running = emu.clone().spawn().await.unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let ids = rt.block_on(async move {
                let h = Harness::start_with(opts, emu, running).await;
                let users = create_users(&h, 10).await;
                h.emulator.set_faults(
                    "acme",
                    Faults {
                        script: vec![ScriptedFault {
                            call: Some(kind_at(&h.emulator, "acme", CallKind::UpdateUser)),
                            count: 100_000,
                            action: FaultAction::Status {
                                status: 503,
                                retry_after_secs: None,
                            },
                        }],
                        ..Faults::default()
                    },
                );
                let refs: Vec<&str> = users.iter().map(String::as_str).collect();
                create_group(&h, "Crashers", &refs).await;
                let depth = h.bridge.store.outbox_stats().await.unwrap().depth;
                assert_eq!(depth, 10, "work is pending when the bridge dies");
                // The workers are in the middle of their calls: every row is claimed.
                let stolen = h
                    .bridge
                    .store
                    .claim_outbox(
                        "someone-else",
                        100,
                        Duration::from_millis(1),
                        scim_bridge::bridge::now_ms(),
                    )
                    .await
                    .unwrap();
                assert!(stolen.is_empty(), "unclaimed rows: {stolen:?}");
                std::mem::forget(h);
                users
            });
            rt.shutdown_background();
            ids
        })
    };
    let users = tokio::task::spawn_blocking(move || first.join().unwrap())
        .await
        .unwrap();
    assert!(
        h_groups_empty(&emu, 10),
        "the fault kept the partner unchanged"
    );

    emu.set_faults("acme", Faults::default());
    let running = emu.clone().spawn().await.unwrap();
    let t = Instant::now();
    let h = Harness::start_with(opts, emu.clone(), running).await;
    h.settle(Duration::from_secs(15)).await;
    let took = t.elapsed();
    for i in 0..users.len() {
        assert_eq!(h.partner_groups("acme", &email(i)), ["Crashers"]);
    }
    assert_one_write_in_flight_per_user(&h.emulator.call_log());
    let (status, body) = h.get(&format!("/Users/{}", users[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["groups"][0]["display"], "Crashers");
    eprintln!(
        "crash: the restarted bridge converged 10 users in {took:?} (rows the dead bridge \
         held wait out its 3 s lease)"
    );
}

fn h_groups_empty(emu: &Emulator, n: usize) -> bool {
    (0..n).all(|i| {
        partner_user_of(emu, "acme", &email(i))
            .is_some_and(|u| u.groups.iter().all(|g| g == all_users_group(emu, "acme")))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crash(format!("sqlite://{}/store.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_postgres() {
    crate::support::with_postgres_url(crash).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Several sites

fn failing() -> Faults {
    Faults {
        error_share: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_lands_on_every_site_and_a_failing_site_catches_up() {
    let mut opts = options();
    opts.sites = vec!["acme", "acme-eu"];
    opts.bridge.wait_deadline_ms = 1_500;
    let h = Harness::start(opts).await;

    // Healthy: both sites get everything.
    let jane = create_user(&h, &email(0), "Jane", "Doe").await;
    let eng = create_group(&h, "Engineering", &[&jane]).await;
    for site in ["acme", "acme-eu"] {
        assert_eq!(h.partner_groups(site, &email(0)), ["Engineering"], "{site}");
    }

    // acme-eu fails every call.
    h.emulator.set_faults("acme-eu", failing());
    let t = Instant::now();
    let john = create_user(&h, &email(1), "John", "Roe").await;
    eprintln!(
        "multi-site: user create with one site down answered in {:?}",
        t.elapsed()
    );
    assert!(h.partner_user("acme", &email(1)).is_some());
    assert!(h.partner_user("acme-eu", &email(1)).is_none());

    let t = Instant::now();
    let (status, body) = h
        .patch(
            &format!("/Groups/{eng}"),
            add_members(std::slice::from_ref(&john)),
        )
        .await;
    let answered = t.elapsed();
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        answered < Duration::from_millis(1_500 + 1_000),
        "the PATCH answered in {answered:?}"
    );
    assert_eq!(h.partner_groups("acme", &email(1)), ["Engineering"]);
    let (_, body) = h.get(&format!("/Groups/{eng}")).await;
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2));

    // Group writes need every site: 503 with Retry-After.
    let res = h
        .http
        .post(format!("{}/Groups", h.base))
        .bearer_auth(crate::support::TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "Sales"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let (_, list) = h.get("/Groups?filter=displayName%20eq%20%22Sales%22").await;
    assert_eq!(list["totalResults"], 0, "nothing stored: {list}");

    // A rename needs every site too; the site that did rename is put back, so partner and
    // store keep agreeing until the IdP retries.
    let rename = |to: &str| {
        json!({"schemas": [PATCH_OP],
               "Operations": [{"op": "replace", "path": "displayName", "value": to}]})
    };
    let (status, body) = h.patch(&format!("/Groups/{eng}"), rename("Eng")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let acme_groups: Vec<String> = partner_group_names(&h.emulator, "acme");
    assert!(
        acme_groups.contains(&"Engineering".to_owned()) && !acme_groups.contains(&"Eng".to_owned()),
        "{acme_groups:?}"
    );
    assert_eq!(h.partner_groups("acme", &email(1)), ["Engineering"]);
    let (_, body) = h.get(&format!("/Groups/{eng}")).await;
    assert_eq!(body["displayName"], "Engineering");
    // Membership work keeps working at the healthy site meanwhile.
    let (status, _) = h
        .patch(
            &format!("/Groups/{eng}"),
            remove_members(std::slice::from_ref(&jane)),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.partner_groups("acme", &email(0)).is_empty());
    let (status, _) = h
        .patch(
            &format!("/Groups/{eng}"),
            add_members(std::slice::from_ref(&jane)),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.partner_groups("acme", &email(0)), ["Engineering"]);

    // Recovery: the engine catches acme-eu up (its rows were retried with backoff all along).
    let outage = Instant::now();
    h.emulator.set_faults("acme-eu", Faults::default());
    let took = eventually(Duration::from_secs(10), "acme-eu converges", || {
        h.partner_groups("acme-eu", &email(1)) == ["Engineering"]
            && h.partner_groups("acme-eu", &email(0)) == ["Engineering"]
    })
    .await;
    eprintln!(
        "multi-site: acme-eu converged {took:?} after the fault cleared (outage {:?})",
        outage.duration_since(t)
    );
    assert!(
        took < Duration::from_secs(2),
        "acme-eu took {took:?} to catch up"
    );
    h.settle(Duration::from_secs(10)).await;

    // The IdP's retries succeed: the rename, and the group create (adopting "Sales" where
    // the first try made it).
    let (status, body) = h.patch(&format!("/Groups/{eng}"), rename("Eng")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for site in ["acme", "acme-eu"] {
        for i in 0..2 {
            assert_eq!(h.partner_groups(site, &email(i)), ["Eng"], "{site}");
        }
    }
    let sales = create_group(&h, "Sales", &[&jane, &john]).await;
    for site in ["acme", "acme-eu"] {
        let sales_groups = partner_group_names(&h.emulator, site)
            .into_iter()
            .filter(|g| g == "Sales")
            .count();
        assert_eq!(sales_groups, 1, "{site}");
        for i in 0..2 {
            assert_eq!(
                h.partner_groups(site, &email(i)),
                ["Eng", "Sales"],
                "{site}"
            );
        }
    }
    // A delete needs every site as well; the IdP's retry after recovery finishes it.
    h.emulator.set_faults("acme-eu", failing());
    let (status, _) = h.delete(&format!("/Groups/{sales}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = h.get(&format!("/Groups/{sales}")).await;
    assert_eq!(status, StatusCode::OK);
    h.emulator.set_faults("acme-eu", Faults::default());
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = h.delete(&format!("/Groups/{sales}")).await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < end, "the delete kept failing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for site in ["acme", "acme-eu"] {
        assert!(!partner_group_names(&h.emulator, site)
            .iter()
            .any(|g| g == "Sales"));
        for i in 0..2 {
            assert_eq!(h.partner_groups(site, &email(i)), ["Eng"], "{site}");
        }
    }
    assert_one_write_in_flight_per_user(&h.emulator.call_log());
}

// ---------------------------------------------------------------------------------------------
// 4. Dry run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_keeps_scim_state_and_leaves_the_partner_alone() {
    let h = Harness::start(Options {
        dry_run: true,
        ..options()
    })
    .await;
    let before_users = partner_users_of(&h.emulator, "acme");
    let before_groups = partner_group_names(&h.emulator, "acme");
    let jane = create_user(&h, &email(0), "Jane", "Doe").await;
    let john = create_user(&h, &email(1), "John", "Roe").await;
    let t = Instant::now();
    let g = create_group(&h, "Finance", &[&jane]).await;
    let (status, _) = h
        .patch(
            &format!("/Groups/{g}"),
            add_members(std::slice::from_ref(&john)),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .patch(
            &format!("/Groups/{g}"),
            remove_members(std::slice::from_ref(&jane)),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(Duration::from_secs(5)).await;
    eprintln!("dry run: group writes settled in {:?}", t.elapsed());

    let (status, body) = h.get(&format!("/Users/{john}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["groups"][0]["display"], "Finance");
    let (_, body) = h.get(&format!("/Groups/{g}")).await;
    assert_eq!(body["members"][0]["value"], john.as_str());

    assert_eq!(partner_users_of(&h.emulator, "acme"), before_users);
    assert_eq!(partner_group_names(&h.emulator, "acme"), before_groups);
    let log = h.emulator.call_log();
    let writes: Vec<&CallRecord> = log.iter().filter(|r| r.call.is_write()).collect();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|r| r.test_mode), "{writes:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Adoption, 6. unmanaged groups

fn seed_vendor_user(h: &Harness, email: &str) {
    seed_group(&h.emulator, "acme", "VendorUI");
    seed_user(
        &h.emulator,
        "acme",
        PartnerUser {
            email: email.into(),
            first_name: "Old".into(),
            last_name: "Name".into(),
            groups: vec!["All Users".into(), "VendorUI".into()],
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_partner_user_and_group_are_adopted() {
    let h = Harness::start(options()).await;
    let e = "Jane.Doe@acme.example.com";
    seed_vendor_user(&h, &e.to_lowercase());
    seed_group(&h.emulator, "acme", "Finance");

    let jane = create_user(&h, e, "Jane", "Doe").await;
    h.settle(Duration::from_secs(5)).await;
    let same: Vec<PartnerUser> = partner_users_of(&h.emulator, "acme")
        .into_iter()
        .filter(|u| u.email.eq_ignore_ascii_case(e))
        .collect();
    assert_eq!(same.len(), 1, "{same:?}");
    assert_eq!(
        (same[0].first_name.as_str(), same[0].last_name.as_str()),
        ("Jane", "Doe")
    );
    assert_eq!(h.partner_groups("acme", e), ["VendorUI"]);

    let g = create_group(&h, "Finance", &[&jane]).await;
    let finance: Vec<String> = partner_group_names(&h.emulator, "acme")
        .into_iter()
        .filter(|g| g.eq_ignore_ascii_case("Finance"))
        .collect();
    assert_eq!(finance.len(), 1, "{finance:?}");
    assert_eq!(h.partner_groups("acme", e), ["Finance", "VendorUI"]);
    let (status, body) = h.get(&format!("/Groups/{g}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["members"][0]["value"], jane.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_groups_survive_membership_changes() {
    let h = Harness::start(options()).await;
    let jane = create_user(&h, &email(0), "Jane", "Doe").await;
    let john = create_user(&h, &email(1), "John", "Roe").await;
    // Assigned in the vendor's UI after the bridge made the users.
    assert!(seed_group(&h.emulator, "acme", "VendorUI"));
    for i in 0..2 {
        let mut u = h.partner_user("acme", &email(i)).unwrap();
        u.groups.push("VendorUI".into());
        assert!(seed_user(&h.emulator, "acme", u));
    }
    let a = create_group(&h, "Alpha", &[&jane, &john]).await;
    let b = create_group(&h, "Beta", &[&jane]).await;
    assert_eq!(
        h.partner_groups("acme", &email(0)),
        ["Alpha", "Beta", "VendorUI"]
    );
    assert_eq!(h.partner_groups("acme", &email(1)), ["Alpha", "VendorUI"]);

    for (g, who) in [(&a, &jane), (&b, &jane), (&a, &john)] {
        let (status, _) = h
            .patch(
                &format!("/Groups/{g}"),
                remove_members(std::slice::from_ref(who)),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // PUT with no members, then DELETE of a group: neither touches VendorUI.
    let (status, _) = h
        .put(
            &format!("/Groups/{b}"),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "Beta", "members": [{"value": john}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.partner_groups("acme", &email(1)), ["Beta", "VendorUI"]);
    let (status, _) = h.delete(&format!("/Groups/{b}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(Duration::from_secs(5)).await;
    for i in 0..2 {
        let u = h.partner_user("acme", &email(i)).unwrap();
        let mut groups = u.groups.clone();
        groups.sort();
        let everyone = all_users_group(&h.emulator, "acme");
        assert_eq!(groups, [everyone, "VendorUI"], "{}", email(i));
    }
}

/// `shutdown` right after start, before any worker has run once, still stops them (the stop
/// flag used to be lost while no worker had subscribed to it, and shutdown waited forever).
#[tokio::test]
async fn engine_stops_when_shut_down_before_its_workers_ran() {
    let h = Harness::start(Options::default()).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), h.bridge.engine.shutdown()).await;
    assert!(stopped.is_ok(), "the workers did not stop");
}

// ---------------------------------------------------------------------------------------------
// Pacing: a write that stands alone is at the partner when it is answered, without waiting out
// the coalescing quiet time; a burst of concurrent writes answers at once and coalesces.

/// With a quiet time far longer than the wait deadline, a lone PATCH could only be at the
/// partner by its answer if its marks skip the quiet time (they did not, once: a lone change
/// waited 200 ms for company that never came).
#[tokio::test]
async fn a_lone_membership_write_skips_the_quiet_time() {
    let mut o = options();
    o.bridge.coalesce_ms = 10_000;
    o.bridge.coalesce_max_ms = 60_000;
    o.bridge.wait_deadline_ms = 3_000;
    let h = Harness::start(o).await;
    let users = create_users(&h, 3).await;
    let (groups, names) = create_groups(&h, 1).await;
    let (status, body) = h
        .patch(&format!("/Groups/{}", groups[0]), add_members(&users))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for i in 0..3 {
        assert_eq!(h.partner_groups("acme", &email(i)), [names[0].clone()]);
    }
    let (status, body) = h
        .patch(
            &format!("/Groups/{}", groups[0]),
            remove_members(&users[..1]),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(h.partner_groups("acme", &email(0)).is_empty());
    // A deactivation is a lone change too: access is gone by the answer.
    let (status, body) = h
        .patch(
            &format!("/Users/{}", users[1]),
            json!({"schemas": [PATCH_OP],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.partner_user("acme", &email(1)).is_none());
}

/// Four IdP connections each send eleven PATCHes that move every user between groups, one after
/// another: the burst outlasts the quiet time many times over. Its PATCHes answer once their
/// marks are stored, and each user is written about once when the burst pauses, not once per
/// PATCH (as when every PATCH waited for its writes: several writes per user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_membership_writes_coalesces_into_one_write_per_user() {
    let mut o = options();
    o.bridge.coalesce_max_ms = 60_000;
    let h = Harness::start(o).await;
    let users = create_users(&h, 20).await;
    let (groups, names) = create_groups(&h, 4).await;
    h.settle(Duration::from_secs(10)).await;
    let before = h.emulator.call_log().len();
    let burst = join_all((0..4).map(|c| {
        let (h, users, groups) = (&h, &users, &groups);
        async move {
            for k in 0..11 {
                let g = &groups[(c + k) % groups.len()];
                let body = if k % 2 == 0 {
                    add_members(users)
                } else {
                    // Entra's form; members that are not in the group are ignored.
                    let members: Vec<Value> = users.iter().map(|i| json!({ "value": i })).collect();
                    json!({"schemas": [PATCH_OP],
                           "Operations": [{"op": "remove", "path": "members", "value": members}]})
                };
                let (status, body) = h.patch(&format!("/Groups/{g}"), body).await;
                assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
            }
        }
    }));
    burst.await;
    h.settle(Duration::from_secs(20)).await;
    let mut expected = BTreeSet::new();
    for (g, id) in groups.iter().enumerate() {
        let (_, body) = h.get(&format!("/Groups/{id}")).await;
        if body["members"].as_array().is_some_and(|m| !m.is_empty()) {
            expected.insert(names[g].clone());
        }
    }
    for i in 0..users.len() {
        let got: BTreeSet<String> = h.partner_groups("acme", &email(i)).into_iter().collect();
        assert_eq!(got, expected, "groups of {}", email(i));
    }
    let log = h.emulator.call_log();
    let writes = user_writes(&log[before..], "acme").len();
    assert_one_write_in_flight_per_user(&log);
    eprintln!("burst of 44 PATCHes over 20 users: {writes} partner writes");
    assert!(
        writes <= 2 * users.len(),
        "{writes} partner writes for {} users: the burst did not coalesce",
        users.len()
    );
}

/// A partner that asks for a long pause (429 with `Retry-After: 10`) makes an IdP's write
/// answer 503 with `Retry-After` at once instead of holding the connection through the pause
/// (`bridge.request_partner_wait_ms`); nothing is half-done, and the IdP's retry succeeds.
#[tokio::test]
async fn a_saturated_partner_answers_the_idp_503_with_retry_after_at_once() {
    let mut o = options();
    o.bridge.partner.call_deadline_ms = 30_000;
    o.bridge.partner.request_timeout_ms = 5_000;
    let h = Harness::start(o).await;
    h.emulator.set_faults(
        "acme",
        Faults {
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::CreateUser)),
                count: 1,
                action: FaultAction::Status {
                    status: 429,
                    retry_after_secs: Some(10),
                },
            }],
            ..Faults::default()
        },
    );
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                      "userName": email(1), "emails": [{"value": email(1), "primary": true}]});
    let started = Instant::now();
    let res = h
        .http
        .post(format!("{}/Users", h.base))
        .bearer_auth(crate::support::TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert!(
        waited < Duration::from_secs(8),
        "the request waited {waited:?}"
    );
    // While the partner's pause runs, a lookup that misses answers from the store without
    // spending the partner's capacity on its optional import read.
    let reads_before = count_job(&h.emulator, "acme", CallKind::GetUser, false);
    let (status, list) = h
        .get(&format!("/Users?filter=userName eq \"{}\"", email(1)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalResults"], 0, "{list}");
    assert_eq!(
        count_job(&h.emulator, "acme", CallKind::GetUser, false),
        reads_before,
        "the lookup read the partner during its pause"
    );
    // The IdP's retry of the write is not an optional call: it goes to the partner.
    let (status, created) = h.post("/Users", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        partner_users_of(&h.emulator, "acme")
            .iter()
            .filter(|u| u.email == email(1))
            .count(),
        1
    );
}

/// A PATCH that names its members (Entra's `remove` with a value list, Okta's
/// `members[value eq ...]`, adds of present and new members) is applied to the named members
/// alone: the rest of a larger group stays, the answer shows the whole group when asked, and
/// the partner gets exactly the named changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_naming_members_changes_only_them() {
    let h = Harness::start(options()).await;
    let users = create_users(&h, 40).await;
    let (groups, names) = create_groups(&h, 1).await;
    let group = format!("/Groups/{}", groups[0]);
    let (status, body) = h.patch(&group, add_members(&users[..30])).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = h
        .patch(
            &format!("{group}?attributes=members"),
            json!({"schemas": [PATCH_OP], "Operations": [
                // Entra: one member and one that is not a member.
                {"op": "Remove", "path": "members",
                 "value": [{"value": users[3]}, {"value": users[35]}]},
                // Okta: one member by filter.
                {"op": "remove", "path": format!("members[value eq \"{}\"]", users[4])},
                // One already present, one new.
                {"op": "add", "path": "members",
                 "value": [{"value": users[5]}, {"value": users[36]}]},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut want: BTreeSet<String> = users[..30].iter().cloned().collect();
    want.remove(&users[3]);
    want.remove(&users[4]);
    want.insert(users[36].clone());
    let shown: BTreeSet<String> = body["members"]
        .as_array()
        .expect("members in the answer")
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, want);
    let (_, got) = h.get(&group).await;
    let stored: BTreeSet<String> = got["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, want);
    h.settle(Duration::from_secs(10)).await;
    for (i, id) in users.iter().enumerate() {
        let expected: Vec<String> = if want.contains(id) {
            vec![names[0].clone()]
        } else {
            Vec::new()
        };
        assert_eq!(h.partner_groups("acme", &email(i)), expected, "user {i}");
    }
    // Removing a member the Okta way when it is not one changes nothing.
    let (_, before) = h.get(&group).await;
    let (status, _) = h.patch(&group, remove_members(&users[35..36])).await;
    let (_, after) = h.get(&group).await;
    assert_eq!(
        before["meta"]["version"], after["meta"]["version"],
        "{status}"
    );
}

/// Replicas on one database may be configured differently for a while (a rolling change that
/// adds a tenant or a site). An engine never claims a row of a tenant it does not serve, and a
/// row of a site it does not know stays in the outbox (with a note) instead of being completed:
/// either way a replica that serves it still does the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_leaves_rows_it_does_not_serve_to_a_replica_that_does() {
    let h = Harness::start(options()).await;
    let store = h.bridge.store.clone();
    let users = create_users(&h, 1).await;
    store
        .mark_outbox("elsewhere", &["site-1".to_owned()], &["u-1".to_owned()])
        .await
        .unwrap();
    store
        .mark_outbox("acme", &["added-later".to_owned()], &users)
        .await
        .unwrap();
    // The engine's workers poll every 20 ms here: give them many rounds.
    let mut stats = store.outbox_stats().await.unwrap();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = store.outbox_stats().await.unwrap();
        if parked(&store).await == 1 {
            break;
        }
    }
    assert_eq!(stats.depth, 2, "{stats:?}");
    assert_eq!(
        parked(&store).await,
        1,
        "the unknown site's row is kept, parked: {stats:?}"
    );
    assert_eq!(stats.failing, 0, "a parked row is not failing: {stats:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.depth, stats.failing), (2, 0), "{stats:?}");
    assert_eq!(parked(&store).await, 1);
}

/// Outbox rows parked because no process that claimed them serves their site.
async fn parked(store: &scim_bridge::store::Store) -> u64 {
    store
        .outbox_by_site(None)
        .await
        .unwrap()
        .iter()
        .map(|s| s.parked)
        .sum()
}

/// Group members carry `display` as Okta and Entra show it: the user's displayName, or its
/// userName when it has none; a `display` the IdP sends is accepted and not kept. Renaming
/// a user changes how it shows in every group; `excludedAttributes=members` shows none.
async fn members_show_the_users_display_name_or_user_name(h: &Harness) {
    let (status, body) = h
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "jane@acme.example.com",
                "displayName": "Jane Doe",
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"value": "jane@acme.example.com", "primary": true}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jane = body["id"].as_str().unwrap().to_owned();
    // No displayName: shown by its userName.
    let john = create_user(h, "john@acme.example.com", "John", "Roe").await;
    let (status, group) = h
        .post(
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Shown",
                "members": [
                    {"value": jane, "display": "Sent By The IdP"},
                    {"value": john, "display": "Also Sent"},
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    let shown = |body: &Value| -> HashMap<String, String> {
        body["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members: {body}"))
            .iter()
            .map(|m| {
                (
                    m["value"].as_str().unwrap().to_owned(),
                    m["display"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let want = HashMap::from([
        (jane.clone(), "Jane Doe".to_owned()),
        (john.clone(), "john@acme.example.com".to_owned()),
    ]);
    assert_eq!(shown(&group), want, "the POST's answer: {group}");
    let (status, got) = h.get(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(shown(&got), want, "{got}");
    let (_, list) = h.get("/Groups?filter=displayName%20eq%20%22Shown%22").await;
    assert_eq!(shown(&list["Resources"][0]), want, "{list}");
    // A PATCH adding a member with a display of the IdP's: the stored name wins.
    let (status, _) = h
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": john, "display": "Johnny"}]}]}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    // The user's displayName changes: the group shows the new one.
    let (status, body) = h
        .patch(
            &format!("/Users/{jane}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "Jane Q. Doe"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, got) = h.get(&format!("/Groups/{gid}")).await;
    assert_eq!(
        shown(&got),
        HashMap::from([
            (jane.clone(), "Jane Q. Doe".to_owned()),
            (john.clone(), "john@acme.example.com".to_owned()),
        ]),
        "{got}"
    );
    let (_, got) = h
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(got.get("members").is_none(), "{got}");
}

#[tokio::test]
async fn group_members_show_the_users_display_name_or_user_name() {
    members_show_the_users_display_name_or_user_name(&Harness::start(Options::default()).await)
        .await;
}

#[tokio::test]
async fn group_members_show_the_users_display_name_or_user_name_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let h = Harness::start(Options {
            store_url: Some(url),
            ..Options::default()
        })
        .await;
        members_show_the_users_display_name_or_user_name(&h).await;
    })
    .await;
}
