//! The partner API (Periscope Data / Sisense for Cloud Data Teams "User and Group Management API").
//!
//! - [`wire`]: every vendor path, header and JSON field name, and the tolerant parsing of
//!   responses (section 3 of `partner-api.md`). A finding on a live site is a one-place fix there.
//! - [`client`]: the real HTTP client: pooled, rate-limited per site, retries with backoff and
//!   jitter honouring `Retry-After`, a circuit per site, explicit `test_mode` on every write.
//! - [`emulator`]: a faithful fake of the partner (section 2 of `partner-api.md`, and the RBAC
//!   sites of section 4) with fault injection, used by tests, benchmarks, the `partner-emulator`
//!   subcommand and sandbox mode.
//! - [`rbac`]: the model of RBAC sites (users v2 and roles).
//!
//! This module knows nothing of SCIM.

pub mod client;
pub mod emulator;
pub mod error;
pub mod patience;
pub mod rbac;
pub mod record;
pub mod wire;

pub use client::{
    CallEvent, CallObserver, CallOutcome, ClientOptions, GroupUpdate, NewGroup, NewUser,
    PartnerClient, SiteConnection, Sleeper, TokioSleeper, UserUpdate,
};
pub use error::{OrGone, PartnerError, PartnerErrorKind};
pub use rbac::{ObjectPermission, PartnerRole, PartnerUserV2, Privilege};

use serde::{Deserialize, Serialize};

/// The calls of the partner API: the ten of a v1 site (users and groups), then the ten of an RBAC
/// site (users v2 and roles). Used for call logs, counters, fault scripts, spans and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    ListUsers,
    GetUser,
    CreateUser,
    UpdateUser,
    DeleteUser,
    ListGroups,
    GetGroup,
    CreateGroup,
    UpdateGroup,
    DeleteGroup,
    ListUsersV2,
    GetUserV2,
    CreateUserV2,
    UpdateUserV2,
    DeleteUserV2,
    ListRoles,
    GetRole,
    CreateRole,
    UpdateRole,
    DeleteRole,
}

impl CallKind {
    /// Every call, in a fixed order.
    pub const ALL: [CallKind; 20] = [
        CallKind::ListUsers,
        CallKind::GetUser,
        CallKind::CreateUser,
        CallKind::UpdateUser,
        CallKind::DeleteUser,
        CallKind::ListGroups,
        CallKind::GetGroup,
        CallKind::CreateGroup,
        CallKind::UpdateGroup,
        CallKind::DeleteGroup,
        CallKind::ListUsersV2,
        CallKind::GetUserV2,
        CallKind::CreateUserV2,
        CallKind::UpdateUserV2,
        CallKind::DeleteUserV2,
        CallKind::ListRoles,
        CallKind::GetRole,
        CallKind::CreateRole,
        CallKind::UpdateRole,
        CallKind::DeleteRole,
    ];

    /// The snake_case name used in logs, metrics and the emulator's admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::ListUsers => "list_users",
            CallKind::GetUser => "get_user",
            CallKind::CreateUser => "create_user",
            CallKind::UpdateUser => "update_user",
            CallKind::DeleteUser => "delete_user",
            CallKind::ListGroups => "list_groups",
            CallKind::GetGroup => "get_group",
            CallKind::CreateGroup => "create_group",
            CallKind::UpdateGroup => "update_group",
            CallKind::DeleteGroup => "delete_group",
            CallKind::ListUsersV2 => "list_users_v2",
            CallKind::GetUserV2 => "get_user_v2",
            CallKind::CreateUserV2 => "create_user_v2",
            CallKind::UpdateUserV2 => "update_user_v2",
            CallKind::DeleteUserV2 => "delete_user_v2",
            CallKind::ListRoles => "list_roles",
            CallKind::GetRole => "get_role",
            CallKind::CreateRole => "create_role",
            CallKind::UpdateRole => "update_role",
            CallKind::DeleteRole => "delete_role",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<CallKind> {
        CallKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for calls that change state (they carry `test_mode`).
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            CallKind::ListUsers
                | CallKind::GetUser
                | CallKind::ListGroups
                | CallKind::GetGroup
                | CallKind::ListUsersV2
                | CallKind::GetUserV2
                | CallKind::ListRoles
                | CallKind::GetRole
        )
    }

    /// True for the calls that create, change or delete a user (of a v1 or an RBAC site).
    pub fn is_user_write(self) -> bool {
        matches!(
            self,
            CallKind::CreateUser
                | CallKind::UpdateUser
                | CallKind::DeleteUser
                | CallKind::CreateUserV2
                | CallKind::UpdateUserV2
                | CallKind::DeleteUserV2
        )
    }

    /// True for the calls of an RBAC site (users v2 and roles, section 4 of `partner-api.md`).
    pub fn is_rbac(self) -> bool {
        matches!(
            self,
            CallKind::ListUsersV2
                | CallKind::GetUserV2
                | CallKind::CreateUserV2
                | CallKind::UpdateUserV2
                | CallKind::DeleteUserV2
                | CallKind::ListRoles
                | CallKind::GetRole
                | CallKind::CreateRole
                | CallKind::UpdateRole
                | CallKind::DeleteRole
        )
    }
}

impl std::fmt::Display for CallKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group's access level. A user gets the highest level of any of their groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Access {
    #[serde(rename = "View")]
    View,
    #[serde(rename = "Discovery")]
    Discovery,
    #[serde(rename = "SQL")]
    Sql,
}

/// Accepts any casing, as the partner does.
impl<'de> Deserialize<'de> for Access {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Access::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown access level '{s}': expected SQL, Discovery or View"
            ))
        })
    }
}

impl Access {
    /// The canonical spelling the partner returns: `SQL`, `Discovery`, `View`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Sql => "SQL",
            Access::Discovery => "Discovery",
            Access::View => "View",
        }
    }

    /// Parses any casing of `SQL`, `Discovery`, `View`.
    pub fn parse(s: &str) -> Option<Access> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sql" => Some(Access::Sql),
            "discovery" => Some(Access::Discovery),
            "view" => Some(Access::View),
            _ => None,
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in group every user is in.
pub const ALL_USERS_GROUP: &str = "All Users";
/// The built-in group that grants admin rights.
pub const ADMINISTRATORS_GROUP: &str = "Administrators";

/// True when `name` is one of the partner's built-in groups, which cannot be deleted (names
/// match case-insensitively, as the partner matches them).
pub fn is_builtin_group(name: &str) -> bool {
    let name = name.trim();
    [ALL_USERS_GROUP, ADMINISTRATORS_GROUP]
        .iter()
        .any(|b| b.eq_ignore_ascii_case(name))
}

/// True when membership of the group named `name` grants site administrator rights
/// (`Administrators`): SCIM manages it only where a site sets `allow_admin_grant`.
pub fn is_privileged_group(name: &str) -> bool {
    ADMINISTRATORS_GROUP.eq_ignore_ascii_case(name.trim())
}

/// A partner user as the bridge sees it, independent of the wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Group names, as the partner spells them.
    pub groups: Vec<String>,
}

/// A partner group as the bridge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerGroup {
    pub name: String,
    pub access: Access,
}
