//! Sampling the bridge process (resident memory, open descriptors) and the trend of the
//! samples.

use anyhow::Context;
use serde::Serialize;

/// One sample of the bridge process.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Sample {
    pub(super) t_s: f64,
    pub(super) rss_kb: u64,
    pub(super) fds: u64,
}

/// A least-squares line through samples after warm-up, and the verdict on it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Trend {
    pub(super) samples: usize,
    pub(super) first: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) last: f64,
    pub(super) mean: f64,
    pub(super) slope_per_min: f64,
    pub(super) projected_growth: f64,
    pub(super) threshold: f64,
    pub(super) ok: bool,
}

/// Reads `VmRSS` (kB) and the number of open descriptors of `pid`.
pub(super) fn sample_process(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("read /proc/{pid}/fd"))?
        .count() as u64;
    Ok((rss, fds))
}

/// Least-squares slope of `ys` over `xs`.
pub(super) fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// The trend of `ys` (after warm-up) projected over `run_s` seconds, against a threshold.
pub(super) fn trend(ts: &[f64], ys: &[f64], run_s: f64, threshold: impl Fn(f64) -> f64) -> Trend {
    let n = ys.len().max(1) as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let b = slope(ts, ys);
    let projected = b * run_s;
    let threshold = threshold(mean);
    Trend {
        samples: ys.len(),
        first: ys.first().copied().unwrap_or(0.0),
        min: ys.iter().copied().fold(f64::INFINITY, f64::min),
        max: ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        last: ys.last().copied().unwrap_or(0.0),
        mean,
        slope_per_min: b * 60.0,
        projected_growth: projected,
        threshold,
        ok: ys.len() >= 5 && projected <= threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_the_least_squares_line() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        assert!((slope(&xs, &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-9);
        assert!(slope(&xs, &[4.0, 4.0, 4.0, 4.0]).abs() < 1e-9);
        // A spike in the middle does not make a trend.
        assert!(slope(&xs, &[4.0, 9.0, 9.0, 4.0]).abs() < 1e-9);
    }

    #[test]
    fn trend_fails_above_the_threshold_only() {
        let ts: Vec<f64> = (0..10).map(f64::from).collect();
        let flat: Vec<f64> = ts.iter().map(|t| 30.0 + (t % 2.0)).collect();
        assert!(trend(&ts, &flat, 100.0, |_| 8.0).ok);
        // 0.1 MB/s over 100 s projects +10 MB.
        let growing: Vec<f64> = ts.iter().map(|t| 30.0 + 0.1 * t).collect();
        let t = trend(&ts, &growing, 100.0, |_| 8.0);
        assert!(!t.ok);
        assert!((t.projected_growth - 10.0).abs() < 1e-6);
    }
}
