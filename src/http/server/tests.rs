use super::*;

fn listener(max_connections: usize) -> Shared {
    Shared {
        label: "plain",
        metrics: Metrics::off(),
        max_connections,
        clocks: Clocks {
            handshake: Duration::from_secs(10),
            head: Duration::from_secs(10),
            idle: Duration::from_secs(75),
        },
        conns: Mutex::new(HashMap::new()),
        freed: Notify::new(),
    }
}

fn admitted(a: Admission) -> Arc<Conn> {
    match a {
        Admission::Admitted(c) => c,
        _ => panic!("not admitted at once"),
    }
}

#[tokio::test(start_paused = true)]
async fn among_requests_being_verified_the_newest_makes_room_and_a_late_hold_is_refused() {
    let l = listener(3);
    let idp = admitted(l.admit(1, Phase::Head));
    tokio::time::advance(Duration::from_millis(100)).await;
    let flood = admitted(l.admit(2, Phase::Head));
    tokio::time::advance(Duration::from_millis(100)).await;
    let last = admitted(l.admit(3, Phase::Head));
    let _idp = idp.begin_request().unwrap();
    idp.verifying();
    let _flood = flood.begin_request().unwrap();
    flood.verifying();
    let _last = last.begin_request().unwrap();
    last.verifying();
    tokio::time::advance(EVICTION_GRACE * 2).await;
    assert!(matches!(l.admit(4, Phase::Head), Admission::Evicted(_)));
    // The newest goes first, not the IdP's kept-alive connection opened first.
    assert_eq!(last.state().phase, Phase::Closing);
    assert_eq!(idp.state().phase, Phase::Busy);
    assert_eq!(flood.state().phase, Phase::Busy);
    // A credential found valid on a connection already closing is not held: the request
    // is answered "closing" instead of starting work nobody will hear of.
    assert!(!last.hold());
    assert!(idp.hold());
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_the_oldest_idle_connection_past_its_grace_makes_room_never_a_busy_one() {
    let step = Duration::from_millis(100);
    let l = listener(3);
    let first = admitted(l.admit(1, Phase::Head));
    tokio::time::advance(step).await;
    let second = admitted(l.admit(2, Phase::Head));
    tokio::time::advance(step).await;
    let third = admitted(l.admit(3, Phase::Handshake));
    // The oldest has an authenticated request in flight: the second is next, once a
    // second after its opening.
    let busy = first.begin_request().unwrap();
    first.hold();
    let at = match l.admit(4, Phase::Head) {
        Admission::WaitUntil(at) => at,
        _ => panic!("made room inside the grace period"),
    };
    assert_eq!(at, second.state().opened + EVICTION_GRACE);
    tokio::time::advance(at - Instant::now()).await;
    let fourth = match l.admit(4, Phase::Head) {
        Admission::Evicted(c) => c,
        _ => panic!("no room made past the grace period"),
    };
    assert_eq!(second.state().phase, Phase::Closing);
    assert!(
        second.begin_request().is_none(),
        "a request on a closing connection"
    );
    assert_eq!(first.state().phase, Phase::Busy);
    assert_eq!(l.conns().len(), 3);

    // Every connection held: refused, whatever their age.
    let _busy3 = third.begin_request().unwrap();
    third.hold();
    let _busy4 = fourth.begin_request().unwrap();
    fourth.hold();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(matches!(l.admit(5, Phase::Head), Admission::Refused));
    // An answer handed over but not yet written out still holds its connection.
    drop(busy);
    assert_eq!(first.state().phase, Phase::Writing);
    assert!(matches!(l.admit(5, Phase::Head), Admission::Refused));
    // Written out, the connection is idle; its grace counted from its opening, long past,
    // so it makes room at once (no fresh grace per request).
    first.flushed();
    assert_eq!(first.state().phase, Phase::Idle);
    assert!(matches!(l.admit(5, Phase::Head), Admission::Evicted(_)));
    assert_eq!(first.state().phase, Phase::Closing);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_verified_credential_holds_nothing() {
    let l = listener(1);
    let conn = admitted(l.admit(1, Phase::Head));
    // A token request whose form body trickles in, a guess, a probe: busy, not held.
    let _request = conn.begin_request().unwrap();
    assert!(matches!(l.admit(2, Phase::Head), Admission::WaitUntil(_)));
    tokio::time::advance(EVICTION_GRACE).await;
    assert!(matches!(l.admit(2, Phase::Head), Admission::Evicted(_)));
    assert_eq!(conn.state().phase, Phase::Closing);
    // An authenticated one is held until its answer is out.
    let l = listener(1);
    let conn = admitted(l.admit(1, Phase::Head));
    let request = conn.begin_request().unwrap();
    conn.hold();
    tokio::time::advance(EVICTION_GRACE).await;
    assert!(matches!(l.admit(2, Phase::Head), Admission::Refused));
    drop(request);
    conn.bytes_written();
    assert!(matches!(l.admit(2, Phase::Head), Admission::Refused));
    conn.flushed();
    assert!(!conn.state().held(), "held past its answer");
    assert!(matches!(l.admit(2, Phase::Head), Admission::Evicted(_)));
}

#[tokio::test(start_paused = true)]
async fn each_phase_has_its_clock_and_bytes_on_an_idle_connection_start_the_head_clock() {
    let clocks = Clocks {
        handshake: Duration::from_secs(3),
        head: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };
    let conn = Arc::new(Conn::new(1, Phase::Handshake));
    let began = Instant::now();
    assert_eq!(conn.watchdog(clocks).await, Dropped::HandshakeTimeout);
    assert_eq!(began.elapsed(), clocks.handshake);

    conn.handshake_done();
    let began = Instant::now();
    assert_eq!(conn.watchdog(clocks).await, Dropped::HeaderTimeout);
    assert_eq!(began.elapsed(), clocks.head);

    // Busy: no clock; writing the answer: the idle clock, restarted by every write; idle
    // once written out: the idle clock, until a byte arrives.
    let in_flight = conn.begin_request().unwrap();
    let watch = {
        let conn = conn.clone();
        tokio::spawn(async move { (conn.watchdog(clocks).await, Instant::now()) })
    };
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!watch.is_finished());
    drop(in_flight);
    for _ in 0..3 {
        tokio::time::sleep(clocks.idle - Duration::from_secs(1)).await;
        conn.bytes_written();
    }
    assert!(!watch.is_finished());
    conn.flushed();
    let idle_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    conn.bytes_read();
    let head_since = Instant::now();
    let (why, at) = watch.await.unwrap();
    assert_eq!(why, Dropped::HeaderTimeout);
    assert_eq!(at, head_since + clocks.head);
    assert!(at < idle_since + clocks.idle);

    // An answer whose writing stalls: the idle clock after the last write.
    drop(conn.begin_request().unwrap());
    conn.bytes_written();
    let began = Instant::now();
    assert_eq!(conn.watchdog(clocks).await, Dropped::SendTimeout);
    assert_eq!(began.elapsed(), clocks.idle);

    // Closed for room: at once.
    assert!(conn.close());
    assert_eq!(conn.watchdog(clocks).await, Dropped::Evicted);
}

#[test]
fn the_open_file_limit_is_raised_to_what_the_cap_needs_or_the_cap_lowered() {
    let fit = |soft, hard, max| {
        let f = fit_files(soft, hard, max);
        (f.raise_soft_to, f.max_connections)
    };
    // Enough already, or unlimited.
    assert_eq!(fit(Some(65536), Some(65536), 1024), (None, 1024));
    assert_eq!(fit(None, None, 1024), (None, 1024));
    // systemd's default for services (1024 soft, 512 Ki hard): raised to what is needed.
    assert_eq!(fit(Some(1024), Some(524_288), 1024), (Some(1280), 1024));
    assert_eq!(fit(Some(1024), None, 4096), (Some(4352), 4096));
    // The hard limit is too low: raised to it, the cap lowered to leave the reserve.
    assert_eq!(fit(Some(1024), Some(1024), 1024), (None, 768));
    assert_eq!(fit(Some(512), Some(1000), 1024), (Some(1000), 744));
    // A tiny limit: a quarter of it.
    assert_eq!(fit(Some(100), Some(100), 1024), (None, 25));
    assert_eq!(fit(Some(1), Some(1), 1024), (None, 1));
}
