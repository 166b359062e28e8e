//! The one error type of the partner client, [`PartnerError`], and how a partner answer is
//! classified (`partner-api.md` section 3, "Tolerance"): auth, not found, conflict, invalid,
//! transient (retried) or unavailable (rejected locally without a call).
//!
//! Nothing here ever holds the API key or the auth header: the messages come from the partner's
//! error body (with the key redacted by the client, in case a server echoes it) or from us.

use std::time::Duration;

use crate::partner::CallKind;

/// How a failed partner call is classified. Decides retries here and the SCIM answer upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerErrorKind {
    /// 401 or 403: wrong site key, API not enabled, or a forbidden change (built-in groups).
    /// Never retried; worth an alert.
    Auth,
    /// 404: the user or group does not exist.
    NotFound,
    /// 409, or a 400 whose message says the thing already exists or is taken.
    Conflict,
    /// Any other 4xx, a request we refused to send (bad header value, bad group name), or a
    /// 2xx body we could not understand. Not retried.
    Invalid,
    /// 429, 5xx, timeouts, connection errors, bodies cut short. Retried with backoff.
    Transient,
    /// Rejected locally before reaching the partner: the site's circuit is open, the call's
    /// deadline passed while waiting for a slot, or the local rate limit is saturated.
    Unavailable,
}

impl PartnerErrorKind {
    /// The one definition of "worth trying again later" for the bridge: the partner did not
    /// refuse the request itself, so a later try may succeed without anyone changing it (load,
    /// the site's circuit, or an operator fixing the API key). Writes failing so are kept and
    /// retried with backoff and answered 503 with `Retry-After`; the others (`NotFound`,
    /// `Conflict`, `Invalid`) are the partner's answer to this request. (Within one call the
    /// client retries only `Transient` failures at once: [`PartnerError::is_retryable`].)
    pub fn retry_later(self) -> bool {
        matches!(
            self,
            PartnerErrorKind::Transient | PartnerErrorKind::Unavailable | PartnerErrorKind::Auth
        )
    }

    /// A short lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerErrorKind::Auth => "auth",
            PartnerErrorKind::NotFound => "not_found",
            PartnerErrorKind::Conflict => "conflict",
            PartnerErrorKind::Invalid => "invalid",
            PartnerErrorKind::Transient => "transient",
            PartnerErrorKind::Unavailable => "unavailable",
        }
    }

    /// Classifies a non-2xx HTTP status. `says_exists` tells whether the partner's message says
    /// the thing already exists (see [`crate::partner::wire::message_says_exists`]).
    pub fn from_status(status: u16, says_exists: bool) -> PartnerErrorKind {
        match status {
            401 | 403 => PartnerErrorKind::Auth,
            404 => PartnerErrorKind::NotFound,
            409 => PartnerErrorKind::Conflict,
            400 if says_exists => PartnerErrorKind::Conflict,
            408 | 425 | 429 => PartnerErrorKind::Transient,
            500..=599 => PartnerErrorKind::Transient,
            _ => PartnerErrorKind::Invalid,
        }
    }
}

impl std::fmt::Display for PartnerErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed partner call, after any retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partner call {call} on site {site} failed: {kind}{}: {message} (after {attempts} attempt{})",
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
    if *attempts == 1 { "" } else { "s" })]
pub struct PartnerError {
    pub kind: PartnerErrorKind,
    pub call: CallKind,
    pub site: String,
    /// The HTTP status of the last attempt, when one came back.
    pub status: Option<u16>,
    /// The partner's error text (from `error`, `message` or `errors`, else the raw body,
    /// truncated), or our own description.
    pub message: String,
    /// How long the partner (429/503 `Retry-After`) or the open circuit asks callers to wait.
    pub retry_after: Option<Duration>,
    /// HTTP requests actually sent for this call (0 when rejected locally).
    pub attempts: u32,
}

impl PartnerError {
    /// An error raised before or without an HTTP answer.
    pub fn local(
        kind: PartnerErrorKind,
        call: CallKind,
        site: &str,
        message: impl Into<String>,
    ) -> PartnerError {
        PartnerError {
            kind,
            call,
            site: site.to_owned(),
            status: None,
            message: message.into(),
            retry_after: None,
            attempts: 0,
        }
    }

    /// True for errors the client retries within the same call (transient ones). `Unavailable`
    /// is not retried by the client itself: the caller answers 503 with `Retry-After` instead
    /// of queueing. Whether a failed write is kept for later is [`PartnerErrorKind::retry_later`].
    pub fn is_retryable(&self) -> bool {
        self.kind == PartnerErrorKind::Transient
    }

    /// True when the partner refused the bridge's API key itself (see [`status_refuses_key`]),
    /// not a change: nothing sent with this key can succeed until an operator fixes it.
    pub fn refuses_key(&self) -> bool {
        self.kind == PartnerErrorKind::Auth
            && self
                .status
                .is_some_and(|s| status_refuses_key(s, self.call))
    }
}

/// Whether an HTTP `status` answered to `call` refuses the site's API key: a 401 always; a 403
/// only to a read. A 403 to a write may refuse that one change (a built-in group or role, the
/// account that owns the key, a seat limit) and says nothing sure of the key: taking it as a
/// refused key would park every row of the site, leavers' removals included, over one bad
/// row. That row fails as any error does (retried, reported as failing), and a key refused in
/// earnest is found by the next read or credential check.
pub fn status_refuses_key(status: u16, call: CallKind) -> bool {
    match status {
        401 => true,
        403 => !call.is_write(),
        _ => false,
    }
}

/// A partner answer in which "not found" is an outcome, not a failure.
pub trait OrGone<T> {
    /// `Ok(None)` for a [`PartnerErrorKind::NotFound`]: the thing is not there (a delete's
    /// goal is reached; a rename or update has nothing to change).
    fn or_gone(self) -> Result<Option<T>, PartnerError>;
}

impl<T> OrGone<T> for Result<T, PartnerError> {
    fn or_gone(self) -> Result<Option<T>, PartnerError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An error and its sources on one line (reqwest's own message is often just "error sending
/// request"). Never contains header values: reqwest errors carry the URL at most.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_tolerance_section_says() {
        use PartnerErrorKind::*;
        assert_eq!(PartnerErrorKind::from_status(401, false), Auth);
        assert_eq!(PartnerErrorKind::from_status(403, false), Auth);
        assert_eq!(PartnerErrorKind::from_status(404, false), NotFound);
        assert_eq!(PartnerErrorKind::from_status(409, false), Conflict);
        assert_eq!(PartnerErrorKind::from_status(400, true), Conflict);
        assert_eq!(PartnerErrorKind::from_status(400, false), Invalid);
        assert_eq!(PartnerErrorKind::from_status(422, false), Invalid);
        assert_eq!(PartnerErrorKind::from_status(429, false), Transient);
        assert_eq!(PartnerErrorKind::from_status(500, false), Transient);
        assert_eq!(PartnerErrorKind::from_status(503, false), Transient);
        assert_eq!(PartnerErrorKind::from_status(302, false), Invalid);
    }

    #[test]
    fn display_names_call_site_kind_status_and_attempts() {
        let e = PartnerError {
            kind: PartnerErrorKind::Transient,
            call: CallKind::ListUsers,
            site: "acme".into(),
            status: Some(503),
            message: "busy".into(),
            retry_after: None,
            attempts: 3,
        };
        assert_eq!(
            e.to_string(),
            "partner call list_users on site acme failed: transient (HTTP 503): busy (after 3 attempts)"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn a_401_always_refuses_the_key_and_a_403_only_to_a_read() {
        assert!(status_refuses_key(401, CallKind::UpdateGroup));
        assert!(status_refuses_key(401, CallKind::DeleteUser));
        assert!(status_refuses_key(403, CallKind::GetUser));
        assert!(status_refuses_key(403, CallKind::ListRoles));
        assert!(!status_refuses_key(403, CallKind::UpdateUser));
        assert!(!status_refuses_key(403, CallKind::DeleteUser));
        assert!(!status_refuses_key(403, CallKind::CreateUserV2));
        assert!(!status_refuses_key(403, CallKind::DeleteGroup));
        assert!(!status_refuses_key(403, CallKind::UpdateRole));
        assert!(!status_refuses_key(404, CallKind::GetUser));
        assert!(!status_refuses_key(500, CallKind::GetUser));
    }
}
