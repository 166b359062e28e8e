//! The SCIM error (RFC 7644 section 3.12): an HTTP status, an optional `scimType` and a detail
//! that is never empty. Every failure of the protocol core is one of these; the HTTP layer writes
//! it as `{"schemas":[Error URN],"status":"400","scimType":...,"detail":...}`.

use serde_json::{json, Value};

use super::schema::ERROR_SCHEMA;

/// The `scimType` values of RFC 7644 table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// The status RFC 7644 pairs with this type (409 for `uniqueness`, else 400).
    pub fn status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            _ => 400,
        }
    }
}

/// A SCIM error: status, optional `scimType`, human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", scim_type.map(ScimType::as_str).unwrap_or("error"))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    /// An error with a `scimType`; the status is the one the RFC pairs with it.
    pub fn typed(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(scim_type.status(), Some(scim_type), detail)
    }

    /// Any status, any type.
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.trim().is_empty() {
            detail = default_detail(status).to_owned();
        }
        Self {
            status,
            scim_type,
            detail,
        }
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidFilter, detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidPath, detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidValue, detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidSyntax, detail)
    }
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::NoTarget, detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::Mutability, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::Uniqueness, detail)
    }
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::TooMany, detail)
    }
    pub fn invalid_vers(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidVers, detail)
    }
    /// 400 without a `scimType`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, None, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, None, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, None, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    /// 412: the `If-Match` version is not the current one.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(412, None, detail)
    }
    /// 413: a body or a bulk request over the advertised limits.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(413, None, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, None, detail)
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(501, None, detail)
    }

    /// The error body (status as a string, as RFC 7644 section 3.12 shows it).
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), Value::String(t.as_str().into()));
        }
        body
    }
}

fn default_detail(status: u16) -> &'static str {
    match status {
        400 => "The request is not valid.",
        401 => "Authentication is required.",
        403 => "The operation is not permitted.",
        404 => "The resource was not found.",
        409 => "The resource conflicts with an existing one.",
        412 => "The resource has changed since the version given.",
        413 => "The request is too large.",
        429 => "Too many requests; retry later.",
        501 => "Not implemented.",
        503 => "The service is unavailable; retry later.",
        _ => "The request failed.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_string_status_and_scim_type() {
        let e = ScimError::invalid_filter("unexpected token at 5");
        let b = e.to_body();
        assert_eq!(b["status"], "400");
        assert_eq!(b["scimType"], "invalidFilter");
        assert_eq!(b["schemas"][0], ERROR_SCHEMA);
    }

    #[test]
    fn detail_is_never_empty() {
        assert!(!ScimError::not_found("").detail.is_empty());
    }

    #[test]
    fn uniqueness_maps_to_409() {
        assert_eq!(ScimError::uniqueness("taken").status, 409);
    }
}
