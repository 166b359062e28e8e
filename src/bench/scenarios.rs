//! The scenarios: each starts its own emulator, store and bridge in this process, populates what
//! it needs (not measured), then runs and measures its phases.
//!
//! Each scenario has a room of its own (`s1` to `s5`); `env` starts what they run on and reads
//! the partner afterwards, `steps` holds the requests, set-up steps and checks they share.

mod env;
mod s1;
mod s2;
mod s3;
mod s4;
mod s5;
mod steps;

use super::report::ScenarioReport;
use super::{BenchArgs, Scenario, Sizes};

const SITE: &str = "bench";
const OWNER: &str = "owner@bench.example.com";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Runs one scenario.
pub async fn run(
    scenario: Scenario,
    args: &BenchArgs,
    sizes: Sizes,
) -> anyhow::Result<Vec<ScenarioReport>> {
    Ok(match scenario {
        Scenario::S1 => vec![s1::s1(args, sizes).await?],
        Scenario::S2 => vec![s2::s2(args, sizes).await?],
        Scenario::S3 => vec![s3::s3(args, sizes).await?],
        Scenario::S4 => vec![s4::s4(args, sizes).await?],
        Scenario::S5 => vec![s5::s5(args, sizes).await?],
    })
}
