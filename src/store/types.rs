//! The rows the store reads and writes, as the bridge sees them, and the raw records sqlx
//! decodes them from.

use serde_json::Value;

use super::error::Fail;

/// A SCIM User as stored. `resource` is the canonical SCIM JSON without `groups` (a user's
/// groups are derived from the memberships index).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub tenant: String,
    pub id: String,
    pub user_name: String,
    /// Case-exact.
    pub external_id: Option<String>,
    pub active: bool,
    /// The partner user this SCIM user maps to.
    pub partner_email: String,
    /// Every `emails[].value`, as given; indexed lowercased for `emails.value eq`.
    pub emails: Vec<String>,
    pub resource: Value,
    pub created_ms: i64,
    pub last_modified_ms: i64,
    pub version: i64,
}

/// A SCIM Group as stored. `resource` is the canonical SCIM JSON without `members`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub tenant: String,
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// The partner group name this SCIM group maps to.
    pub partner_name: String,
    /// The partner access level of the group, when the bridge sets one.
    pub access: Option<String>,
    pub resource: Value,
    pub created_ms: i64,
    pub last_modified_ms: i64,
    pub version: i64,
}

/// One equality term of an indexed filter (DESIGN.md section 3). A query takes the
/// conjunction of its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexTerm {
    /// Users and groups.
    Id(String),
    /// Users; case-insensitive.
    UserName(String),
    /// Users and groups; case-exact.
    ExternalId(String),
    /// Groups; case-insensitive.
    DisplayName(String),
    /// Users: `emails.value eq`; case-insensitive.
    EmailValue(String),
    /// Groups: `members.value eq`, the groups having this user as a member.
    MemberValue(String),
}

/// One membership write of a group (DESIGN.md section 4, step 1), done in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct MembershipChange<'a> {
    pub tenant: &'a str,
    /// The new group row and the version it must still have, when the write also changes the
    /// group itself (PUT, PATCH). `None`: only memberships change.
    pub group: Option<(&'a GroupRow, i64)>,
    pub group_id: &'a str,
    /// Users to add; ones already members are ignored.
    pub add: &'a [String],
    /// Users to remove; applied after `add`, so a user in both ends up removed.
    pub remove: &'a [String],
    /// Users to mark in the outbox although their membership does not change.
    pub also_mark: &'a [String],
    /// Every site of the tenant: each user is marked once per site.
    pub sites: &'a [String],
    pub now_ms: i64,
}

/// A (site, user) the store marked for the workers, with the generation written: the request
/// waits until a worker completed at least that generation (see `Store::outbox_pending`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboxMark {
    pub tenant: String,
    pub site: String,
    pub user_id: String,
    pub generation: i64,
}

/// A claimed outbox row: the (site, user) to bring in line, and how its earlier tries went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub tenant: String,
    pub site: String,
    pub user_id: String,
    /// The generation at claim time; completing succeeds only if no mark came since.
    pub generation: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The claim's fencing token: completing, failing, parking and renewing the row need it.
    pub token: String,
}

/// Outbox gauges for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct OutboxStats {
    /// Rows waiting (due or not, claimed or not).
    pub depth: u64,
    /// The earliest due time among them.
    pub oldest_due_ms: Option<i64>,
    /// Rows whose last try failed.
    pub failing: u64,
}

/// When the longest-waiting outbox rows were marked, for the age gauge and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxAges {
    /// The earliest mark time among all rows (`None`: the outbox is empty).
    pub oldest_marked_ms: Option<i64>,
    /// The earliest mark time among rows whose last try failed (`None`: nothing is failing).
    pub oldest_failing_marked_ms: Option<i64>,
}

/// One audit log line: who did what, when, with which outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub tenant: String,
    /// The credential's configured name, never the secret.
    pub credential: String,
    /// The client (address or user agent) as the HTTP layer records it.
    pub client: String,
    pub request_id: String,
    pub operation: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub status: u16,
    pub detail: Option<String>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub since_ms: Option<i64>,
    /// What the entries are about: a resource id, an email, a userName or a group's display
    /// name (case-insensitive; see [`Store::search_audit`](super::Store::search_audit)), or a
    /// resource type (`Users`, `user`, `Groups`, `Bulk`, any case).
    pub resource: Option<String>,
    /// Only entries of this resource type, in any case, singular or plural (`user` matches
    /// `Users`).
    pub resource_type: Option<String>,
    pub limit: u32,
}

impl AuditQuery {
    /// A resource type as the audit log stores it matches `wanted` when they are equal in
    /// any case, either of them with a plural `s` (`user`, `User`, `users` all match
    /// `Users`). The two spellings of `wanted` the store compares with, lowercased.
    pub fn type_spellings(wanted: &str) -> (String, String) {
        let singular = lc(wanted.trim());
        let singular = singular
            .strip_suffix('s')
            .filter(|s| !s.is_empty())
            .unwrap_or(&singular)
            .to_owned();
        let plural = format!("{singular}s");
        (singular, plural)
    }

    /// `since` as an RFC 3339 time (`2026-11-28T10:00:00Z`) or an age before `now_ms`
    /// (`90s`, `15m`, `2h`, `7d`), in milliseconds since the epoch.
    pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
        let t = text.trim();
        if let Ok(at) =
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        {
            return i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| "time out of range".to_owned());
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: i64 = n.parse().map_err(|_| {
            format!("'{t}' is neither an RFC 3339 time nor an age like 15m, 2h, 7d")
        })?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("'{t}': the unit must be s, m, h or d")),
        };
        Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
    }
}

/// An audit entry as the admin endpoint and `scim-bridge audit --json` show it: the time in
/// RFC 3339 and the partner calls as JSON.
pub fn audit_entry_json(e: &AuditEntry) -> serde_json::Value {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let detail = e
        .detail
        .as_deref()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| serde_json::Value::from(d)));
    serde_json::json!({
        "at": at,
        "tenant": e.tenant,
        "credential": e.credential,
        "client": e.client,
        "request_id": e.request_id,
        "operation": e.operation,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "status": e.status,
        "detail": detail,
    })
}

/// The columns of [`UserRecord`], in a literal so statements can be built with `concat!`.
macro_rules! user_columns {
    () => {
        "tenant, id, user_name, external_id, active, partner_email, emails, resource, \
         created_ms, last_modified_ms, version"
    };
}

/// The columns of [`GroupRecord`].
macro_rules! group_columns {
    () => {
        "tenant, id, display_name, external_id, partner_name, access, resource, created_ms, \
         last_modified_ms, version"
    };
    ($alias:literal) => {
        concat!(
            $alias,
            ".tenant, ",
            $alias,
            ".id, ",
            $alias,
            ".display_name, ",
            $alias,
            ".external_id, ",
            $alias,
            ".partner_name, ",
            $alias,
            ".access, ",
            $alias,
            ".resource, ",
            $alias,
            ".created_ms, ",
            $alias,
            ".last_modified_ms, ",
            $alias,
            ".version"
        )
    };
}

pub(super) use {group_columns, user_columns};

#[derive(sqlx::FromRow)]
pub(super) struct UserRecord {
    tenant: String,
    id: String,
    user_name: String,
    external_id: Option<String>,
    active: bool,
    partner_email: String,
    emails: String,
    resource: String,
    created_ms: i64,
    last_modified_ms: i64,
    version: i64,
}

impl TryFrom<UserRecord> for UserRow {
    type Error = Fail;

    fn try_from(r: UserRecord) -> Result<Self, Fail> {
        Ok(UserRow {
            tenant: r.tenant,
            id: r.id,
            user_name: r.user_name,
            external_id: r.external_id,
            active: r.active,
            partner_email: r.partner_email,
            emails: serde_json::from_str(&r.emails)?,
            resource: serde_json::from_str(&r.resource)?,
            created_ms: r.created_ms,
            last_modified_ms: r.last_modified_ms,
            version: r.version,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct GroupRecord {
    tenant: String,
    id: String,
    display_name: String,
    external_id: Option<String>,
    partner_name: String,
    access: Option<String>,
    resource: String,
    created_ms: i64,
    last_modified_ms: i64,
    version: i64,
}

/// A group row with the member it was found for.
#[derive(sqlx::FromRow)]
pub(super) struct MemberGroupRecord {
    pub(super) member_id: String,
    #[sqlx(flatten)]
    pub(super) group: GroupRecord,
}

impl TryFrom<GroupRecord> for GroupRow {
    type Error = Fail;

    fn try_from(r: GroupRecord) -> Result<Self, Fail> {
        Ok(GroupRow {
            tenant: r.tenant,
            id: r.id,
            display_name: r.display_name,
            external_id: r.external_id,
            partner_name: r.partner_name,
            access: r.access,
            resource: serde_json::from_str(&r.resource)?,
            created_ms: r.created_ms,
            last_modified_ms: r.last_modified_ms,
            version: r.version,
        })
    }
}

/// Converts decoded records into rows.
pub(super) fn rows<R, T>(records: Vec<R>) -> Result<Vec<T>, Fail>
where
    T: TryFrom<R, Error = Fail>,
{
    records.into_iter().map(T::try_from).collect()
}

/// `resource` as stored text, without the attribute the store derives (`groups` of a user,
/// `members` of a group), whatever the caller passed.
pub(super) fn resource_text(resource: &Value, derived: &str) -> Result<String, Fail> {
    match resource {
        Value::Object(map) if map.contains_key(derived) => {
            // Filtered rather than `remove`d, which would reorder the remaining keys.
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != derived)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(serde_json::to_string(&kept)?)
        }
        other => Ok(serde_json::to_string(other)?),
    }
}

/// Unicode lowercase, the key of every case-insensitive index.
pub(super) fn lc(s: &str) -> String {
    s.to_lowercase()
}
