//! SCIM request input: the JSON body (RFC 7644 section 3.1, `application/scim+json` or
//! `application/json`) and the conditional headers `If-Match` / `If-None-Match` (RFC 7644
//! section 3.14).
//!
//! Every rejection is an [`ApiError`], so a client always gets a SCIM error body, never axum's
//! plain-text rejections: a body over the configured `DefaultBodyLimit` is 413, a media type
//! that is not JSON is 415, and a body that is not a JSON object is 400 `invalidSyntax` with
//! serde_json's line and column. serde_json's recursion limit (128) keeps deeply nested input
//! from exhausting the stack. A NUL character (U+0000) in the body (the detail names the
//! attribute path it is at), or `%00` in the URL, is 400 `invalidValue`: PostgreSQL text cannot
//! hold one. (The other control characters are refused in resource values by `scim::schema`,
//! which knows which strings are values.)

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use crate::scim::ScimError;

/// A request body that is a JSON object, sent as `application/scim+json`, `application/json`
/// (parameters such as `; charset=utf-8` are ignored) or without a `Content-Type`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::payload_too_large("The request body is larger than this server accepts.")
            } else {
                ScimError::invalid_syntax(format!(
                    "The request body could not be read: {}",
                    rejection.body_text()
                ))
            }
        })?;
        Ok(ScimBody(parse_object(&bytes)?))
    }
}

/// Accepts a JSON media type or none; anything else is 415 with a SCIM body.
fn check_content_type(headers: &HeaderMap) -> Result<(), ScimError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    if value.is_empty()
        || essence.eq_ignore_ascii_case(super::SCIM_CONTENT_TYPE)
        || essence.eq_ignore_ascii_case("application/json")
    {
        return Ok(());
    }
    Err(ScimError::new(
        415,
        None,
        format!(
            "Content-Type must be application/scim+json or application/json, not '{}'.",
            text.escape_debug()
        ),
    ))
}

/// Parses a request body that must be one JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Value, ScimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax(
            "The request body is empty; a JSON object is required.",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ScimError::invalid_syntax(format!("The request body is not valid JSON: {e}."))
    })?;
    if !value.is_object() {
        return Err(ScimError::invalid_syntax(format!(
            "The request body must be a JSON object, not {}.",
            crate::scim::schema::kind(&value)
        )));
    }
    if let Some(at) = nul_at(&value, "") {
        let place = if at.is_empty() {
            "The request body".to_owned()
        } else {
            format!("The request body's '{at}'")
        };
        return Err(nul_refused(&place));
    }
    Ok(value)
}

/// Where a string or a member name in `v` holds U+0000: the member names leading to it joined
/// with `.` (array positions left out, as in SCIM attribute paths: `emails.value`); a member
/// name that holds one is named by the object around it. `None` when there is none.
fn nul_at(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) => s.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => items.iter().find_map(|i| nul_at(i, at)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(at.to_owned());
            }
            let inner = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            nul_at(v, &inner)
        }),
        _ => None,
    }
}

/// No SCIM value holds U+0000, and PostgreSQL text cannot: refusing it wherever a request
/// carries it keeps both store back ends alike and keeps it from reaching a partner.
fn nul_refused(place: &str) -> ScimError {
    ScimError::invalid_value(format!(
        "{place} contains a NUL character (U+0000), which no SCIM value may hold."
    ))
}

/// Middleware: a request whose path or query string holds an encoded NUL (`%00`) is 400
/// `invalidValue` before any handler looks it up.
pub async fn refuse_nul_in_url(request: Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    let encoded_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return ApiError::from(nul_refused("The URL")).into_response();
    }
    next.run(request).await
}

/// The `If-Match` header, its lines joined by `, `; `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch(pub Option<String>);

/// The `If-None-Match` header, its lines joined by `, `; `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfNoneMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(header_list(&parts.headers, &IF_MATCH)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(header_list(&parts.headers, &IF_NONE_MATCH)))
    }
}

/// A list header that may be split over several lines (RFC 9110 section 5.3). Bytes that are
/// not visible ASCII are kept lossily: such a tag matches no version of ours, which is the
/// right answer for both headers (412 for `If-Match`, a normal read for `If-None-Match`).
fn header_list(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let lines: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .collect();
    if lines.is_empty() {
        None
    } else {
        Some(lines.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::http::HeaderValue;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    use crate::scim::ScimType;

    async fn extract(
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Result<Value, ScimError> {
        let mut builder = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let req = builder.body(body.into()).unwrap();
        ScimBody::from_request(req, &())
            .await
            .map(|b| b.0)
            .map_err(|e| e.error)
    }

    #[tokio::test]
    async fn json_media_types_with_or_without_parameters_are_accepted() {
        for ct in [
            None,
            Some("application/scim+json"),
            Some("application/json"),
            Some("application/scim+json; charset=utf-8"),
            Some("Application/JSON;charset=UTF-8"),
            Some(""),
        ] {
            let v = extract(ct, r#"{"userName":"a"}"#).await.unwrap();
            assert_eq!(v["userName"], "a", "{ct:?}");
        }
    }

    #[tokio::test]
    async fn other_media_types_are_415() {
        for ct in [
            "text/plain",
            "application/xml",
            "application/json-patch+json",
        ] {
            let e = extract(Some(ct), "{}").await.unwrap_err();
            assert_eq!(e.status, 415, "{ct}");
            assert!(e.detail.contains(ct));
        }
    }

    #[tokio::test]
    async fn malformed_json_is_invalid_syntax_with_position() {
        let e = extract(None, "{\"a\": 1,\n  \"b\" 2}").await.unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        assert!(e.detail.contains("line 2 column 7"), "{}", e.detail);
        let e = extract(None, b"{\"a\":\"\xff\"}".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        let e = extract(None, "  ").await.unwrap_err();
        assert!(e.detail.contains("empty"));
    }

    #[tokio::test]
    async fn nul_characters_anywhere_in_the_body_are_invalid_values() {
        for (body, at) in [
            (r#"{"userName":"a\u0000b"}"#, "'userName'"),
            (
                r#"{"emails":[{"value":"x@y.z","type":"\u0000"}]}"#,
                "'emails.type'",
            ),
            (r#"{"a\u0000":1}"#, "The request body contains"),
            (r#"{"name":{"given\u0000":1}}"#, "'name'"),
            (
                r#"{"Operations":[{"op":"add","value":{"title":["\u0000"]}}]}"#,
                "'Operations.value.title'",
            ),
        ] {
            let e = extract(None, body).await.unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
            assert!(e.detail.contains("NUL"), "{}", e.detail);
            assert!(e.detail.contains(at), "{body}: {}", e.detail);
            assert!(!e.detail.contains('\0'), "{}", e.detail);
        }
        assert!(extract(None, r#"{"userName":"a\\u0000b"}"#).await.is_ok());
    }

    #[tokio::test]
    async fn an_encoded_nul_in_the_url_is_an_invalid_value() {
        let app = Router::new()
            .route("/{*rest}", axum::routing::get(|| async { "reached" }))
            .layer(axum::middleware::from_fn(refuse_nul_in_url));
        for (uri, status) in [
            ("/Users/a%00b", StatusCode::BAD_REQUEST),
            (
                "/Users?filter=userName+eq+%22a%00%22",
                StatusCode::BAD_REQUEST,
            ),
            ("/Users?filter=x%2500", StatusCode::OK),
            ("/Users/abc?count=100", StatusCode::OK),
        ] {
            let res = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{uri}");
        }
    }

    #[tokio::test]
    async fn top_level_non_objects_are_invalid_syntax() {
        for body in ["[]", "\"x\"", "1", "null"] {
            let e = extract(None, body).await.unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax), "{body}");
        }
    }

    #[tokio::test]
    async fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let e = extract(None, "[".repeat(100_000)).await.unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        let nested = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(extract(None, nested).await.unwrap_err().status, 400);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_with_a_scim_body() {
        let app = Router::new()
            .route(
                "/",
                post(|ScimBody(v): ScimBody| async move { v.to_string() }),
            )
            .layer(DefaultBodyLimit::max(64));
        let body = format!("{{\"a\":\"{}\"}}", "x".repeat(100));
        let res = app
            .oneshot(Request::post("/").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            res.headers()[CONTENT_TYPE],
            HeaderValue::from_static(super::super::SCIM_CONTENT_TYPE)
        );
        let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["status"], "413");
    }

    #[test]
    fn conditional_headers_join_their_lines() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_list(&headers, &IF_MATCH), None);
        headers.append(IF_MATCH, HeaderValue::from_static("W/\"1\""));
        headers.append(IF_MATCH, HeaderValue::from_static(" W/\"2\" "));
        assert_eq!(
            header_list(&headers, &IF_MATCH).as_deref(),
            Some("W/\"1\", W/\"2\"")
        );
        assert_eq!(header_list(&headers, &IF_NONE_MATCH), None);
    }
}
