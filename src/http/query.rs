//! List and projection parameters (RFC 7644 sections 3.4.2 and 3.4.3), from the query string of
//! a GET or from the body of a `POST .../.search`, into one validated [`ListQuery`].
//!
//! The query string is decoded as `application/x-www-form-urlencoded` (`+` is a space, `%2B` a
//! plus), the way clients encode it. Parameter names are matched case-insensitively; unknown
//! parameters are ignored (Entra admins append `?aadOptscim062020`); an empty value counts as
//! absent; a known parameter given twice is 400 `invalidValue` rather than a guess at which one
//! was meant.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde_json::Value;

use super::error::ApiError;
use super::{HttpLimits, TenantState};
use crate::scim::list::{Paging, SearchRequest};
use crate::scim::projection::Projection;
use crate::scim::schema::AttrRef;
use crate::scim::sort::SortOrder;
use crate::scim::ScimError;

/// A validated list request: what to match, in which order, which page, which attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The filter text, not parsed yet (`None` when absent or empty).
    pub filter: Option<String>,
    pub sort_by: Option<AttrRef>,
    pub sort_order: SortOrder,
    /// Clamped to `[0, limits.max_results]`, `limits.default_count` when absent.
    pub paging: Paging,
    pub projection: Projection,
}

impl ListQuery {
    /// From a raw query string (without the `?`).
    pub fn from_query(query: Option<&str>, limits: &HttpLimits) -> Result<ListQuery, ScimError> {
        let p = Params::parse(query.unwrap_or(""))?;
        ListQuery::build(
            p.filter,
            p.sort_by.as_deref(),
            p.sort_order.as_deref(),
            Paging::from_params(
                p.start_index.as_deref(),
                p.count.as_deref(),
                limits.default_count,
                limits.max_results,
            )?,
            Projection::parse(p.attributes.as_deref(), p.excluded_attributes.as_deref())?,
        )
    }

    /// From a parsed `.search` body.
    pub fn from_search(req: &SearchRequest, limits: &HttpLimits) -> Result<ListQuery, ScimError> {
        ListQuery::build(
            req.filter.clone(),
            req.sort_by.as_deref(),
            req.sort_order.as_deref(),
            req.paging(limits.default_count, limits.max_results),
            req.projection()?,
        )
    }

    /// From the JSON body of a `.search` request; a body that does not fit the SearchRequest
    /// schema is 400 `invalidSyntax`.
    pub fn from_search_body(body: Value, limits: &HttpLimits) -> Result<ListQuery, ScimError> {
        let req: SearchRequest = serde_json::from_value(body).map_err(|e| {
            ScimError::invalid_syntax(format!("The body is not a valid SearchRequest: {e}."))
        })?;
        ListQuery::from_search(&req, limits)
    }

    fn build(
        filter: Option<String>,
        sort_by: Option<&str>,
        sort_order: Option<&str>,
        paging: Paging,
        projection: Projection,
    ) -> Result<ListQuery, ScimError> {
        let sort_by = match sort_by.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(AttrRef::parse(s)?),
            None => None,
        };
        Ok(ListQuery {
            filter: filter.filter(|f| !f.trim().is_empty()),
            sort_by,
            sort_order: match sort_order.map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => SortOrder::parse(s)?,
                None => SortOrder::Ascending,
            },
            paging,
            projection,
        })
    }
}

/// Reads the query string with the limits of the tenant.
impl<S> FromRequestParts<S> for ListQuery
where
    S: Send + Sync,
    TenantState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tenant = TenantState::from_ref(state);
        Ok(ListQuery::from_query(parts.uri.query(), &tenant.limits)?)
    }
}

/// `attributes` / `excludedAttributes` alone, for single-resource reads and write responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionQuery(pub Projection);

impl ProjectionQuery {
    pub fn from_query(query: Option<&str>) -> Result<ProjectionQuery, ScimError> {
        let p = Params::parse(query.unwrap_or(""))?;
        Ok(ProjectionQuery(Projection::parse(
            p.attributes.as_deref(),
            p.excluded_attributes.as_deref(),
        )?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ProjectionQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ProjectionQuery::from_query(parts.uri.query())?)
    }
}

/// True when the query string carries `name` (case-insensitively) with a non-empty value.
pub fn has_param(query: Option<&str>, name: &str) -> bool {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
}

/// The known parameters, decoded; empty values are dropped.
#[derive(Debug, Default)]
struct Params {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Params, ScimError> {
        let mut p = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (name, slot) = match key.to_ascii_lowercase().as_str() {
                "filter" => ("filter", &mut p.filter),
                "startindex" => ("startIndex", &mut p.start_index),
                "count" => ("count", &mut p.count),
                "sortby" => ("sortBy", &mut p.sort_by),
                "sortorder" => ("sortOrder", &mut p.sort_order),
                "attributes" => ("attributes", &mut p.attributes),
                "excludedattributes" => ("excludedAttributes", &mut p.excluded_attributes),
                _ => continue,
            };
            if value.trim().is_empty() {
                continue;
            }
            if slot.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "The query parameter '{name}' is given more than once."
                )));
            }
            *slot = Some(value.into_owned());
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;
    use serde_json::json;

    fn limits() -> HttpLimits {
        HttpLimits {
            default_count: 100,
            max_results: 200,
            ..HttpLimits::default()
        }
    }

    fn q(s: &str) -> Result<ListQuery, ScimError> {
        ListQuery::from_query(Some(s), &limits())
    }

    #[test]
    fn okta_import_query_parses() {
        let l = q("filter=userName%20eq%20%22a%40x.io%22&startIndex=1&count=100").unwrap();
        assert_eq!(l.filter.as_deref(), Some("userName eq \"a@x.io\""));
        assert_eq!(
            l.paging,
            Paging {
                start_index: 1,
                count: 100
            }
        );
        assert_eq!(l.sort_by, None);
        assert_eq!(l.sort_order, SortOrder::Ascending);
        assert!(l.projection.is_empty());
    }

    #[test]
    fn plus_is_a_space_and_encoded_plus_is_a_plus() {
        let l = q("filter=userName+eq+%22a%2Bb%40x.io%22").unwrap();
        assert_eq!(l.filter.as_deref(), Some("userName eq \"a+b@x.io\""));
    }

    #[test]
    fn names_are_case_insensitive_and_unknown_ones_ignored() {
        let l = q(
            "aadOptscim062020&FILTER=displayName+eq+%22G%22&StartIndex=3&COUNT=5\
                   &SortBy=userName&sortorder=DESCENDING&ExcludedAttributes=members&x=y",
        )
        .unwrap();
        assert_eq!(l.filter.as_deref(), Some("displayName eq \"G\""));
        assert_eq!(
            l.paging,
            Paging {
                start_index: 3,
                count: 5
            }
        );
        assert_eq!(l.sort_by.map(|a| a.name), Some("userName".to_owned()));
        assert_eq!(l.sort_order, SortOrder::Descending);
        assert!(!l.projection.is_empty());
    }

    #[test]
    fn absent_and_empty_parameters_take_defaults_and_count_is_capped() {
        let l = ListQuery::from_query(None, &limits()).unwrap();
        assert_eq!(l.paging.count, 100);
        assert_eq!(l.filter, None);
        let l = q("filter=&count=&sortOrder=").unwrap();
        assert_eq!(l.filter, None);
        assert_eq!(l.paging.count, 100);
        assert_eq!(q("count=5000").unwrap().paging.count, 200);
        assert_eq!(q("count=-3&startIndex=0").unwrap().paging.start_index, 1);
    }

    #[test]
    fn invalid_values_are_scim_errors() {
        let e = q("sortOrder=up").unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        let e = q("count=ten").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let e = q("count=1&Count=2").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("count"));
        let e = q("attributes=emails[type").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn search_body_gives_the_same_query() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName eq \"a+b@x.io\"",
            "startIndex": 3,
            "count": "5",
            "sortBy": "userName",
            "sortOrder": "Descending",
            "excludedAttributes": ["members"]
        });
        let from_body = ListQuery::from_search_body(body, &limits()).unwrap();
        let from_query = q("filter=userName+eq+%22a%2Bb%40x.io%22&startIndex=3&count=5\
                            &sortBy=userName&sortOrder=descending&excludedAttributes=members")
        .unwrap();
        assert_eq!(from_body, from_query);
        let e = ListQuery::from_search_body(json!({"count": "x"}), &limits()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        let e =
            ListQuery::from_search_body(json!({"sortOrder": "sideways"}), &limits()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let l = ListQuery::from_search_body(json!({"count": 10_000}), &limits()).unwrap();
        assert_eq!(l.paging.count, 200);
    }

    #[test]
    fn projection_query_reads_only_projection_parameters() {
        let p = ProjectionQuery::from_query(Some("Attributes=userName&count=x")).unwrap();
        assert!(!p.0.is_empty());
        assert!(ProjectionQuery::from_query(None).unwrap().0.is_empty());
    }

    #[test]
    fn has_param_is_case_insensitive_and_ignores_empty_values() {
        assert!(has_param(Some("Filter=id+pr"), "filter"));
        assert!(!has_param(Some("filter="), "filter"));
        assert!(!has_param(Some("aadOptscim062020"), "filter"));
        assert!(!has_param(None, "filter"));
    }
}
