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

/// Which API a site speaks: v1 groups (the default) or roles (RBAC sites, section 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteApi {
    #[default]
    Groups,
    Roles,
}

impl std::str::FromStr for SiteApi {
    type Err = String;
    fn from_str(s: &str) -> Result<SiteApi, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "groups" => Ok(SiteApi::Groups),
            "roles" => Ok(SiteApi::Roles),
            other => Err(format!("`{other}` is not a site API: use groups or roles")),
        }
    }
}

impl SiteApi {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteApi::Groups => "groups",
            SiteApi::Roles => "roles",
        }
    }
}

/// What a role the bridge creates for a SCIM group grants: nothing by default, so a new group
/// never grants access by accident; the site's administrator gives the role its rights (in the
/// UI, or here for every new role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleTemplate {
    /// Put before [`MANAGED_ROLE_MARK`] in the role's description.
    pub description: String,
    pub privileges: Vec<Privilege>,
}

/// The text in the description of every role the bridge creates. The bridge renames and
/// deletes only roles that carry it: removing it from a role's description in the UI makes the
/// bridge treat the role as adopted (linked, never renamed or deleted).
pub const MANAGED_ROLE_MARK: &str = "(managed by scim-bridge)";

/// How an RBAC site maps SCIM groups onto roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSettings {
    /// SCIM displayName (any case) -> role name, for groups whose role has another name.
    pub role_map: std::collections::BTreeMap<String, String>,
    pub template: RoleTemplate,
    /// False: a group with no role of its name stays in SCIM without partner effect
    /// (unmapped) instead of getting a new role.
    pub create_roles: bool,
}

impl RoleSettings {
    /// The role a SCIM group (or a v1-style group name) maps to.
    pub fn role_name<'a>(&'a self, group: &'a str) -> &'a str {
        self.role_map
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(group.trim()))
            .map_or(group, |(_, v)| v.as_str())
    }

    /// The group name the bridge knows a role by: the displayName `role_map` maps onto it,
    /// else the role's own name.
    pub fn group_name<'a>(&'a self, role: &'a str) -> &'a str {
        self.role_map
            .iter()
            .find(|(_, v)| v.trim().eq_ignore_ascii_case(role.trim()))
            .map_or(role, |(k, _)| k.as_str())
    }

    /// True when `role_map` names the group `group`'s role.
    pub fn is_mapped_group(&self, group: &str) -> bool {
        self.role_map
            .keys()
            .any(|k| k.trim().eq_ignore_ascii_case(group.trim()))
    }

    /// True when `role` is a role `role_map` names (adopted by configuration).
    pub fn is_mapped_role(&self, role: &str) -> bool {
        self.role_map
            .values()
            .any(|v| v.trim().eq_ignore_ascii_case(role.trim()))
    }
}

/// True for the five default roles, which cannot be renamed or deleted.
pub fn is_builtin_role(name: &str) -> bool {
    DEFAULT_ROLES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name.trim()))
}
