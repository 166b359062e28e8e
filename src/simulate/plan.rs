//! The plan of a seed: the run's shape, the bridges' options and the partner's faults.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bridge::BridgeOptions;
use crate::config::DeprovisionPolicy;
use crate::partner::client::ClientOptions;
use crate::partner::emulator::faults::{Faults, Latency};

/// Which IdP's request shapes a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Okta,
    Entra,
    Mixed,
}

#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) sites: Vec<String>,
    pub(super) policy: DeprovisionPolicy,
    pub(super) shape: Shape,
    pub(super) users: usize,
    pub(super) groups: usize,
    pub(super) connections: usize,
    pub(super) ops_per_connection: usize,
    /// Small `wait_deadline_ms` and `lease_ms`.
    pub(super) short: bool,
    pub(super) wait_deadline_ms: u64,
    pub(super) lease_ms: u64,
    pub(super) error_share: f64,
    pub(super) drop_share: f64,
    pub(super) latency_max_ms: u64,
    pub(super) cancel_share: f64,
    pub(super) kills: usize,
    /// Slot 0 is the tenant's inviting account (adopted, protected).
    pub(super) owner_slot: bool,
    /// Slot 1 exists at the partner before the run, in an unmanaged group (adopted).
    pub(super) vendor_slot: bool,
    /// Name and email (`userName`) changes are sent (see [`Workload`](super::Workload)).
    pub(super) attribute_updates: bool,
    /// The sites that are RBAC sites (SCIM groups as roles); the others are v1 sites.
    pub(super) rbac_sites: std::collections::BTreeSet<String>,
}

impl Plan {
    pub(super) fn new(seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x51a1_7e55);
        let sites = if rng.random_bool(0.4) {
            vec!["alpha".to_owned(), "beta".to_owned()]
        } else {
            vec!["alpha".to_owned()]
        };
        let policy = match rng.random_range(0..10) {
            0 => DeprovisionPolicy::Strip,
            1 => DeprovisionPolicy::Keep,
            _ => DeprovisionPolicy::Remove,
        };
        let shape = match rng.random_range(0..3) {
            0 => Shape::Okta,
            1 => Shape::Entra,
            _ => Shape::Mixed,
        };
        let short = rng.random_bool(0.3);
        Plan {
            sites,
            policy,
            shape,
            users: rng.random_range(6..=10),
            groups: rng.random_range(3..=4),
            connections: rng.random_range(3..=4),
            ops_per_connection: rng.random_range(10..=18),
            short,
            wait_deadline_ms: if short {
                rng.random_range(20..=300)
            } else {
                2_000
            },
            // A fence stops a claim's partner writes half a lease before it ends at the
            // latest, and the guarantee that no two writers overlap holds while a write sent
            // before that reaches the partner within that half. With leases from 300 ms, a
            // loaded CI machine's scheduling stalls (the emulator runs in this process) broke
            // it: a create sent by a worker whose claim then lapsed landed after the next
            // worker's delete (seed 11, a 441 ms lease).
            lease_ms: if short {
                rng.random_range(1_200..=2_000)
            } else {
                2_500
            },
            error_share: rng.random_range(0.0..0.12),
            drop_share: rng.random_range(0.0..0.04),
            latency_max_ms: rng.random_range(2..=30),
            cancel_share: rng.random_range(0.03..0.12),
            kills: rng.random_range(1..=3),
            owner_slot: rng.random_bool(0.25),
            vendor_slot: rng.random_bool(0.5),
            attribute_updates: true,
            rbac_sites: std::collections::BTreeSet::new(),
        }
    }

    /// True when `site` is an RBAC site.
    pub(super) fn is_rbac(&self, site: &str) -> bool {
        self.rbac_sites.contains(site)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "sites {:?} (rbac {:?}), deprovision {:?}, {:?} shapes, {} users, {} groups, {} connections x {} \
             ops, wait_deadline {} ms, lease {} ms, partner errors {:.0}% drops {:.0}% latency \
             <= {} ms, cancels {:.0}%, {} kills{}{}{}{}",
            self.sites,
            self.rbac_sites,
            self.policy,
            self.shape,
            self.users,
            self.groups,
            self.connections,
            self.ops_per_connection,
            self.wait_deadline_ms,
            self.lease_ms,
            self.error_share * 100.0,
            self.drop_share * 100.0,
            self.latency_max_ms,
            self.cancel_share * 100.0,
            self.kills,
            if self.short { " (short deadlines)" } else { "" },
            if self.owner_slot {
                ", the owner is a SCIM user"
            } else {
                ""
            },
            if self.vendor_slot {
                ", a vendor user is adopted"
            } else {
                ""
            },
            if self.attribute_updates {
                ""
            } else {
                ", no name or email changes"
            },
        )
    }

    pub(super) fn bridge_options(&self) -> BridgeOptions {
        BridgeOptions {
            wait_deadline_ms: self.wait_deadline_ms,
            workers: 2,
            lease_ms: self.lease_ms,
            poll_ms: 30,
            retry_base_ms: 30,
            retry_max_ms: 400,
            coalesce_ms: 10,
            coalesce_max_ms: 200,
            reconcile_interval_s: 0,
            // A rename flow here ends within a few seconds (2 s call deadlines): the engine
            // finishes or undoes a half-done one after that, within the run's quiescence wait.
            rename_settle_ms: 6_000,
            partner: ClientOptions {
                request_timeout_ms: 1_000,
                call_deadline_ms: 2_000,
                max_attempts: 3,
                backoff_base_ms: 10,
                backoff_max_ms: 80,
                circuit_failure_threshold: 0,
                ..ClientOptions::default()
            },
            ..BridgeOptions::default()
        }
    }

    pub(super) fn faults(&self, seed: u64) -> Faults {
        Faults {
            latency: Some(Latency::UniformMs {
                min: 0,
                max: self.latency_max_ms,
            }),
            error_share: self.error_share,
            error_statuses: vec![500, 502, 503],
            drop_share: self.drop_share,
            seed,
            ..Faults::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_plan() {
        for seed in 0..50 {
            assert_eq!(Plan::new(seed).describe(), Plan::new(seed).describe());
        }
    }
}
