//! The schema model (RFC 7643 sections 2, 4, 7 and 8.7): attribute definitions with every
//! characteristic, for core User, core Group and the enterprise User extension; the common
//! attributes `id`, `externalId`, `meta`; resource types; attribute references
//! (`[urn:]name[.sub]`) resolved case-insensitively; and value checks by attribute type, with
//! the shapes and dialects the IdPs send (booleans as strings, `null` and `[]` as unassigned,
//! single values for multi-valued attributes, `manager` as a bare id) and no control characters
//! in any string.

mod attr_ref;
mod builtin;
mod coerce;
mod text;

use super::error::ScimError;

pub use attr_ref::{is_attr_name, AttrRef, Resolved};
pub use builtin::{
    ALL_RESOURCE_TYPES, ALL_SCHEMAS, COMMON_ATTRIBUTES, ENTERPRISE_USER, GROUP, GROUP_RESOURCE,
    USER, USER_RESOURCE,
};
pub use coerce::{coerce, coerce_at, coerce_single, coerce_single_at, kind};
pub use text::{check_key, check_text, check_text_deep, is_forbidden_char};
#[cfg(test)]
pub(crate) use text::{multi_line, only_line_breaks};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// RFC 7643 section 2.3 data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition with every characteristic of RFC 7643 section 2.2 / 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttributeDef],
}

impl AttributeDef {
    /// A single-valued, optional, case-insensitive, readWrite, default-returned attribute.
    pub const fn new(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Self {
            name,
            ty,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
        }
    }
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::String, description)
    }
    pub const fn boolean(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::Boolean, description)
    }
    pub const fn reference(
        name: &'static str,
        types: &'static [&'static str],
        description: &'static str,
    ) -> Self {
        let mut a = Self::new(name, AttrType::Reference, description);
        a.reference_types = types;
        a
    }
    pub const fn complex(
        name: &'static str,
        subs: &'static [AttributeDef],
        description: &'static str,
    ) -> Self {
        let mut a = Self::new(name, AttrType::Complex, description);
        a.sub_attributes = subs;
        a
    }
    pub const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    pub const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    pub const fn read_only(self) -> Self {
        self.mutability(Mutability::ReadOnly)
    }
    pub const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    pub const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    pub const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }

    /// A sub-attribute by name, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// True when strings of this attribute compare case-sensitively.
    pub fn is_case_exact(&self) -> bool {
        self.case_exact
    }
}

/// A schema: a URN and its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    /// An attribute by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Resource types

/// A resource type: a core schema plus extensions, at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    pub id: &'static str,
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static SchemaDef,
    /// Extension schemas (none is required).
    pub extensions: &'static [&'static SchemaDef],
}

impl ResourceType {
    /// The extension schema with this URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// True when `urn` is the core schema or one of the extensions.
    pub fn knows_schema(&self, urn: &str) -> bool {
        self.schema.id.eq_ignore_ascii_case(urn) || self.extension(urn).is_some()
    }

    /// A top-level attribute of the core schema or a common attribute.
    pub fn core_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.schema.attribute(name).or_else(|| {
            COMMON_ATTRIBUTES
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(name))
        })
    }

    /// Resolves an attribute reference against this resource type.
    pub fn resolve(&self, r: &AttrRef) -> Result<Resolved, ScimError> {
        let (extension, attr) = match &r.urn {
            None => match self.core_attribute(&r.name) {
                Some(a) => (None, a),
                None => {
                    // An extension's attribute may be named without its URN when no core
                    // attribute has that name (Entra and Okta both do it for `manager` etc.).
                    let found = self
                        .extensions
                        .iter()
                        .find_map(|s| s.attribute(&r.name).map(|a| (s.id, a)));
                    match found {
                        Some((urn, a)) => (Some(urn), a),
                        None => {
                            return Err(ScimError::invalid_path(format!(
                                "unknown attribute '{}' for resource type {}",
                                r.name, self.name
                            )))
                        }
                    }
                }
            },
            Some(urn) if self.schema.id.eq_ignore_ascii_case(urn) => {
                match self.core_attribute(&r.name) {
                    Some(a) => (None, a),
                    None => {
                        return Err(ScimError::invalid_path(format!(
                            "unknown attribute '{}' in schema {}",
                            r.name, self.schema.id
                        )))
                    }
                }
            }
            Some(urn) => match self.extension(urn) {
                Some(s) => match s.attribute(&r.name) {
                    Some(a) => (Some(s.id), a),
                    None => {
                        return Err(ScimError::invalid_path(format!(
                            "unknown attribute '{}' in schema {}",
                            r.name, s.id
                        )))
                    }
                },
                None => {
                    return Err(ScimError::invalid_path(format!(
                        "unknown schema '{urn}' for resource type {}",
                        self.name
                    )))
                }
            },
        };
        let sub = match &r.sub {
            None => None,
            Some(s) => match attr.sub(s) {
                Some(sa) => Some(sa),
                None => {
                    return Err(ScimError::invalid_path(format!(
                        "unknown sub-attribute '{s}' of '{}'",
                        attr.name
                    )))
                }
            },
        };
        Ok(Resolved {
            extension,
            attr,
            sub,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
