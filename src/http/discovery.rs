//! The discovery endpoints of RFC 7644 section 4 (`/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`, and their single-item forms) and `/Me` (section 3.11), which this bridge does not
//! implement (501).
//!
//! The documents come from [`crate::scim::discovery`]; the capabilities come from the
//! [`HttpLimits`] the server enforces, so the advertised limits are the real ones. A `filter`
//! on these endpoints is refused with 403, as section 4 recommends, so a client cannot believe
//! a filter was applied. `attributes`/`excludedAttributes` are not applied here.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::error::{ApiError, ScimJson};
use super::query::has_param;
use super::{HttpLimits, TenantState};
use crate::scim::discovery::{self, AuthScheme, AuthSchemeKind, Capabilities};
use crate::scim::ScimError;

/// The discovery routes and `/Me`, relative to the tenant's base path.
pub fn routes() -> Router<TenantState> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{urn}", get(schema))
        // The methods RFC 7644 section 3.11 lists for `/Me`; others are 405 like elsewhere.
        .route("/Me", get(me).post(me).put(me).patch(me).delete(me))
        .route("/Me/{*rest}", get(me).post(me).put(me).patch(me).delete(me))
}

/// What the bridge supports, with the limits it enforces and the credential types the tenant
/// accepts (`basic`: HTTP Basic besides bearer tokens).
pub fn capabilities(limits: &HttpLimits, basic: bool) -> Capabilities {
    let mut auth_schemes = vec![AuthScheme {
        kind: AuthSchemeKind::OAuthBearerToken,
        name: "OAuth Bearer Token".into(),
        description: "A bearer token in the Authorization header: a static token, a JWT from \
                      the configured issuer, or a token from this tenant's /oauth/token endpoint."
            .into(),
        primary: true,
    }];
    if basic {
        auth_schemes.push(AuthScheme {
            kind: AuthSchemeKind::HttpBasic,
            name: "HTTP Basic".into(),
            description: "A user name and password (RFC 7617).".into(),
            primary: false,
        });
    }
    Capabilities {
        patch: true,
        bulk_max_operations: limits.bulk_max_operations,
        bulk_max_payload_size: limits.bulk_max_payload_bytes,
        filter_max_results: limits.max_results,
        change_password: false,
        sort: true,
        etag: true,
        auth_schemes,
        documentation_uri: None,
    }
}

fn refuse_filter(query: Option<&str>) -> Result<(), ApiError> {
    if has_param(query, "filter") {
        return Err(ScimError::forbidden(
            "Discovery endpoints do not support filtering (RFC 7644 section 4).",
        )
        .into());
    }
    Ok(())
}

pub async fn service_provider_config(
    State(tenant): State<TenantState>,
    RawQuery(query): RawQuery,
) -> Result<ScimJson, ApiError> {
    refuse_filter(query.as_deref())?;
    let location = format!("{}/ServiceProviderConfig", tenant.base_url);
    let doc = discovery::service_provider_config(
        &capabilities(&tenant.limits, tenant.auth.accepts_basic()),
        &location,
    );
    Ok(ScimJson(StatusCode::OK, doc))
}

pub async fn resource_types(
    State(tenant): State<TenantState>,
    RawQuery(query): RawQuery,
) -> Result<ScimJson, ApiError> {
    refuse_filter(query.as_deref())?;
    Ok(ScimJson(
        StatusCode::OK,
        discovery::resource_types(&tenant.base_url),
    ))
}

pub async fn resource_type(
    State(tenant): State<TenantState>,
    RawQuery(query): RawQuery,
    name: Result<Path<String>, PathRejection>,
) -> Result<ScimJson, ApiError> {
    refuse_filter(query.as_deref())?;
    let doc = name
        .ok()
        .and_then(|Path(name)| discovery::resource_type(&name, &tenant.base_url))
        .ok_or_else(|| ScimError::not_found("No such resource type."))?;
    Ok(ScimJson(StatusCode::OK, doc))
}

pub async fn schemas(
    State(tenant): State<TenantState>,
    RawQuery(query): RawQuery,
) -> Result<ScimJson, ApiError> {
    refuse_filter(query.as_deref())?;
    Ok(ScimJson(
        StatusCode::OK,
        discovery::schemas(&tenant.base_url),
    ))
}

pub async fn schema(
    State(tenant): State<TenantState>,
    RawQuery(query): RawQuery,
    urn: Result<Path<String>, PathRejection>,
) -> Result<ScimJson, ApiError> {
    refuse_filter(query.as_deref())?;
    let doc = urn
        .ok()
        .and_then(|Path(urn)| discovery::schema(&urn, &tenant.base_url))
        .ok_or_else(|| ScimError::not_found("No such schema."))?;
    Ok(ScimJson(StatusCode::OK, doc))
}

/// `/Me`: the bridge authenticates IdPs, not end users.
pub async fn me() -> ApiError {
    ScimError::not_implemented("/Me is not supported: callers are provisioning clients, not users.")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_the_limits() {
        let limits = HttpLimits {
            max_body_bytes: 1000,
            bulk_max_payload_bytes: 5000,
            bulk_max_operations: 7,
            max_results: 42,
            ..HttpLimits::default()
        };
        let caps = capabilities(&limits, false);
        assert_eq!(caps.bulk_max_payload_size, 5000);
        assert_eq!(caps.bulk_max_operations, 7);
        assert_eq!(caps.filter_max_results, 42);
        assert!(caps.patch && caps.sort && caps.etag && !caps.change_password);
        assert_eq!(caps.auth_schemes[0].kind, AuthSchemeKind::OAuthBearerToken);
        assert!(caps.auth_schemes[0].primary);
    }
}
