//! `scim-bridge soak` in a short run: the real binary starts the bridge as its child, drives
//! the mixed workload through at least two partner fault windows, and its JSON report shows
//! that faults were injected and answered with 429/503 and `Retry-After` only, that nothing
//! else went wrong, that the partner ended in the desired state with the outbox drained, and
//! that the bridge's memory and descriptors were sampled and judged flat.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

#[test]
fn soak_short_run_passes_with_faults_injected_and_a_flat_trend() {
    let started = Instant::now();
    // Fault windows at 2-4 s, 8-10 s and 14-15 s (a period of 6 s: clean, faulty, clean).
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args([
            "soak",
            "--duration",
            "15s",
            "--fault-period",
            "6s",
            "--sample-every",
            "500ms",
            "--seed",
            "7",
            "--connections",
            "4",
            "--rate",
            "60",
            "--users-per-connection",
            "8",
            "--json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));
    let failures = &report["failures"];
    assert!(
        out.status.success() && report["passed"] == true,
        "the soak failed: {failures}\nfirst errors: {}\ndifferences: {}\n{stderr}",
        report["first_errors"],
        report["final_state_differences"]
    );
    assert_eq!(report["errors"], 0, "{}", report["first_errors"]);
    assert!(
        report["requests"].as_u64().unwrap() > 200,
        "{}",
        report["requests"]
    );

    // Faults were on, and the bridge passed them on as retryable answers.
    let windows = report["fault_windows"].as_array().unwrap();
    assert!(windows.len() >= 2, "{windows:?}");
    assert!(
        report["expected_fault_answers"].as_u64().unwrap() > 0,
        "no 429/503 during the faults: were they injected? {}",
        report["statuses"]
    );

    // Every kind of request was sent and some of each succeeded.
    for op in [
        "userName eq (hit)",
        "userName eq (miss)",
        "GET /Users page",
        "POST /Users",
        "PATCH user name",
        "PATCH group add",
    ] {
        assert!(
            report["ops"][op]["ok"].as_u64().unwrap_or(0) > 0,
            "{op}: {}",
            report["ops"]
        );
    }

    // The end state was checked against something: users with memberships, an empty outbox.
    assert_eq!(report["final_state_ok"], true);
    assert!(report["users_at_end"].as_u64().unwrap() > 0);
    assert!(report["memberships_at_end"].as_u64().unwrap() > 0);
    assert_eq!(report["outbox_depth"], 0);

    // The child was sampled throughout, and the trend judged on the samples after warm-up.
    let samples = report["samples"].as_array().unwrap();
    assert!(samples.len() >= 20, "{} samples", samples.len());
    assert!(samples
        .iter()
        .all(|s| s["rss_kb"].as_u64().unwrap() > 1024 && s["fds"].as_u64().unwrap() > 3));
    for t in ["rss_mb", "fds"] {
        assert_eq!(report[t]["ok"], true, "{t}: {}", report[t]);
        assert!(
            report[t]["samples"].as_u64().unwrap() >= 16,
            "{}",
            report[t]
        );
    }
    eprintln!("soak short run: {:.1} s", started.elapsed().as_secs_f64());
}
