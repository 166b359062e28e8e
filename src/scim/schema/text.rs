//! Text checks: no SCIM value or attribute name may hold a control character (line breaks
//! aside in the postal address's free text).

use serde_json::Value;

use crate::scim::error::ScimError;

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
