//! The integration test binary: every test starts its own servers on `127.0.0.1:0`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod emulator;
mod http_discovery;
mod partner_client;
mod scim_fixtures_patch;
mod scim_fixtures_resources;
mod store;
