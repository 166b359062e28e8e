//! Resource versions as weak entity tags (RFC 7644 section 3.14; RFC 7232 sections 2.3 and 3):
//! `W/"<n>"` for the `ETag` header and `meta.version`, and the `If-Match` / `If-None-Match`
//! checks.
//!
//! SCIM servers issue weak ETags and RFC 7644 shows them in `If-Match`, so both checks use the
//! weak comparison (the `W/` prefix is ignored on either side); RFC 7232's strong comparison for
//! `If-Match` would make every conditional PUT fail.

/// The weak ETag of a version: `W/"7"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version in an entity tag: `W/"7"`, `"7"` and, leniently, a bare `7`. Anything else
/// (another server's opaque tag, garbage) is `None`.
pub fn parse_etag(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_prefix("W/")
        .or_else(|| s.strip_prefix("w/"))
        .unwrap_or(s);
    let inner = match s.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => s,
    };
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// True when an `If-Match` header allows a write to a resource at version `current`: `*`, or
/// a comma-separated list naming the current version. An empty or unparsable header matches
/// nothing (the caller answers 412).
pub fn if_match_satisfied(header: &str, current: u64) -> bool {
    list_matches(header, current)
}

/// True when an `If-None-Match` header names the current version (or is `*`): a GET answers
/// 304 Not Modified.
pub fn if_none_match_hit(header: &str, current: u64) -> bool {
    list_matches(header, current)
}

fn list_matches(header: &str, current: u64) -> bool {
    let header = header.trim();
    if header == "*" {
        return true;
    }
    header
        .split(',')
        .any(|tag| parse_etag(tag) == Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_weak_and_quoted() {
        assert_eq!(etag(0), "W/\"0\"");
        assert_eq!(etag(42), "W/\"42\"");
    }

    #[test]
    fn parse_etag_round_trips_and_accepts_strong_and_bare_forms() {
        assert_eq!(parse_etag(&etag(17)), Some(17));
        assert_eq!(parse_etag(" \"17\" "), Some(17));
        assert_eq!(parse_etag("17"), Some(17));
        assert_eq!(parse_etag("w/\"3\""), Some(3));
    }

    #[test]
    fn parse_etag_rejects_foreign_and_malformed_tags() {
        for bad in [
            "",
            "W/",
            "W/\"\"",
            "\"a330bc54f0671c9\"",
            "W/\"1",
            "-1",
            "\"1 2\"",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_etag(bad), None, "{bad}");
        }
    }

    #[test]
    fn if_match_accepts_star_lists_and_weak_or_strong_tags() {
        assert!(if_match_satisfied("*", 5));
        assert!(if_match_satisfied("W/\"5\"", 5));
        assert!(if_match_satisfied("\"5\"", 5));
        assert!(if_match_satisfied("W/\"4\", W/\"5\"", 5));
        assert!(!if_match_satisfied("W/\"4\"", 5));
        assert!(!if_match_satisfied("", 5));
        assert!(!if_match_satisfied("W/\"abc\"", 5));
    }

    #[test]
    fn if_none_match_hits_on_current_version_or_star() {
        assert!(if_none_match_hit("W/\"9\"", 9));
        assert!(if_none_match_hit("*", 9));
        assert!(if_none_match_hit("\"1\",W/\"9\"", 9));
        assert!(!if_none_match_hit("W/\"8\"", 9));
    }
}
