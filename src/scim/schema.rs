//! The schema model (RFC 7643 sections 2, 4, 7 and 8.7): attribute definitions with every
//! characteristic, for core User, core Group and the enterprise User extension; the common
//! attributes `id`, `externalId`, `meta`; resource types; attribute references
//! (`[urn:]name[.sub]`) resolved case-insensitively; and value checks by attribute type, with
//! the shapes and dialects the IdPs send (booleans as strings, `null` and `[]` as unassigned,
//! single values for multi-valued attributes, `manager` as a bare id) and no control characters
//! in any string.

use serde_json::{Map, Value};

use super::error::ScimError;

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
// Common attributes (RFC 7643 section 3.1)

const META_SUBS: &[AttributeDef] = &[
    AttributeDef::string(
        "resourceType",
        "The name of the resource type of the resource.",
    )
    .case_exact()
    .read_only(),
    AttributeDef::new(
        "created",
        AttrType::DateTime,
        "When the resource was added.",
    )
    .read_only(),
    AttributeDef::new(
        "lastModified",
        AttrType::DateTime,
        "When the resource was last changed.",
    )
    .read_only(),
    AttributeDef::reference("location", &["uri"], "The URI of the resource.")
        .case_exact()
        .read_only(),
    AttributeDef::string("version", "The version (weak ETag) of the resource.")
        .case_exact()
        .read_only(),
];

/// `id`, `externalId` and `meta`, which every resource has.
pub const COMMON_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::string("id", "Unique identifier assigned by the service provider.")
        .case_exact()
        .read_only()
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
    AttributeDef::string(
        "externalId",
        "Identifier assigned by the provisioning client.",
    )
    .case_exact(),
    AttributeDef::complex("meta", META_SUBS, "Resource metadata.").read_only(),
];

// ---------------------------------------------------------------------------------------------
// Core User (RFC 7643 sections 4.1 and 8.7.1)

const NAME_SUBS: &[AttributeDef] = &[
    AttributeDef::string("formatted", "The full name, formatted for display."),
    AttributeDef::string("familyName", "The family name."),
    AttributeDef::string("givenName", "The given name."),
    AttributeDef::string("middleName", "The middle name(s)."),
    AttributeDef::string("honorificPrefix", "The honorific prefix (Ms., Dr.)."),
    AttributeDef::string("honorificSuffix", "The honorific suffix (III)."),
];

const fn multi_subs_value(
    value_type: AttrType,
    types: &'static [&'static str],
) -> [AttributeDef; 4] {
    [
        AttributeDef::new("value", value_type, "The value."),
        AttributeDef::string("display", "A human-readable name, for display only."),
        AttributeDef::string("type", "A label for the function of the value.").canonical(types),
        AttributeDef::boolean("primary", "Whether this is the primary value."),
    ]
}

const EMAIL_SUBS: &[AttributeDef] = &multi_subs_value(AttrType::String, &["work", "home", "other"]);
const PHONE_SUBS: &[AttributeDef] = &multi_subs_value(
    AttrType::String,
    &["work", "home", "mobile", "fax", "pager", "other"],
);
const IM_SUBS: &[AttributeDef] = &multi_subs_value(
    AttrType::String,
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
);
const PHOTO_SUBS: &[AttributeDef] = &[
    AttributeDef::reference("value", &["external"], "The URL of a photo."),
    AttributeDef::string("display", "A human-readable name, for display only."),
    AttributeDef::string("type", "A label for the function of the value.")
        .canonical(&["photo", "thumbnail"]),
    AttributeDef::boolean("primary", "Whether this is the primary value."),
];
const ADDRESS_SUBS: &[AttributeDef] = &[
    AttributeDef::string(
        "formatted",
        "The full mailing address, formatted for display.",
    ),
    AttributeDef::string("streetAddress", "The street address."),
    AttributeDef::string("locality", "The city or locality."),
    AttributeDef::string("region", "The state or region."),
    AttributeDef::string("postalCode", "The zip code or postal code."),
    AttributeDef::string("country", "The country name (ISO 3166-1 alpha-2)."),
    AttributeDef::string("type", "A label for the function of the address.")
        .canonical(&["work", "home", "other"]),
    AttributeDef::boolean("primary", "Whether this is the primary address."),
];
const USER_GROUP_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the group.").read_only(),
    AttributeDef::reference("$ref", &["User", "Group"], "The URI of the group.").read_only(),
    AttributeDef::string("display", "The group's displayName.").read_only(),
    AttributeDef::string("type", "Direct or indirect membership.")
        .canonical(&["direct", "indirect"])
        .read_only(),
];
const PLAIN_MULTI_SUBS: &[AttributeDef] = &multi_subs_value(AttrType::String, &[]);
const CERT_SUBS: &[AttributeDef] = &multi_subs_value(AttrType::Binary, &[]);

const USER_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::string(
        "userName",
        "Unique identifier for the user, used to sign in.",
    )
    .required()
    .unique(Uniqueness::Server),
    AttributeDef::complex("name", NAME_SUBS, "The components of the user's name."),
    AttributeDef::string("displayName", "The name of the user, suitable for display."),
    AttributeDef::string("nickName", "The casual way to address the user."),
    AttributeDef::reference(
        "profileUrl",
        &["external"],
        "A URI of the user's online profile.",
    ),
    AttributeDef::string("title", "The user's title."),
    AttributeDef::string(
        "userType",
        "The relationship between the organization and the user.",
    ),
    AttributeDef::string(
        "preferredLanguage",
        "The user's preferred written or spoken language.",
    ),
    AttributeDef::string("locale", "The user's default location, for localization."),
    AttributeDef::string("timezone", "The user's time zone (IANA)."),
    AttributeDef::boolean("active", "The user's administrative status."),
    AttributeDef::string(
        "password",
        "The user's clear text password; never returned.",
    )
    .mutability(Mutability::WriteOnly)
    .returned(Returned::Never),
    AttributeDef::complex("emails", EMAIL_SUBS, "Email addresses for the user.").multi(),
    AttributeDef::complex("phoneNumbers", PHONE_SUBS, "Phone numbers for the user.").multi(),
    AttributeDef::complex("ims", IM_SUBS, "Instant messaging addresses.").multi(),
    AttributeDef::complex("photos", PHOTO_SUBS, "URLs of photos of the user.").multi(),
    AttributeDef::complex("addresses", ADDRESS_SUBS, "Physical mailing addresses.").multi(),
    AttributeDef::complex("groups", USER_GROUP_SUBS, "The groups the user belongs to.")
        .multi()
        .read_only(),
    AttributeDef::complex(
        "entitlements",
        PLAIN_MULTI_SUBS,
        "Entitlements of the user.",
    )
    .multi(),
    AttributeDef::complex("roles", PLAIN_MULTI_SUBS, "Roles of the user.").multi(),
    AttributeDef::complex(
        "x509Certificates",
        CERT_SUBS,
        "X.509 certificates of the user.",
    )
    .multi(),
];

pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

// ---------------------------------------------------------------------------------------------
// Enterprise User extension (RFC 7643 section 4.3)

const MANAGER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the user's manager.").case_exact(),
    AttributeDef::reference("$ref", &["User"], "The URI of the manager."),
    AttributeDef::string("displayName", "The displayName of the manager.").read_only(),
];

const ENTERPRISE_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::string(
        "employeeNumber",
        "A string identifier of the user in the organization.",
    ),
    AttributeDef::string("costCenter", "The name of a cost center."),
    AttributeDef::string("organization", "The name of an organization."),
    AttributeDef::string("division", "The name of a division."),
    AttributeDef::string("department", "The name of a department."),
    AttributeDef::complex("manager", MANAGER_SUBS, "The user's manager."),
];

pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRIBUTES,
};

// ---------------------------------------------------------------------------------------------
// Core Group (RFC 7643 sections 4.2 and 8.7.1)

const MEMBER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the member.")
        .case_exact()
        .mutability(Mutability::Immutable),
    AttributeDef::reference("$ref", &["User", "Group"], "The URI of the member.")
        .mutability(Mutability::Immutable),
    AttributeDef::string("display", "The member's display name.").read_only(),
    AttributeDef::string("type", "The type of the member.")
        .canonical(&["User", "Group"])
        .mutability(Mutability::Immutable),
];

const GROUP_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::string("displayName", "A human-readable name for the group.")
        .required()
        .unique(Uniqueness::Server),
    AttributeDef::complex("members", MEMBER_SUBS, "A list of members of the group.").multi(),
];

pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

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

pub static USER_RESOURCE: ResourceType = ResourceType {
    id: "User",
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: &USER,
    extensions: &[&ENTERPRISE_USER],
};

pub static GROUP_RESOURCE: ResourceType = ResourceType {
    id: "Group",
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    schema: &GROUP,
    extensions: &[],
};

/// All schemas this server knows, for `/Schemas`.
pub static ALL_SCHEMAS: [&SchemaDef; 3] = [&USER, &GROUP, &ENTERPRISE_USER];

/// All resource types, for `/ResourceTypes`.
pub static ALL_RESOURCE_TYPES: [&ResourceType; 2] = [&USER_RESOURCE, &GROUP_RESOURCE];

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

/// An attribute reference as written in `attributes`, `sortBy`, filters and PATCH paths:
/// `[urn:...:]name[.sub]`. Names keep the spelling given; resolution is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrRef {
    /// The schema URN, when the reference was qualified.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrRef {
    /// Parses `[urn:...:]name[.sub]`. The URN is split off at the last `:` (attribute names
    /// never contain one; URNs may contain `.`, as in `2.0`). Known schema URNs are matched
    /// first, so a reference that is exactly an extension URN yields `name == ""`.
    pub fn parse(s: &str) -> Result<AttrRef, ScimError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ScimError::invalid_path("empty attribute name"));
        }
        let (urn, rest) =
            if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && s.len() > 4 {
                if let Some(schema) = ALL_SCHEMAS.iter().find(|sc| {
                    s.get(..sc.id.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(sc.id))
                }) {
                    let rest = &s[schema.id.len()..];
                    if rest.is_empty() {
                        return Ok(AttrRef {
                            urn: Some(schema.id.to_owned()),
                            name: String::new(),
                            sub: None,
                        });
                    }
                    match rest.strip_prefix(':') {
                        Some(r) => (Some(schema.id.to_owned()), r),
                        None => match s.rfind(':') {
                            Some(i) => (Some(s[..i].to_owned()), &s[i + 1..]),
                            None => (None, s),
                        },
                    }
                } else {
                    match s.rfind(':') {
                        Some(i) => (Some(s[..i].to_owned()), &s[i + 1..]),
                        None => (None, s),
                    }
                }
            } else {
                (None, s)
            };
        let (name, sub) = match rest.split_once('.') {
            Some((n, sub)) => (n, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(name) || sub.is_some_and(|x| !is_attr_name(x)) {
            return Err(ScimError::invalid_path(format!(
                "'{s}' is not a valid attribute name"
            )));
        }
        Ok(AttrRef {
            urn,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for AttrRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.urn {
            f.write_str(u)?;
            if !self.name.is_empty() {
                f.write_str(":")?;
            }
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// RFC 7644 ATTRNAME: ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; plus `$ref`.
pub fn is_attr_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An attribute reference resolved against a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The extension URN whose object holds the attribute; `None` for core and common ones.
    pub extension: Option<&'static str>,
    pub attr: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl Resolved {
    /// The definition the reference ends at (the sub-attribute when there is one).
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
}

// ---------------------------------------------------------------------------------------------
// Coercion and value checks

/// True for a character no SCIM value may hold: every Unicode control character (C0
/// U+0000-U+001F, which includes TAB, LF, CR and NUL; DEL U+007F; C1 U+0080-U+009F) and the
/// line and paragraph separators U+2028 and U+2029.
///
/// Why all of them, everywhere, TAB included: a value the bridge accepts is stored, echoed to
/// every client that reads it, written to logs and the audit log, and parts of it travel to the
/// partner in HTTP headers and bodies. Line breaks split log lines and headers, NUL truncates
/// strings in C libraries and PostgreSQL text, ESC and C1 drive terminals, TAB is a field
/// separator in every export, and U+2028/2029 end lines in JavaScript and some log viewers. No
/// attribute of User, Group or the enterprise extension needs any of them: names, emails and
/// ids are one line. The one exception is the postal address's free text
/// (`addresses.formatted`, `addresses.streetAddress`), which RFC 7643's example user and
/// directories write over several lines: LF and CR are kept there ([`check_text`]). Other invisible characters (bidirectional marks and overrides, zero-width
/// joiners) are part of real names in right-to-left scripts and emoji, and are kept.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Refuses a string that holds a [forbidden character](is_forbidden_char): 400
/// `invalidValue` naming `at` (the attribute path) and the code point, never the value.
pub fn check_text(at: &str, s: &str) -> Result<(), ScimError> {
    let lines = multi_line(at);
    match s
        .chars()
        .find(|&c| is_forbidden_char(c) && !(lines && (c == '\n' || c == '\r')))
    {
        None => Ok(()),
        Some(c) => Err(forbidden_char_error(at, c)),
    }
}

/// Whether `s` is refused nowhere but outside the postal address's free text (its only
/// forbidden characters are line breaks).
#[cfg(test)]
pub(crate) fn only_line_breaks(s: &str) -> bool {
    s.chars()
        .filter(|&c| is_forbidden_char(c))
        .all(|c| c == '\n' || c == '\r')
}

/// The postal address's free text, which RFC 7643 (section 4.1.2 and its example user in
/// section 8.2) writes over several lines and directories hold that way: line breaks (LF, CR)
/// are kept there, and only there. None of it reaches the partner.
pub(crate) fn multi_line(at: &str) -> bool {
    let at = at.to_ascii_lowercase();
    at.ends_with("addresses.formatted") || at.ends_with("addresses.streetaddress")
}

fn forbidden_char_error(at: &str, c: char) -> ScimError {
    ScimError::invalid_value(format!(
        "'{at}' contains the control character U+{:04X}; no SCIM value may contain control \
         characters (U+0000-U+001F such as TAB, LF, CR and NUL, U+007F-U+009F) or the line \
         separators U+2028 and U+2029",
        u32::from(c)
    ))
}

/// [`check_text`] for every string and every object key inside `v`, at any depth: for values
/// kept as sent without a schema (unknown sub-attributes, unknown attributes of an extension,
/// objects under unknown extension URNs). Their types are not checked: the schema says nothing
/// about them.
pub fn check_text_deep(at: &str, v: &Value) -> Result<(), ScimError> {
    match v {
        Value::String(s) => check_text(at, s),
        Value::Array(items) => items.iter().try_for_each(|i| check_text_deep(at, i)),
        Value::Object(o) => {
            for (k, child) in o {
                check_key(at, k)?;
                check_text_deep(&format!("{at}.{k}"), child)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Refuses an attribute name (an object key) with a forbidden character; the detail names the
/// object it is in, not the key, which would carry the character into the error.
pub fn check_key(within: &str, key: &str) -> Result<(), ScimError> {
    match key.chars().find(|&c| is_forbidden_char(c)) {
        None => Ok(()),
        Some(c) => Err(ScimError::invalid_value(format!(
            "an attribute name in '{within}' contains the control character U+{:04X}",
            u32::from(c)
        ))),
    }
}

/// Brings a value sent by a client into the canonical shape for `def`, checking it against the
/// attribute's type; see [`coerce_at`]. Errors name `def.name`.
pub fn coerce(def: &AttributeDef, value: Value) -> Result<Option<Value>, ScimError> {
    coerce_at(def, value, def.name)
}

/// Brings a value sent by a client into the canonical shape for `def`; `at` is the attribute's
/// path (`emails`, `name.givenName`, `urn:...:User:manager`), which errors name.
///
/// Shapes (what RFC 7643 leaves open and the IdPs use):
/// - `null`, `[]`, `{}` (after cleaning) mean unassigned: `Ok(None)`;
/// - a multi-valued attribute accepts one value for a one-element array;
/// - a single-valued complex attribute with a `value` sub-attribute accepts a bare string or a
///   one-element array (`manager` as Entra and Okta send it);
/// - sub-attribute names of complex values take their canonical spelling; unknown ones are kept
///   as sent (their text is checked, not their type).
///
/// Types are checked, not converted (RFC 7643 section 2.3), with one exception the IdPs need:
/// - a boolean accepts `true`/`false` in any case as a string (Entra sends `"False"`);
/// - a string, reference or binary takes only a JSON string: a number or boolean is 400
///   `invalidValue` (`"externalId": 1e40` would otherwise be stored as `"1e+40"`);
/// - an integer takes only a JSON integer, a decimal only a JSON number;
/// - a dateTime takes only an RFC 3339 string;
/// - a complex value takes only an object (apart from the bare `manager` id above): a string
///   or number inside `emails` or `members` is 400;
/// - no string anywhere may hold a [forbidden character](is_forbidden_char).
pub fn coerce_at(def: &AttributeDef, value: Value, at: &str) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items = match value {
            Value::Null => return Ok(None),
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = coerce_single_at(def, item, at)? {
                out.push(v);
            }
        }
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    let value = match value {
        Value::Array(mut items) if def.ty == AttrType::Complex || items.len() <= 1 => {
            match items.len() {
                0 => return Ok(None),
                1 => items.pop().unwrap_or(Value::Null),
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "'{at}' is single-valued but an array of {} values was given",
                        items.len()
                    )))
                }
            }
        }
        Value::Array(_) => {
            return Err(ScimError::invalid_value(format!(
                "'{at}' is single-valued but an array was given"
            )))
        }
        other => other,
    };
    coerce_single_at(def, value, at)
}

/// Coerces one value (an element, for multi-valued attributes); errors name `def.name`.
pub fn coerce_single(def: &AttributeDef, value: Value) -> Result<Option<Value>, ScimError> {
    coerce_single_at(def, value, def.name)
}

/// Coerces one value (an element, for multi-valued attributes) at path `at`; see [`coerce_at`].
pub fn coerce_single_at(
    def: &AttributeDef,
    value: Value,
    at: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    let wrong_type = |what: &str, v: &Value| {
        ScimError::invalid_value(format!("'{at}' must be {what}, not {}", kind(v)))
    };
    match def.ty {
        AttrType::Complex => {
            let obj = match value {
                Value::Object(o) => o,
                // `manager` as a bare id (Entra, Okta): the only scalar a complex attribute
                // takes, and only where one value is meant.
                Value::String(s) if !def.multi_valued && def.sub("value").is_some() => {
                    let mut o = Map::new();
                    o.insert("value".into(), Value::String(s));
                    o
                }
                other => {
                    let what = if def.multi_valued {
                        "an array of objects (or one object)"
                    } else {
                        "an object"
                    };
                    return Err(wrong_type(what, &other));
                }
            };
            let mut out = Map::new();
            for (k, v) in obj {
                match def.sub(&k) {
                    Some(sd) => {
                        if let Some(cv) = coerce_at(sd, v, &format!("{at}.{}", sd.name))? {
                            out.insert(sd.name.to_owned(), cv);
                        }
                    }
                    None => {
                        check_key(at, &k)?;
                        check_text_deep(&format!("{at}.{k}"), &v)?;
                        if !v.is_null() {
                            out.insert(k, v);
                        }
                    }
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
        AttrType::Boolean => match value {
            Value::Bool(b) => Ok(Some(Value::Bool(b))),
            // Entra's dialect: booleans as strings ("True", "False").
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => {
                Ok(Some(Value::Bool(true)))
            }
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => {
                Ok(Some(Value::Bool(false)))
            }
            Value::String(_) => Err(ScimError::invalid_value(format!(
                "'{at}' must be a boolean (true or false)"
            ))),
            other => Err(wrong_type("a boolean", &other)),
        },
        AttrType::Integer => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(value)),
            other => Err(wrong_type("an integer", other)),
        },
        AttrType::Decimal => match &value {
            Value::Number(_) => Ok(Some(value)),
            other => Err(wrong_type("a decimal number", other)),
        },
        AttrType::DateTime => match value {
            Value::String(s) => {
                if time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
                {
                    Ok(Some(Value::String(s)))
                } else {
                    Err(ScimError::invalid_value(format!(
                        "'{at}' must be an RFC 3339 dateTime"
                    )))
                }
            }
            other => Err(wrong_type("a dateTime string", &other)),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            Value::String(s) => {
                check_text(at, &s)?;
                Ok(Some(Value::String(s)))
            }
            other => Err(wrong_type("a string", &other)),
        },
    }
}

/// A word for a JSON value's kind, for error details.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scim::ScimType;
    use serde_json::json;

    #[test]
    fn attr_ref_splits_urn_at_known_schema() {
        let r =
            AttrRef::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(r.urn.as_deref(), Some(USER_SCHEMA));
        assert_eq!(r.name, "name");
        assert_eq!(r.sub.as_deref(), Some("givenName"));
        let r = AttrRef::parse(ENTERPRISE_USER_SCHEMA).unwrap();
        assert_eq!(r.name, "");
        let r = AttrRef::parse(&format!("{ENTERPRISE_USER_SCHEMA}:manager")).unwrap();
        assert_eq!(r.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(r.name, "manager");
    }

    #[test]
    fn resolve_is_case_insensitive_and_finds_extension_attributes_unqualified() {
        let r = USER_RESOURCE
            .resolve(&AttrRef::parse("EMAILS.VALUE").unwrap())
            .unwrap();
        assert_eq!(r.attr.name, "emails");
        assert_eq!(r.leaf().name, "value");
        let r = USER_RESOURCE
            .resolve(&AttrRef::parse("manager").unwrap())
            .unwrap();
        assert_eq!(r.extension, Some(ENTERPRISE_USER_SCHEMA));
        assert!(USER_RESOURCE
            .resolve(&AttrRef::parse("nope").unwrap())
            .is_err());
    }

    #[test]
    fn coerce_accepts_boolean_strings() {
        let active = USER.attribute("active").unwrap();
        assert_eq!(coerce(active, json!("False")).unwrap(), Some(json!(false)));
        assert_eq!(coerce(active, json!("TRUE")).unwrap(), Some(json!(true)));
        assert!(coerce(active, json!("maybe")).is_err());
    }

    #[test]
    fn coerce_treats_null_and_empty_as_unassigned() {
        let emails = USER.attribute("emails").unwrap();
        assert_eq!(coerce(emails, json!(null)).unwrap(), None);
        assert_eq!(coerce(emails, json!([])).unwrap(), None);
        assert_eq!(coerce(emails, json!([null])).unwrap(), None);
    }

    #[test]
    fn coerce_manager_shapes_all_become_objects() {
        let m = ENTERPRISE_USER.attribute("manager").unwrap();
        let want = Some(json!({"value": "42"}));
        assert_eq!(coerce(m, json!("42")).unwrap(), want);
        assert_eq!(coerce(m, json!(["42"])).unwrap(), want);
        assert_eq!(coerce(m, json!([{"value": "42"}])).unwrap(), want);
        assert_eq!(
            coerce(m, json!({"VALUE": "42", "$ref": null})).unwrap(),
            want
        );
    }

    /// Control characters of every kind this module refuses, with a name for messages.
    pub(crate) const FORBIDDEN: &[(&str, &str)] = &[
        ("CR LF", "a\r\nb"),
        ("LF", "a\nb"),
        ("CR", "a\rb"),
        ("NUL", "a\u{0}b"),
        ("TAB", "a\tb"),
        ("ESC", "a\u{1b}[31mb"),
        ("DEL", "a\u{7f}b"),
        ("NEL (C1)", "a\u{85}b"),
        ("CSI (C1)", "a\u{9b}b"),
        ("LINE SEPARATOR", "a\u{2028}b"),
        ("PARAGRAPH SEPARATOR", "a\u{2029}b"),
        ("a trailing LF", "a@x.io\n"),
    ];

    #[test]
    fn forbidden_characters_are_the_controls_and_the_unicode_line_separators() {
        for c in (0u32..0x20).chain(0x7f..0xa0).chain([0x2028, 0x2029]) {
            let c = char::from_u32(c).unwrap();
            assert!(is_forbidden_char(c), "U+{:04X}", u32::from(c));
        }
        // Text of real names stays: accents, emoji with joiners, right-to-left marks and
        // overrides, non-breaking and ideographic spaces.
        for ok in [
            "Zoë",
            "🦀👩🏽‍💻",
            "שלום \u{202E}עולם",
            "\u{200F}RTL\u{200E}",
            "a\u{a0}b",
            "a\u{3000}b",
        ] {
            assert!(check_text("x", ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn a_control_character_in_a_string_attribute_is_invalid_value_naming_the_path() {
        let emails = USER.attribute("emails").unwrap();
        let external_id = COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name == "externalId")
            .unwrap();
        for (what, bad) in FORBIDDEN {
            let e = coerce(emails, json!([{"value": bad, "type": "work"}])).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{what}");
            assert!(e.detail.contains("'emails.value'"), "{what}: {}", e.detail);
            // The detail names the code point, never the value.
            assert!(!e.detail.contains(bad), "{what}: {}", e.detail);
            let e = coerce_at(external_id, json!(bad), "externalId").unwrap_err();
            assert!(e.detail.contains("'externalId'"), "{what}: {}", e.detail);
            // Unknown sub-attributes are kept as sent, but not with control characters, in
            // their values or their names.
            let e = coerce(
                emails,
                json!([{"value": "a@x.io", "note": {"deep": [bad]}}]),
            )
            .unwrap_err();
            assert!(
                e.detail.contains("'emails.note.deep'"),
                "{what}: {}",
                e.detail
            );
            let e = coerce(emails, json!([{"value": "a@x.io", (*bad): 1}])).unwrap_err();
            assert!(e.detail.contains("'emails'"), "{what}: {}", e.detail);
        }
        // The manager's bare id is checked like the object form.
        let m = ENTERPRISE_USER.attribute("manager").unwrap();
        let e = coerce_at(m, json!("4\r\n2"), "manager").unwrap_err();
        assert!(e.detail.contains("'manager.value'"), "{}", e.detail);
    }

    #[test]
    fn string_attributes_take_only_strings() {
        let display = USER.attribute("displayName").unwrap();
        let emails = USER.attribute("emails").unwrap();
        let external_id = COMMON_ATTRIBUTES
            .iter()
            .find(|a| a.name == "externalId")
            .unwrap();
        for wrong in [
            json!(1e40),
            json!(42),
            json!(-1.5),
            json!(true),
            json!({"a": "b"}),
        ] {
            let e = coerce(external_id, wrong.clone()).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
            assert!(
                e.detail.contains("'externalId' must be a string"),
                "{}",
                e.detail
            );
            assert!(coerce(display, wrong.clone()).is_err(), "{wrong}");
            let e = coerce(emails, json!([{"value": wrong.clone()}])).unwrap_err();
            assert!(
                e.detail.contains("'emails.value' must be a string"),
                "{}",
                e.detail
            );
        }
        // An array for a single-valued string stays refused (apart from one element, a shape
        // the IdPs use for any single value).
        assert!(coerce(display, json!(["a", "b"])).is_err());
        assert!(coerce(display, json!([7])).is_err());
        assert_eq!(coerce(display, json!(["a"])).unwrap(), Some(json!("a")));
    }

    #[test]
    fn booleans_take_booleans_and_entra_strings_only() {
        let active = USER.attribute("active").unwrap();
        for ok in [json!(true), json!("True"), json!("false"), json!(" FALSE ")] {
            assert!(coerce(active, ok.clone()).is_ok(), "{ok}");
        }
        for wrong in [
            json!(1),
            json!(0),
            json!("1"),
            json!("yes"),
            json!({"v": true}),
        ] {
            let e = coerce(active, wrong.clone()).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
            assert!(
                e.detail.contains("'active' must be a boolean"),
                "{}",
                e.detail
            );
        }
        let emails = USER.attribute("emails").unwrap();
        let e = coerce(emails, json!([{"value": "a@x.io", "primary": 1}])).unwrap_err();
        assert!(e.detail.contains("'emails.primary'"), "{}", e.detail);
    }

    #[test]
    fn complex_attributes_refuse_scalars_except_the_bare_manager_id() {
        let emails = USER.attribute("emails").unwrap();
        let members = GROUP.attribute("members").unwrap();
        let name = USER.attribute("name").unwrap();
        for (def, wrong) in [
            (emails, json!("a@x.io")),
            (emails, json!(["a@x.io"])),
            (emails, json!([7])),
            (emails, json!([{"value": "a@x.io"}, "b@x.io"])),
            (members, json!(["2819c223"])),
            (members, json!(42)),
            (name, json!("Barbara Jensen")),
            (name, json!(true)),
        ] {
            let e = coerce(def, wrong.clone()).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
            assert!(
                e.detail.contains(&format!("'{}'", def.name)),
                "{}",
                e.detail
            );
        }
        // One object for a multi-valued attribute is still the one-element array.
        assert_eq!(
            coerce(emails, json!({"value": "a@x.io"})).unwrap(),
            Some(json!([{"value": "a@x.io"}]))
        );
        // The manager as a bare id is the IdPs' dialect; as a bare number it is not an id.
        let m = ENTERPRISE_USER.attribute("manager").unwrap();
        assert_eq!(
            coerce(m, json!("42")).unwrap(),
            Some(json!({"value": "42"}))
        );
        assert!(coerce(m, json!(42)).is_err());
    }

    #[test]
    fn numbers_are_not_coerced_from_strings() {
        const COUNT: AttributeDef = AttributeDef::new("count", AttrType::Integer, "");
        const RATIO: AttributeDef = AttributeDef::new("ratio", AttrType::Decimal, "");
        assert_eq!(coerce(&COUNT, json!(3)).unwrap(), Some(json!(3)));
        assert!(coerce(&COUNT, json!("3")).is_err());
        assert!(coerce(&COUNT, json!(3.5)).is_err());
        assert_eq!(coerce(&RATIO, json!(1e40)).unwrap(), Some(json!(1e40)));
        assert!(coerce(&RATIO, json!("0.5")).is_err());
    }
}
