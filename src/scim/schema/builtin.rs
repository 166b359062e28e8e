//! The schemas and resource types this server knows: the common attributes, core User, the
//! enterprise User extension and core Group, each with every characteristic of RFC 7643.

use super::{
    AttrType, AttributeDef, Mutability, ResourceType, Returned, SchemaDef, Uniqueness,
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA,
};

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
