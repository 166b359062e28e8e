//! The integration test binary: every test starts its own servers on `127.0.0.1:0`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_cli;
mod architecture;
mod auth_lockout;
mod bench;
mod bridge_smoke;
mod cli;
mod connections;
mod console;
mod crash;
mod credentials;
mod deploy;
mod emulator;
mod emulator_rbac;
mod explain;
mod faults;
mod group_delete;
mod health;
mod hostile;
mod http_discovery;
mod idp_entra;
mod idp_okta;
mod input_validation;
mod leavers;
mod logs;
mod membership;
mod metrics;
mod monitoring;
mod openapi;
mod operator_cli;
mod partner_client;
mod privileged;
mod protocol;
mod rbac_sites;
mod reconcile;
mod renames;
mod replicas;
mod review15;
mod review15b;
mod review_findings;
mod sandbox_start;
mod scim_fixtures_patch;
mod scim_fixtures_resources;
mod secrets;
mod security;
mod simulation;
mod simulation_rbac;
mod soak;
mod store;
mod store_faults;
pub mod support;
mod tls;
mod unknown_members;
mod write_locks;

/// Installs, once per test process, a global subscriber that records nothing but answers
/// "sometimes" for every callsite. Without it, tracing may cache "never" for a callsite first
/// hit on another test's thread, and a test capturing logs with a scoped subscriber
/// (`set_default`) would then miss events: a flaky capture is a test that can pass wrongly.
pub fn ask_scoped_subscribers_every_time() {
    use tracing::subscriber::Interest;
    use tracing::{span, Event, Metadata, Subscriber};

    struct Sometimes;
    impl Subscriber for Sometimes {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Sometimes);
    });
}
