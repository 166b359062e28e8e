//! The SCIM 2.0 protocol (RFC 7643, RFC 7644) as a pure library: no I/O, no async.
//!
//! Resources are handled as canonical JSON objects (`serde_json::Value`) guided by the schema
//! model, with typed views for the fields the bridge needs.
//!
//! - [`schema`]: attribute definitions, resource types, attribute references, value coercion.
//! - [`error`]: the SCIM error (status, `scimType`, detail).
//! - [`filter`]: filters: parser, printer, validation, evaluator, index plan.
//! - [`path`]: PATCH attribute paths.
//! - [`patch`]: the PATCH engine.
//! - [`sort`]: `sortBy`/`sortOrder`.

pub mod error;
pub mod filter;
pub mod patch;
pub mod path;
pub mod sort;
pub mod schema;

pub use error::{ScimError, ScimType};

pub mod bulk;
pub mod discovery;
pub mod list;
pub mod projection;
pub mod resource;
pub mod version;
