//! The partner client against the partner emulator over real HTTP on loopback: every call of the
//! contract, every wire shape, every fault kind (retries, `Retry-After`, timeouts, dropped
//! connections, permanent failures, auth), the circuit, the local limits, header validation,
//! and that the API key never reaches a log line or an error.
//!
//! Retry waits go through a recording sleeper, so no test sleeps for backoff; only the circuit
//! test waits (real time, 150 ms) for the circuit to half-open.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::emulator::{Emulator, RunningEmulator, SiteSpec, Switches, WireShape};
use scim_bridge::partner::{
    Access, CallEvent, CallKind, CallObserver, CallOutcome, ClientOptions, GroupUpdate, NewGroup,
    NewUser, PartnerClient, PartnerError, PartnerErrorKind, SiteConnection, Sleeper, UserUpdate,
    ALL_USERS_GROUP,
};
use scim_bridge::secret::Secret;

const SITE: &str = "acme";
const KEY: &str = "pk-7f3a9c1e-SECRET-d2b4e8";
const OWNER: &str = "owner@acme.example.com";

async fn start() -> RunningEmulator {
    Emulator::new(vec![SiteSpec::parse(&format!("{SITE}:{KEY}")).unwrap()])
        .spawn()
        .await
        .unwrap()
}

/// Waits are recorded, not slept.
#[derive(Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl RecordingSleeper {
    fn waits(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(
        &self,
        d: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        self.0.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

/// Attempts as the observer saw them: (attempt, status, outcome).
#[derive(Default)]
struct RecordingObserver(Mutex<Vec<(u32, Option<u16>, CallOutcome)>>);

impl CallObserver for RecordingObserver {
    fn observe(&self, e: &CallEvent<'_>) {
        assert_eq!(e.site, SITE);
        self.0
            .lock()
            .unwrap()
            .push((e.attempt, e.status, e.outcome));
    }

    fn credentials(&self, _site: &str, _accepted: bool) {}

    fn circuit(&self, _site: &str, _open: bool) {}
}

/// Fast options: short backoff, no local rate limit, a 2 s attempt timeout.
fn options() -> ClientOptions {
    ClientOptions {
        request_timeout_ms: 2_000,
        call_deadline_ms: 30_000,
        backoff_base_ms: 50,
        backoff_max_ms: 400,
        rate_per_second: 0.0,
        ..ClientOptions::default()
    }
}

struct Fixture {
    emu: RunningEmulator,
    client: PartnerClient,
    sleeper: Arc<RecordingSleeper>,
    observer: Arc<RecordingObserver>,
}

impl Fixture {
    fn emulator(&self) -> &Emulator {
        &self.emu.emulator
    }
    fn count(&self, call: CallKind, test_mode: bool) -> u64 {
        self.emulator().count(SITE, call, test_mode)
    }
    fn script(&self, call: CallKind, count: u32, action: FaultAction) {
        self.faults(Faults {
            script: vec![ScriptedFault {
                call: Some(call),
                count,
                action,
            }],
            ..Faults::default()
        });
    }
    fn faults(&self, faults: Faults) {
        assert!(self.emulator().set_faults(SITE, faults));
    }
}

fn client_for(emu: &RunningEmulator, key: &str, options: ClientOptions) -> PartnerClient {
    PartnerClient::new(
        SiteConnection {
            base_url: emu.base_url.parse().unwrap(),
            site_name: SITE.into(),
            api_key: Secret::new(key),
        },
        options,
    )
    .unwrap()
}

async fn fixture(options: ClientOptions) -> Fixture {
    let emu = start().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let observer = Arc::new(RecordingObserver::default());
    let client = client_for(&emu, KEY, options)
        .with_sleeper(sleeper.clone())
        .with_observer(observer.clone());
    Fixture {
        emu,
        client,
        sleeper,
        observer,
    }
}

fn status(code: u16, retry_after_secs: Option<u64>) -> FaultAction {
    FaultAction::Status {
        status: code,
        retry_after_secs,
    }
}

fn new_user(email: &str, groups: &[&str]) -> NewUser {
    NewUser {
        email: email.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        invited_by_email: OWNER.into(),
    }
}

fn assert_no_key(e: &PartnerError) {
    assert!(!e.to_string().contains(KEY), "{e}");
    assert!(!format!("{e:?}").contains(KEY), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// The contract

#[tokio::test]
async fn every_user_call_round_trips_and_test_mode_changes_nothing() {
    let f = fixture(options()).await;
    let c = &f.client;
    assert_eq!(c.site_name(), SITE);

    let users = c.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, OWNER);

    // Dry run: validated, answered, nothing created.
    let dry = c
        .create_user(&new_user("ada@x.com", &["Administrators"]), true)
        .await
        .unwrap();
    assert_eq!(dry.email, "ada@x.com");
    assert!(c.get_user("ada@x.com").await.unwrap().is_none());

    let ada = c
        .create_user(&new_user("ada@x.com", &["Administrators"]), false)
        .await
        .unwrap();
    assert!(ada.groups.iter().any(|g| g == "Administrators"));
    assert!(ada.groups.iter().any(|g| g == ALL_USERS_GROUP));
    let got = c.get_user("ADA@x.com").await.unwrap().unwrap();
    assert_eq!(got, ada);

    let rename = UserUpdate {
        first_name: Some("Augusta".into()),
        ..UserUpdate::default()
    };
    let dry = c.update_user("ada@x.com", &rename, true).await.unwrap();
    assert_eq!(dry.first_name, "Augusta");
    assert_eq!(
        f.emulator().user(SITE, "ada@x.com").unwrap().first_name,
        "Ada"
    );
    let updated = c.update_user("ada@x.com", &rename, false).await.unwrap();
    assert_eq!(updated.first_name, "Augusta");
    assert_eq!(updated.last_name, "Lovelace");

    // groups replaces the set (All Users kept); email moves the user.
    let regroup = UserUpdate {
        email: Some("augusta@x.com".into()),
        groups: Some(vec![]),
        ..UserUpdate::default()
    };
    let moved = c.update_user("ada@x.com", &regroup, false).await.unwrap();
    assert_eq!(moved.email, "augusta@x.com");
    assert_eq!(moved.groups, vec![ALL_USERS_GROUP.to_owned()]);

    c.delete_user("augusta@x.com", true).await.unwrap();
    assert!(f.emulator().user(SITE, "augusta@x.com").is_some());
    c.delete_user("augusta@x.com", false).await.unwrap();
    assert!(c.get_user("augusta@x.com").await.unwrap().is_none());

    let e = c.delete_user("augusta@x.com", false).await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::NotFound, Some(404), 1)
    );

    for (call, dry, real) in [
        (CallKind::ListUsers, 0, 1),
        (CallKind::GetUser, 0, 3),
        (CallKind::CreateUser, 1, 1),
        (CallKind::UpdateUser, 1, 2),
        (CallKind::DeleteUser, 1, 2),
    ] {
        assert_eq!(f.count(call, true), dry, "{call} test_mode=true");
        assert_eq!(f.count(call, false), real, "{call} test_mode=false");
    }
    assert!(f.sleeper.waits().is_empty());
}

#[tokio::test]
async fn every_group_call_round_trips_with_awkward_names() {
    let f = fixture(options()).await;
    let c = &f.client;
    let names: Vec<_> = c
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert!(
        names.contains(&"Administrators".to_owned()) && names.contains(&"All Users".to_owned())
    );
    assert_eq!(
        c.get_group("All Users").await.unwrap().map(|g| g.access),
        Some(Access::Sql)
    );

    let awkward = "Data / Science 100% — Ünïcødé?#";
    let new = NewGroup {
        name: awkward.into(),
        access: Access::Discovery,
        created_by_email: Some(OWNER.into()),
    };
    let dry = c.create_group(&new, true).await.unwrap();
    assert_eq!(dry.name, awkward);
    assert!(c.get_group(awkward).await.unwrap().is_none());
    let g = c.create_group(&new, false).await.unwrap();
    assert_eq!((g.name.as_str(), g.access), (awkward, Access::Discovery));
    assert_eq!(c.get_group(awkward).await.unwrap(), Some(g));

    let e = c.create_group(&new, false).await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Conflict, Some(409), 1)
    );

    let update = GroupUpdate {
        name: Some("Readers/2".into()),
        access: Some(Access::View),
    };
    let dry = c.update_group(awkward, &update, true).await.unwrap();
    assert_eq!((dry.name.as_str(), dry.access), ("Readers/2", Access::View));
    assert!(c.get_group(awkward).await.unwrap().is_some());
    let renamed = c.update_group(awkward, &update, false).await.unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.access),
        ("Readers/2", Access::View)
    );
    assert!(c.get_group(awkward).await.unwrap().is_none());

    c.delete_group("readers/2", true).await.unwrap();
    assert!(c.get_group("Readers/2").await.unwrap().is_some());
    c.delete_group("readers/2", false).await.unwrap();
    assert!(c.get_group("Readers/2").await.unwrap().is_none());

    // Built-in groups are forbidden (403): classified auth, not retried.
    let e = c.delete_group("Administrators", false).await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Auth, Some(403), 1)
    );

    for (call, dry, real) in [
        (CallKind::ListGroups, 0, 1),
        (CallKind::GetGroup, 0, 7),
        (CallKind::CreateGroup, 1, 2),
        (CallKind::UpdateGroup, 1, 1),
        (CallKind::DeleteGroup, 1, 2),
    ] {
        assert_eq!(f.count(call, true), dry, "{call} test_mode=true");
        assert_eq!(f.count(call, false), real, "{call} test_mode=false");
    }
    let log = f.emulator().call_log();
    assert!(
        log.iter().any(|r| r.group.as_deref() == Some(awkward)),
        "{log:?}"
    );
}

#[tokio::test]
async fn every_wire_shape_reads_the_same() {
    let f = fixture(options()).await;
    let c = &f.client;
    let mut seen = Vec::new();
    for (i, shape) in [WireShape::Standard, WireShape::Bare, WireShape::Wrapped]
        .into_iter()
        .enumerate()
    {
        assert!(f.emulator().set_switches(
            SITE,
            Switches {
                wire_shape: shape,
                ..Switches::default()
            }
        ));
        let email = format!("u{i}@x.com");
        let created = c
            .create_user(&new_user(&email, &["Administrators"]), false)
            .await
            .unwrap();
        assert!(
            created.groups.contains(&"Administrators".to_owned()),
            "{shape:?}"
        );
        assert_eq!(
            c.get_user(&email).await.unwrap().as_ref(),
            Some(&created),
            "{shape:?}"
        );
        let upd = UserUpdate {
            last_name: Some(format!("L{i}")),
            ..UserUpdate::default()
        };
        assert_eq!(
            c.update_user(&email, &upd, false).await.unwrap().last_name,
            format!("L{i}")
        );
        let group = NewGroup {
            name: format!("G{i}"),
            access: Access::View,
            created_by_email: None,
        };
        assert_eq!(
            c.create_group(&group, false).await.unwrap().name,
            format!("G{i}")
        );
        assert_eq!(
            c.get_group(&format!("g{i}")).await.unwrap().unwrap().access,
            Access::View
        );
        let upd = GroupUpdate {
            access: Some(Access::Sql),
            ..GroupUpdate::default()
        };
        assert_eq!(
            c.update_group(&format!("G{i}"), &upd, false)
                .await
                .unwrap()
                .access,
            Access::Sql
        );
        let mut users = c.list_users().await.unwrap();
        users.sort_by(|a, b| a.email.cmp(&b.email));
        let mut groups = c.list_groups().await.unwrap();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        c.delete_user(&email, false).await.unwrap();
        c.delete_group(&format!("G{i}"), false).await.unwrap();
        seen.push((users.len(), groups.len()));
    }
    assert_eq!(seen, vec![(2, 3), (2, 3), (2, 3)]);
}

#[tokio::test]
async fn client_errors_are_classified_and_not_retried() {
    let f = fixture(options()).await;
    let c = &f.client;
    c.create_user(&new_user("ada@x.com", &[]), false)
        .await
        .unwrap();
    let e = c
        .create_user(&new_user("ADA@x.com", &[]), false)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Conflict, Some(409), 1)
    );
    let e = c
        .create_user(&new_user("bob@x.com", &["No Such Group"]), false)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Invalid, Some(400), 1)
    );
    assert!(!e.message.is_empty());
    let e = c
        .update_user("nobody@x.com", &UserUpdate::default(), false)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (PartnerErrorKind::NotFound, Some(404)));
    // A scripted 422 is not retried either.
    f.script(CallKind::ListUsers, 5, status(422, None));
    let e = c.list_users().await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (PartnerErrorKind::Invalid, 1));
    assert_eq!(f.count(CallKind::CreateUser, false), 3);
    assert_eq!(f.count(CallKind::ListUsers, false), 1);
    assert!(f.sleeper.waits().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn a_429_with_retry_after_is_waited_for_then_retried() {
    let f = fixture(options()).await;
    f.script(CallKind::ListUsers, 1, status(429, Some(2)));
    let users = f.client.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(f.count(CallKind::ListUsers, false), 2);
    let waits = f.sleeper.waits();
    println!("429 Retry-After 2: attempts=2 waits={waits:?}");
    assert_eq!(waits.len(), 1);
    assert!(waits[0] >= Duration::from_secs(2), "{waits:?}");
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_is_not_slept_but_reported() {
    let f = fixture(ClientOptions {
        call_deadline_ms: 5_000,
        ..options()
    })
    .await;
    f.script(CallKind::ListGroups, 1, status(503, Some(60)));
    let e = f.client.list_groups().await.unwrap_err();
    println!(
        "503 Retry-After 60 under a 5 s deadline: {e}; waits={:?}",
        f.sleeper.waits()
    );
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Transient, Some(503), 1)
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(60)));
    assert!(f.sleeper.waits().is_empty());
}

#[tokio::test]
async fn a_burst_of_503s_is_retried_to_success() {
    let f = fixture(options()).await;
    f.script(CallKind::ListUsers, 3, status(503, None));
    let users = f.client.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(f.count(CallKind::ListUsers, false), 4);
    let waits = f.sleeper.waits();
    println!("3 x 503: attempts=4 waits={waits:?}");
    assert_eq!(waits.len(), 3);
    for (n, w) in waits.iter().enumerate() {
        // Full jitter: within min(max, base * 2^n).
        let cap = Duration::from_millis((50u64 << n).min(400));
        assert!(*w <= cap, "wait {n} = {w:?} > {cap:?}");
    }
    let events = f.observer.0.lock().unwrap().clone();
    let transient = CallOutcome::Failed(PartnerErrorKind::Transient);
    assert_eq!(
        events,
        vec![
            (1, Some(503), transient),
            (2, Some(503), transient),
            (3, Some(503), transient),
            (4, Some(200), CallOutcome::Success),
        ]
    );
}

#[tokio::test]
async fn writes_are_retried_too() {
    let f = fixture(options()).await;
    f.script(CallKind::CreateUser, 2, status(502, None));
    let u = f
        .client
        .create_user(&new_user("ada@x.com", &[]), false)
        .await
        .unwrap();
    assert_eq!(u.email, "ada@x.com");
    assert_eq!(f.count(CallKind::CreateUser, false), 3);
    assert_eq!(f.sleeper.waits().len(), 2);
}

#[tokio::test]
async fn a_hanging_request_times_out_and_is_retried() {
    let f = fixture(ClientOptions {
        request_timeout_ms: 300,
        ..options()
    })
    .await;
    f.faults(Faults {
        hang_for_ms: Some(10_000),
        script: vec![ScriptedFault {
            call: Some(CallKind::GetGroup),
            count: 1,
            action: FaultAction::Hang,
        }],
        ..Faults::default()
    });
    let t = Instant::now();
    let g = f.client.get_group("Administrators").await.unwrap();
    let elapsed = t.elapsed();
    println!(
        "hang: elapsed={elapsed:?} waits={:?} events={:?}",
        f.sleeper.waits(),
        f.observer.0.lock().unwrap()
    );
    assert!(g.is_some());
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(f.sleeper.waits().len(), 1);
    let events = f.observer.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        (1, None, CallOutcome::Failed(PartnerErrorKind::Transient))
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let f = fixture(options()).await;
    f.script(CallKind::ListGroups, 2, FaultAction::Drop);
    let groups = f.client.list_groups().await.unwrap();
    assert_eq!(groups.len(), 2);
    let events = f.observer.0.lock().unwrap().clone();
    println!("2 x drop: events={events:?} waits={:?}", f.sleeper.waits());
    assert_eq!(events.len(), 3);
    assert!(events[..2]
        .iter()
        .all(|e| e.2 == CallOutcome::Failed(PartnerErrorKind::Transient)));
    assert_eq!(f.sleeper.waits().len(), 2);
}

#[tokio::test]
async fn a_permanent_failure_reaches_the_caller_as_transient_after_max_attempts() {
    let f = fixture(options()).await;
    f.script(CallKind::ListUsers, 100, status(500, None));
    let e = f.client.list_users().await.unwrap_err();
    println!("100 x 500: {e}; waits={:?}", f.sleeper.waits());
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Transient, Some(500), 6)
    );
    assert!(e.is_retryable());
    assert_eq!(f.count(CallKind::ListUsers, false), 6);
    assert_eq!(f.sleeper.waits().len(), 5);
    assert_no_key(&e);
}

#[tokio::test]
async fn a_wrong_key_is_auth_after_one_call() {
    let emu = start().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let c = client_for(&emu, "wrong-key", options()).with_sleeper(sleeper.clone());
    let e = c.list_users().await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Auth, Some(401), 1)
    );
    assert!(!e.is_retryable());
    assert_eq!(emu.emulator.call_log().len(), 1);
    assert!(sleeper.waits().is_empty());
}

#[tokio::test]
async fn the_circuit_opens_rejects_fast_and_half_opens_for_one_probe() {
    let f = fixture(ClientOptions {
        max_attempts: 2,
        circuit_failure_threshold: 2,
        circuit_open_ms: 150,
        ..options()
    })
    .await;
    f.script(CallKind::ListUsers, 100, status(500, None));
    for _ in 0..2 {
        let e = f.client.list_users().await.unwrap_err();
        assert_eq!((e.kind, e.attempts), (PartnerErrorKind::Transient, 2));
    }
    assert!(f.client.circuit_open());
    let e = f.client.list_users().await.unwrap_err();
    assert_eq!(
        (e.kind, e.attempts, e.status),
        (PartnerErrorKind::Unavailable, 0, None)
    );
    assert!(e
        .retry_after
        .is_some_and(|d| d <= Duration::from_millis(150)));
    assert_eq!(f.count(CallKind::ListUsers, false), 4);

    // Half-open while the site still fails: one probe, a single attempt, then open again.
    tokio::time::sleep(Duration::from_millis(170)).await;
    let e = f.client.list_users().await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (PartnerErrorKind::Transient, 1));
    assert_eq!(f.count(CallKind::ListUsers, false), 5);
    let e = f.client.list_users().await.unwrap_err();
    assert_eq!(e.kind, PartnerErrorKind::Unavailable);

    // The site recovers: the next probe closes the circuit.
    f.faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(170)).await;
    f.client.list_users().await.unwrap();
    assert!(!f.client.circuit_open());
    f.client.list_users().await.unwrap();
    assert_eq!(f.count(CallKind::ListUsers, false), 7);
    let rejected = f
        .observer
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.2 == CallOutcome::Rejected)
        .count();
    assert_eq!(rejected, 2);
}

/// A probe that never finishes (its IdP request timed out or went away, and the future was
/// dropped) does not leave the circuit waiting for it: the next call is the new probe.
#[tokio::test]
async fn a_cancelled_probe_does_not_wedge_the_circuit() {
    let f = fixture(ClientOptions {
        max_attempts: 1,
        circuit_failure_threshold: 1,
        circuit_open_ms: 100,
        ..options()
    })
    .await;
    f.script(CallKind::ListUsers, 1, status(500, None));
    f.client.list_users().await.unwrap_err();
    assert!(f.client.circuit_open());
    tokio::time::sleep(Duration::from_millis(120)).await;
    f.faults(Faults {
        hang_for_ms: Some(10_000),
        script: vec![ScriptedFault {
            call: Some(CallKind::ListUsers),
            count: 1,
            action: FaultAction::Hang,
        }],
        ..Faults::default()
    });
    let probe = tokio::time::timeout(Duration::from_millis(100), f.client.list_users()).await;
    assert!(probe.is_err(), "the probe should hang until cancelled");
    f.client
        .list_users()
        .await
        .expect("after a cancelled probe, the next call probes again");
    assert!(!f.client.circuit_open());
}

#[tokio::test]
async fn the_local_rate_limit_spaces_calls_and_saturates_within_the_deadline() {
    let f = fixture(ClientOptions {
        rate_per_second: 10.0,
        burst: 1,
        ..options()
    })
    .await;
    let t = Instant::now();
    for _ in 0..3 {
        f.client.list_groups().await.unwrap();
    }
    assert!(
        t.elapsed() >= Duration::from_millis(180),
        "{:?}",
        t.elapsed()
    );

    let f = fixture(ClientOptions {
        rate_per_second: 0.1,
        burst: 1,
        call_deadline_ms: 200,
        ..options()
    })
    .await;
    f.client.list_groups().await.unwrap();
    let e = f.client.list_groups().await.unwrap_err();
    assert_eq!((e.kind, e.attempts), (PartnerErrorKind::Unavailable, 0));
    assert!(e.retry_after.is_some());
    assert_eq!(f.count(CallKind::ListGroups, false), 1);
}

#[tokio::test]
async fn emails_that_cannot_travel_in_a_header_are_refused_before_any_call() {
    let f = fixture(options()).await;
    let c = &f.client;
    let bad = "ada@x.com\r\nHTTP-X-EMAIL: owner@acme.example.com";
    let errors = vec![
        c.get_user(bad).await.unwrap_err(),
        c.update_user(bad, &UserUpdate::default(), false)
            .await
            .unwrap_err(),
        c.delete_user(bad, false).await.unwrap_err(),
        c.delete_user("a\0@x.com", false).await.unwrap_err(),
        c.create_user(&new_user("ada@x.com\n", &[]), false)
            .await
            .unwrap_err(),
        c.update_user(
            "ada@x.com",
            &UserUpdate {
                email: Some("new\r@x.com".into()),
                ..UserUpdate::default()
            },
            false,
        )
        .await
        .unwrap_err(),
        c.get_group("..").await.unwrap_err(),
    ];
    for e in errors {
        assert_eq!(
            (e.kind, e.attempts, e.status),
            (PartnerErrorKind::Invalid, 0, None),
            "{e}"
        );
    }
    assert!(f.emulator().call_log().is_empty());
    assert!(f.observer.0.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The key never leaks

/// A writer into a shared buffer, for a TRACE-level subscriber.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_api_key_never_appears_in_logs_or_errors() {
    // `log` records (reqwest) are forwarded to tracing; the subscriber is this thread's only
    // (the test runtime is current-thread, so the client's and emulator's tasks run here too).
    crate::ask_scoped_subscribers_every_time();
    let _ = tracing_log::LogTracer::init();
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let f = fixture(ClientOptions {
        request_timeout_ms: 300,
        ..options()
    })
    .await;
    let c = &f.client;
    let mut errors = Vec::new();
    c.list_users().await.unwrap();
    c.create_user(&new_user("ada@x.com", &[]), false)
        .await
        .unwrap();
    errors.push(
        c.create_user(&new_user("ada@x.com", &[]), false)
            .await
            .unwrap_err(),
    );
    f.faults(Faults {
        hang_for_ms: Some(5_000),
        script: vec![
            ScriptedFault {
                call: Some(CallKind::GetUser),
                count: 1,
                action: status(429, Some(1)),
            },
            ScriptedFault {
                call: Some(CallKind::GetUser),
                count: 1,
                action: FaultAction::Hang,
            },
            ScriptedFault {
                call: Some(CallKind::GetUser),
                count: 1,
                action: FaultAction::Drop,
            },
            ScriptedFault {
                call: Some(CallKind::ListGroups),
                count: 100,
                action: status(500, None),
            },
        ],
        ..Faults::default()
    });
    c.get_user("ada@x.com").await.unwrap();
    errors.push(c.list_groups().await.unwrap_err());
    errors.push(c.get_user("bad\r\n@x.com").await.unwrap_err());
    let wrong = client_for(&f.emu, &format!("{KEY}-rotated"), options());
    errors.push(wrong.list_users().await.unwrap_err());
    // An unreachable site (nothing listens on this port any more).
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = PartnerClient::new(
        SiteConnection {
            base_url: format!("http://{addr}").parse().unwrap(),
            site_name: SITE.into(),
            api_key: Secret::new(KEY),
        },
        ClientOptions {
            max_attempts: 2,
            ..options()
        },
    )
    .unwrap()
    .with_sleeper(f.sleeper.clone());
    errors.push(gone.list_users().await.unwrap_err());
    drop(_guard);

    for e in &errors {
        assert_no_key(e);
    }
    assert!(!format!("{c:?}").contains(KEY));
    let logs = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    // The capture works, at every layer: our spans, reqwest's `log` records, the emulator.
    assert!(
        logs.contains("partner_call{site=acme call=list_users"),
        "{logs}"
    );
    assert!(
        logs.contains("attempt=") && logs.contains("latency_ms="),
        "{logs}"
    );
    assert!(
        logs.contains("reqwest"),
        "reqwest's records were not captured"
    );
    assert!(logs.lines().count() > 20, "{logs}");
    assert!(!logs.contains(KEY), "the API key leaked into the logs");
    assert!(
        !logs.contains("pk-7f3a9c1e"),
        "part of the API key leaked into the logs"
    );
    println!(
        "captured {} log lines, {} bytes, no key",
        logs.lines().count(),
        logs.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Answers the emulator never gives: a minimal fake partner

/// What the fake saw of one request: method, path and query, auth, content type, email header.
type Seen = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn fake_partner() -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let log = log.clone();
        async move {
            let h = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            let n = {
                let mut log = log.lock().unwrap();
                log.push((
                    method.to_string(),
                    uri.to_string(),
                    h("http-x-partner-auth"),
                    h("content-type"),
                    h("http-x-email"),
                ));
                log.iter()
                    .filter(|s| s.0 == method.as_str() && s.1 == uri.to_string())
                    .count()
            };
            let path = uri.path();
            match (method.as_str(), path) {
                // Cut short twice (a complete HTTP answer whose JSON ends early), then whole.
                ("GET", "/api/v1/users") if n <= 2 => {
                    (StatusCode::OK, r#"{"users":[{"email":"a@x"#).into_response()
                }
                ("GET", "/api/v1/users") => {
                    (StatusCode::OK, r#"{"users":[{"email":"a@x.com"}]}"#).into_response()
                }
                ("GET", "/api/v1/groups") => {
                    (StatusCode::OK, "<html>maintenance</html>").into_response()
                }
                ("GET", "/api/v1/groups/Moved") => (
                    StatusCode::FOUND,
                    [("location", "http://127.0.0.1:9/elsewhere")],
                    "",
                )
                    .into_response(),
                ("GET", "/api/v1/groups/G2") => {
                    (StatusCode::OK, r#"{"name":"G2","access":"view"}"#).into_response()
                }
                ("POST", _) | ("PUT", _) => StatusCode::OK.into_response(),
                ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
                _ => (StatusCode::NOT_FOUND, r#"{"message":"nope"}"#).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

#[tokio::test]
async fn blank_cut_short_unreadable_and_redirect_answers_are_handled() {
    let (base, seen) = fake_partner().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let c = PartnerClient::new(
        SiteConnection {
            base_url: base.parse().unwrap(),
            site_name: SITE.into(),
            api_key: Secret::new(KEY),
        },
        options(),
    )
    .unwrap()
    .with_sleeper(sleeper.clone());

    // A body cut short is transient: retried until whole.
    let users = c.list_users().await.unwrap();
    assert_eq!(users[0].email, "a@x.com");
    assert_eq!(sleeper.waits().len(), 2);

    // A 2xx body that is not what the call needs is invalid, not retried.
    let e = c.list_groups().await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Invalid, Some(200), 1)
    );

    // Redirects are not followed (they would carry the key elsewhere).
    let e = c.get_group("Moved").await.unwrap_err();
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (PartnerErrorKind::Invalid, Some(302), 1)
    );

    // Blank 2xx answers: writes succeed with what we asked for; an update is read back.
    let u = c
        .create_user(&new_user("ada@x.com", &["Readers"]), false)
        .await
        .unwrap();
    assert_eq!(
        (u.email.as_str(), u.groups.clone()),
        ("ada@x.com", vec!["Readers".to_owned()])
    );
    let g = c
        .create_group(
            &NewGroup {
                name: "G".into(),
                access: Access::Sql,
                created_by_email: None,
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!((g.name.as_str(), g.access), ("G", Access::Sql));
    let update = GroupUpdate {
        name: Some("G2".into()),
        access: None,
    };
    let g = c.update_group("G", &update, false).await.unwrap();
    assert_eq!((g.name.as_str(), g.access), ("G2", Access::View));
    c.delete_user("ada@x.com", false).await.unwrap();
    c.delete_group("G2", true).await.unwrap();

    // Every request carried the auth and content type; writes carried test_mode explicitly.
    let seen = seen.lock().unwrap().clone();
    for (method, uri, auth, ctype, _) in &seen {
        assert_eq!(
            auth.as_deref(),
            Some(format!("{SITE}:{KEY}").as_str()),
            "{method} {uri}"
        );
        assert_eq!(ctype.as_deref(), Some("application/json"), "{method} {uri}");
        if method != "GET" {
            assert!(
                uri.ends_with("?test_mode=false") || uri.ends_with("?test_mode=true"),
                "{uri}"
            );
        }
    }
    let delete = seen
        .iter()
        .find(|s| s.0 == "DELETE" && s.1.starts_with("/api/v1/users"))
        .unwrap();
    assert_eq!(delete.4.as_deref(), Some("ada@x.com"));
    assert!(seen.iter().all(|s| !s.1.contains("elsewhere")));
}
