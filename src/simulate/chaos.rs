//! The kill task: while the IdP works, bridge instances die (hard or graceful), stay down a
//! while and come back on the same store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::instance::{live_claims, Instance, Kill, Targets};
use super::plan::Plan;
use super::setup::Launcher;
use super::{set_phase, Phase};

/// What the kill task works with.
pub(super) struct Chaos {
    pub(super) seed: u64,
    pub(super) plan: Arc<Plan>,
    pub(super) targets: Arc<Targets>,
    /// Cleared when the IdP connections are done; the task then stops killing.
    pub(super) working: Arc<AtomicBool>,
    pub(super) launcher: Launcher,
    pub(super) phase: Phase,
}

/// What the kill task leaves: the instances (`None` where one is down), the kills, the live
/// claims counted at hard kills, and the restarts that failed.
pub(super) struct Kills {
    pub(super) instances: [Option<Instance>; 2],
    pub(super) kills: usize,
    pub(super) claims_at_kills: i64,
    pub(super) errors: Vec<String>,
}

impl Chaos {
    /// Kills an instance every 200-900 ms (sometimes down past its lease, sometimes not) until
    /// the plan's number of kills or the end of the IdP's work.
    pub(super) async fn run(self, first: Instance, second: Instance) -> Kills {
        let Chaos {
            seed,
            plan,
            targets,
            working,
            launcher,
            phase,
        } = self;
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x0dea_d0ff);
        let mut done = Kills {
            instances: [Some(first), Some(second)],
            kills: 0,
            claims_at_kills: 0,
            errors: Vec::new(),
        };
        while done.kills < plan.kills && working.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..900))).await;
            if !working.load(Ordering::Relaxed) {
                break;
            }
            let k = rng.random_range(0..2);
            let mode = if rng.random_bool(0.7) {
                Kill::Hard
            } else {
                Kill::Graceful
            };
            targets.set(k, None);
            set_phase(&phase, format!("killing instance {k} ({mode:?})"));
            if let Kill::Hard = mode {
                done.claims_at_kills += live_claims(&launcher.store_url).await.unwrap_or(0);
            }
            if let Some(i) = done.instances[k].take() {
                i.stop(mode).await;
            }
            set_phase(&phase, "IdP traffic".into());
            done.kills += 1;
            let down = rng.random_range(0..plan.lease_ms + 300);
            tokio::time::sleep(Duration::from_millis(down)).await;
            match launcher.start().await {
                Ok(i) => {
                    targets.set(k, Some(i.base.clone()));
                    done.instances[k] = Some(i);
                }
                Err(e) => done.errors.push(format!("restarting a bridge: {e:#}")),
            }
        }
        done
    }
}
