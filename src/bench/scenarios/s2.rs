//! S2 read storm: `userName eq` lookups (hits and Entra-style misses), `GET /Users` pages of
//! 100 and `GET /Groups/{id}?excludedAttributes=members`, beside a trivial axum handler driven
//! by the same load tool (the HTTP ceiling of this machine), optionally a reference SCIM
//! server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::super::load::{run_for, run_jobs, Client, Recorder, Req, Stats};
use super::super::report::{rss_mb, ScenarioReport};
use super::super::{BenchArgs, Sizes};
use super::env::Env;
use super::steps::{
    add_members, create_groups, create_users, email, finish, lookup, measure_start, patch_groups,
    require_ok, user_body,
};

/// Runs S2 and reports it.
pub(super) async fn s2(args: &BenchArgs, sizes: Sizes) -> anyhow::Result<ScenarioReport> {
    let env = Env::start(args, args.read_connections).await?;
    let mut r = ScenarioReport {
        name: "S2".into(),
        title: format!(
            "read storm: {} connections, {} users, {:.0} s per run",
            args.read_connections, sizes.users, sizes.read_seconds
        ),
        ..ScenarioReport::default()
    };
    let group_ids = populate(&env, args, sizes, &mut r).await?;
    let (cpu0, _) = measure_start();
    let (reads0, writes0) = env.partner_calls();
    let storm = Storm {
        env: &env,
        args,
        duration: Duration::from_secs_f64(sizes.read_seconds),
        users: sizes.users,
    };
    let (pairs, rss) = storm.lookup_runs(&mut r).await?;
    storm.mixed_run(group_ids, &mut r).await;
    let lookup_rate = lookup_targets(&mut r, &pairs);
    if let Some(url) = &args.reference_url {
        storm.reference(url, sizes, lookup_rate, &mut r).await?;
    }
    finish(&mut r, cpu0);
    let (reads, writes) = env.partner_calls();
    r.partner_reads = reads - reads0;
    r.partner_writes = writes - writes0;
    r.notes.push(format!(
        "RSS after each lookup run: {}",
        rss.iter()
            .map(|m| format!("{m:.1} MB"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if r.partner_writes > 0 {
        r.failures
            .push(format!("{} partner writes during reads", r.partner_writes));
    }
    rss_growth_target(&mut r, &rss);
    Ok(r)
}

/// Set-up, not measured: the users, the groups, up to 100 members in each; waits for the
/// partner to have them. Returns the group ids.
async fn populate(
    env: &Env,
    args: &BenchArgs,
    sizes: Sizes,
    r: &mut ScenarioReport,
) -> anyhow::Result<Vec<String>> {
    let (setup, user_ids) = create_users(env, "s2u", sizes.users, args.connections).await;
    require_ok(r, "setup users", &setup);
    let (setup, group_ids) = create_groups(env, "s2-group-", sizes.groups, args.connections).await;
    require_ok(r, "setup groups", &setup);
    let mut jobs = Vec::new();
    for (g, gid) in group_ids.iter().enumerate() {
        let members: Vec<String> = user_ids
            .iter()
            .skip(g)
            .step_by(sizes.groups.max(1))
            .take(100)
            .cloned()
            .collect();
        jobs.push((gid.clone(), add_members(&members)));
    }
    let setup = patch_groups(env, jobs, args.connections).await;
    require_ok(r, "setup memberships", &setup);
    env.converge().await?;
    Ok(group_ids)
}

/// The lookups of a run over `users` users: half of them hits on a user `s2u..`, half
/// Entra's keep-alive probe for a random userName that exists nowhere.
fn lookup_mix(users: usize) -> impl Fn(usize, u64) -> Req + Copy + Send + Sync + 'static {
    move |w: usize, i: u64| {
        let x = (w as u64)
            .wrapping_mul(1_000_003)
            .wrapping_add(i.wrapping_mul(7919));
        if x % 2 == 0 {
            lookup(&email("s2u", (x as usize / 2) % users))
        } else {
            // Entra's keep-alive probe: a random userName that exists nowhere.
            lookup(&uuid::Uuid::new_v4().to_string())
        }
    }
}

/// What every S2 run uses: the bridge, the options, how long each run lasts, and how many
/// users the lookups spread over.
struct Storm<'a> {
    env: &'a Env,
    args: &'a BenchArgs,
    duration: Duration,
    users: usize,
}

impl Storm<'_> {
    /// Three lookup runs, each followed by a run on a trivial axum handler (the HTTP ceiling:
    /// this machine's speed drifts, so each lookup run is compared with its neighbour).
    /// Returns the (lookups, trivial) pairs and the RSS after each lookup run.
    async fn lookup_runs(
        &self,
        r: &mut ScenarioReport,
    ) -> anyhow::Result<(Vec<(Stats, Stats)>, Vec<f64>)> {
        let connections = self.args.read_connections;
        let lookups = lookup_mix(self.users);
        let trivial = Trivial::start(connections).await?;
        // A first trivial run, not counted: its connections and buffers are in the RSS before
        // the first lookup run, so the RSS figures below show the bridge's growth alone.
        let _ = trivial.run(connections, self.duration).await;
        let mut rss = Vec::new();
        let mut pairs = Vec::new();
        for run in 1..=3 {
            let stats = run_for(connections, self.duration, self.env.client.clone(), lookups).await;
            require_ok(r, "lookups", &stats);
            rss.push(rss_mb());
            let tstats = trivial.run(connections, self.duration).await;
            pairs.push((stats.clone(), tstats.clone()));
            r.phases
                .push((format!("userName eq lookups #{run}"), stats));
            r.phases
                .push((format!("trivial axum handler #{run}"), tstats));
        }
        trivial.server.abort();
        Ok((pairs, rss))
    }

    /// The mixed run: 70% lookups, 20% `GET /Users` pages of 100, 10% group reads without
    /// members.
    async fn mixed_run(&self, group_ids: Vec<String>, r: &mut ScenarioReport) {
        let lookups = lookup_mix(self.users);
        let gids = Arc::new(group_ids);
        let pages = self.users.div_ceil(100).max(1);
        let mixed = move |w: usize, i: u64| {
            let x = (w as u64)
                .wrapping_mul(1_000_003)
                .wrapping_add(i.wrapping_mul(7919));
            match x % 10 {
                0..=6 => lookups(w, i),
                7 | 8 => Req::get(format!(
                    "/Users?startIndex={}&count=100",
                    (x as usize / 10 % pages) * 100 + 1
                )),
                _ => Req::get(format!(
                    "/Groups/{}?excludedAttributes=members",
                    gids[(x as usize / 10) % gids.len().max(1)]
                )),
            }
        };
        let stats = run_for(
            self.args.read_connections,
            self.duration,
            self.env.client.clone(),
            mixed,
        )
        .await;
        require_ok(r, "mixed", &stats);
        r.phases.push(("mixed (70/20/10)".into(), stats));
    }

    /// The same lookups against a reference SCIM server at `url` (its users created first);
    /// the bridge's best lookup rate must be at least 20 times its rate.
    async fn reference(
        &self,
        url: &str,
        sizes: Sizes,
        lookup_rate: f64,
        r: &mut ScenarioReport,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let rclient = Client::new(url, None, args.read_connections)?;
        let n = args.reference_users.min(sizes.users);
        let c2 = rclient.clone();
        let setup = run_jobs(
            args.connections,
            (0..n).collect(),
            move |i, mut rec: Recorder| {
                let c = c2.clone();
                async move {
                    let e = email("s2u", i);
                    c.send(&Req::post("/Users", user_body(&e, i)), &mut rec)
                        .await;
                    rec
                }
            },
        )
        .await;
        if setup.errors() > 0 {
            r.notes
                .push(format!("reference set-up answers: {:?}", setup.statuses));
        }
        let reference_lookups = lookup_mix(n.max(1));
        let rstats = run_for(
            args.read_connections,
            self.duration,
            rclient,
            reference_lookups,
        )
        .await;
        let x = lookup_rate / rstats.per_second.max(1e-9);
        r.targets.push((
            format!(
                "reference server {url}: {:.0} lookups/s, p99 {:.2} ms; the bridge is {x:.1}x (at least 20x)",
                rstats.per_second, rstats.p99_ms
            ),
            x >= 20.0,
        ));
        r.phases.push(("reference server lookups".into(), rstats));
        Ok(())
    }
}

/// A trivial axum handler on a loopback port, and a client for it: the HTTP ceiling.
struct Trivial {
    client: Client,
    server: tokio::task::JoinHandle<()>,
}

impl Trivial {
    /// Serves `/trivial` (an empty SCIM list's JSON) with a client of `connections`.
    async fn start(connections: usize) -> anyhow::Result<Trivial> {
        let trivial = axum::Router::new().route(
            "/trivial",
            axum::routing::get(|| async { axum::Json(json!({"totalResults": 0})) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let taddr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, trivial).await;
        });
        let client = Client::new(&format!("http://{taddr}"), None, connections)?;
        Ok(Trivial { client, server })
    }

    /// One run of `duration` on `connections` connections.
    async fn run(&self, connections: usize, duration: Duration) -> Stats {
        run_for(connections, duration, self.client.clone(), |_, _| {
            Req::get("/trivial")
        })
        .await
    }
}

/// The lookup targets: the best run's rate and p99, and the lookups' share of the trivial
/// handler's rate (the median of the runs' ratios). Returns the best run's rate.
fn lookup_targets(r: &mut ScenarioReport, pairs: &[(Stats, Stats)]) -> f64 {
    let best = pairs
        .iter()
        .map(|(l, _)| l)
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
        .cloned()
        .unwrap_or_default();
    let lookup_rate = best.per_second;
    let mut shares: Vec<f64> = pairs
        .iter()
        .map(|(l, t)| l.per_second / t.per_second.max(1e-9))
        .collect();
    shares.sort_by(f64::total_cmp);
    let share = shares.get(shares.len() / 2).copied().unwrap_or_default();
    r.targets.push((
        format!("{lookup_rate:.0} userName eq lookups/s (at least 15000)"),
        lookup_rate >= 15_000.0,
    ));
    r.targets.push((
        format!("lookup p99 {:.2} ms (under 10 ms)", best.p99_ms),
        best.p99_ms < 10.0,
    ));
    r.targets.push((
        format!(
            "lookups {:.0}% of the trivial handler (median of the runs' ratios: {}; at least 40%)",
            100.0 * share,
            pairs
                .iter()
                .map(|(l, t)| format!("{:.0}/{:.0}", l.per_second, t.per_second))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        share >= 0.4,
    ));
    lookup_rate
}

/// A leak grows run after run; the allocator's retained pages go up and down. So the last
/// run is compared with the highest before it.
fn rss_growth_target(r: &mut ScenarioReport, rss: &[f64]) {
    let before = rss[..rss.len().saturating_sub(1)]
        .iter()
        .copied()
        .fold(f64::MIN, f64::max);
    let growth = rss.last().copied().unwrap_or(0.0) - before.max(0.0);
    r.targets.push((
        format!("RSS growth across the three lookup runs {growth:+.1} MB (none: the last run at most 2 MB above the runs before it)"),
        growth <= 2.0,
    ));
}
