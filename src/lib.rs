//! scim-bridge: a SCIM 2.0 service provider that carries every change onto Periscope Data /
//! Sisense for Cloud Data Teams sites through the vendor's partner API.
//!
//! Module map (see `DESIGN.md` section 2; arrows point one way: `http -> bridge -> {store,
//! partner}`, everything may use `scim`, `scim` imports nothing of the project, `partner` knows
//! nothing of SCIM):
//!
//! - [`cli`]: subcommands (`serve`, `partner-emulator`, `check-config`, `migrate`, `reconcile`,
//!   `token new`, `audit`, `status`, `import-csv`, `delete-csv`, `add-user`, `bench`, `soak`).
//! - [`soak`]: the soak run (the bridge as a child process under faults, memory and descriptors
//!   sampled).
//! - [`config`]: typed configuration from defaults, a TOML file and `SCIM_BRIDGE_*` variables,
//!   validated at start, secrets redacted.
//! - [`scim`]: the protocol, pure: schemas, resources, filters, paths, PATCH, projection, errors.
//! - [`http`]: axum: router and middleware stack, client address from trusted proxies,
//!   authentication (static tokens, Basic, JWTs, the OAuth token endpoint, throttles), SCIM JSON
//!   in and out, thin handlers, discovery, bulk, the audit log of writes, the admin endpoint,
//!   TLS. Entry points: [`http::app`], [`http::run`] and [`http::tls::run_maybe_tls`].
//! - [`bridge`]: orchestration: user and group flows, the membership engine, reads,
//!   reconciliation, audit retention; the only layer that talks to both the store and the
//!   partner.
//! - [`partner`]: the partner API: `wire` (vendor names), `client` (real HTTP), `emulator` (fake),
//!   `record` (which calls a piece of work made, for the audit log).
//! - [`store`]: sqlx over SQLite and PostgreSQL: migrations, id map, resources, memberships,
//!   the membership engine's outbox, the audit log.
//! - [`secret`]: the `Secret` string that never prints.
//! - [`telemetry`]: the tracing subscriber; Prometheus metrics and their listener.

pub mod bench;
pub mod bridge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
mod lenient;
pub mod partner;
pub mod scim;
pub mod secret;
pub mod simulate;
pub mod soak;
pub mod store;
pub mod telemetry;
