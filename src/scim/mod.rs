//! The SCIM 2.0 protocol (RFC 7643, RFC 7644) as a pure library: no I/O, no async.
//!
//! Resources are handled as canonical JSON objects (`serde_json::Value`) guided by the schema
//! model, with typed views for the fields the bridge needs.
//!
//! - [`schema`]: attribute definitions, resource types, attribute references, value coercion.
//! - [`error`]: the SCIM error (status, `scimType`, detail).
//! - [`resource`]: canonicalization of POST/PUT bodies, `meta`, typed views and models.
//! - [`filter`]: filters: parser, printer, validation, evaluator, index plan.
//! - [`path`]: PATCH attribute paths.
//! - [`patch`]: the PATCH engine.
//! - [`sort`]: `sortBy` and `sortOrder`.
//! - [`projection`]: `attributes` and `excludedAttributes` with the `returned` rules.
//! - [`list`]: paging, `ListResponse`, `SearchRequest`.
//! - [`discovery`]: `ServiceProviderConfig`, `ResourceTypes`, `Schemas`.
//! - [`bulk`]: `BulkRequest`/`BulkResponse` types and `bulkId` resolution.
//! - [`version`]: weak ETags, `If-Match`, `If-None-Match`.

pub mod bulk;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod patch;
pub mod path;
pub mod projection;
pub mod resource;
pub mod schema;
pub mod sort;
pub mod version;

pub use error::{ScimError, ScimType};
