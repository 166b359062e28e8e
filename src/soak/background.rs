//! The soak's two background tasks: the sampler of the bridge's memory and descriptors, and
//! the fault schedule that switches the partner's faults on and off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::partner::emulator::faults::Faults;
use crate::partner::emulator::Emulator;

use super::process::{sample_process, Sample};
use super::report::FaultWindow;
use super::worker::fault_for;
use super::SITE;

/// Samples the bridge process every `every` until it is stopped or the process is gone.
pub(super) struct Sampler {
    pub(super) samples: Arc<Mutex<Vec<Sample>>>,
    pub(super) task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling process `pid`; times are offsets from `epoch`.
    pub(super) fn spawn(pid: u32, every: Duration, epoch: Instant) -> Sampler {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Ok((rss_kb, fds)) = sample_process(pid) else {
                        break;
                    };
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            t_s: epoch.elapsed().as_secs_f64(),
                            rss_kb,
                            fds,
                        });
                    }
                }
            })
        };
        Sampler { samples, task }
    }
}

/// The fault schedule: in each period a clean third, a faulty third, a clean third; it
/// records each window it ran.
pub(super) struct FaultSchedule {
    pub(super) windows: Arc<Mutex<Vec<FaultWindow>>>,
    pub(super) task: JoinHandle<()>,
}

/// When the workload runs and how the schedule is cut into periods.
pub(super) struct Window {
    pub(super) work_start: Instant,
    pub(super) end: Instant,
    pub(super) period: Duration,
    /// Times in the windows are offsets from it.
    pub(super) epoch: Instant,
}

impl FaultSchedule {
    /// Starts switching `emulator`'s faults on the schedule `at`, seeded by `seed`.
    pub(super) fn spawn(emulator: Emulator, seed: u64, at: Window) -> FaultSchedule {
        let windows: Arc<Mutex<Vec<FaultWindow>>> = Arc::default();
        let Window {
            work_start,
            end,
            period,
            epoch,
        } = at;
        let task = {
            let windows = windows.clone();
            tokio::spawn(async move {
                let mut k = 0usize;
                loop {
                    let on = work_start + period.mul_f64(k as f64 + 1.0 / 3.0);
                    let off = (work_start + period.mul_f64(k as f64 + 2.0 / 3.0)).min(end);
                    if on >= end {
                        break;
                    }
                    tokio::time::sleep_until(on.into()).await;
                    let (kind, faults) = fault_for(k, seed);
                    emulator.set_faults(SITE, faults);
                    let on_s = epoch.elapsed().as_secs_f64();
                    tokio::time::sleep_until(off.into()).await;
                    emulator.set_faults(SITE, Faults::default());
                    if let Ok(mut w) = windows.lock() {
                        w.push(FaultWindow {
                            kind,
                            on_s,
                            off_s: epoch.elapsed().as_secs_f64(),
                        });
                    }
                    k += 1;
                }
            })
        };
        FaultSchedule { windows, task }
    }
}
