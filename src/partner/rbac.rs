//! The model of RBAC sites, the partner's "User and Role Management API" (section 4 of
//! `partner-api.md`): users addressed by opaque ids holding a list of role ids, and roles.
//! Independent of the wire shape, like [`PartnerUser`](super::PartnerUser).

use serde::{Deserialize, Serialize};

/// The role every user of an RBAC site holds; it cannot be taken away.
pub const EVERYONE_ROLE: &str = "Everyone";
/// The role that grants site administrator rights on an RBAC site.
pub const ADMIN_ROLE: &str = "Admin";
/// The default roles of a new RBAC site, as the vendor's UI names them. They cannot be renamed
/// or deleted.
pub const DEFAULT_ROLES: [&str; 5] = [
    ADMIN_ROLE,
    EVERYONE_ROLE,
    "Analyst",
    "Business User",
    "Read",
];

/// A user of an RBAC site (`UserV2` of the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerUserV2 {
    /// Opaque; never assume its format.
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Role ids.
    pub roles: Vec<String>,
}

/// A role of an RBAC site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerRole {
    /// Opaque; never assume its format.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Type-wide grants.
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    /// Grants on one object.
    #[serde(default)]
    pub permissions: Vec<ObjectPermission>,
}

/// A grant on every object of a type: `{"object_type": "Dashboard", "permissions": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privilege {
    pub object_type: String,
    pub permissions: Vec<String>,
}

/// A grant on one object: `{"object_type": "Dashboard", "object_id": "...", "permissions": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPermission {
    pub object_type: String,
    pub object_id: String,
    pub permissions: Vec<String>,
}
