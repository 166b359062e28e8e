//! Discovery documents (RFC 7644 section 4; RFC 7643 sections 5, 6 and 7):
//! `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`, built from the schema model so
//! they always describe what the server does.
//!
//! The core User and Group schemas also list the common attributes `id`, `externalId` and
//! `meta` (RFC 7643 section 8.7.1 leaves them out as "not part of any schema"): clients read
//! `/Schemas` to learn that `id` is readOnly and returned always, and the interop notes ask for it.

use serde_json::{json, Map, Value};

use super::list::list_response;
use super::schema::{
    AttrType, AttributeDef, ResourceType, SchemaDef, ALL_RESOURCE_TYPES, ALL_SCHEMAS,
    COMMON_ATTRIBUTES, ENTERPRISE_USER_SCHEMA, RESOURCE_TYPE_SCHEMA, SCHEMA_SCHEMA,
    SERVICE_PROVIDER_CONFIG_SCHEMA,
};

/// An authentication scheme type of RFC 7643 section 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSchemeKind {
    OAuthBearerToken,
    HttpBasic,
}

impl AuthSchemeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthSchemeKind::OAuthBearerToken => "oauthbearertoken",
            AuthSchemeKind::HttpBasic => "httpbasic",
        }
    }

    fn spec_uri(self) -> &'static str {
        match self {
            AuthSchemeKind::OAuthBearerToken => "https://www.rfc-editor.org/info/rfc6750",
            AuthSchemeKind::HttpBasic => "https://www.rfc-editor.org/info/rfc7617",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthScheme {
    pub kind: AuthSchemeKind,
    pub name: String,
    pub description: String,
    pub primary: bool,
}

/// What the server really supports; `/ServiceProviderConfig` advertises exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    /// 0 means bulk is not supported.
    pub bulk_max_operations: usize,
    pub bulk_max_payload_size: usize,
    pub filter_max_results: usize,
    pub change_password: bool,
    pub sort: bool,
    pub etag: bool,
    pub auth_schemes: Vec<AuthScheme>,
    pub documentation_uri: Option<String>,
}

/// The `/ServiceProviderConfig` document (RFC 7643 section 5). `location` is its URL.
pub fn service_provider_config(caps: &Capabilities, location: &str) -> Value {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
    if let Some(uri) = &caps.documentation_uri {
        doc.insert("documentationUri".into(), json!(uri));
    }
    doc.insert("patch".into(), json!({"supported": caps.patch}));
    doc.insert(
        "bulk".into(),
        json!({
            "supported": caps.bulk_max_operations > 0,
            "maxOperations": caps.bulk_max_operations,
            "maxPayloadSize": caps.bulk_max_payload_size,
        }),
    );
    doc.insert(
        "filter".into(),
        json!({"supported": true, "maxResults": caps.filter_max_results}),
    );
    doc.insert(
        "changePassword".into(),
        json!({"supported": caps.change_password}),
    );
    doc.insert("sort".into(), json!({"supported": caps.sort}));
    doc.insert("etag".into(), json!({"supported": caps.etag}));
    let schemes: Vec<Value> = caps
        .auth_schemes
        .iter()
        .map(|s| {
            json!({
                "type": s.kind.as_str(),
                "name": s.name,
                "description": s.description,
                "specUri": s.kind.spec_uri(),
                "primary": s.primary,
            })
        })
        .collect();
    doc.insert("authenticationSchemes".into(), Value::Array(schemes));
    doc.insert(
        "meta".into(),
        json!({"resourceType": "ServiceProviderConfig", "location": location}),
    );
    Value::Object(doc)
}

/// `/ResourceTypes`: a ListResponse of every resource type.
pub fn resource_types(base_url: &str) -> Value {
    let all: Vec<Value> = ALL_RESOURCE_TYPES
        .iter()
        .map(|rt| resource_type_doc(rt, base_url))
        .collect();
    list_response(all.len(), 1, all)
}

/// `/ResourceTypes/{name}`, the name matched case-insensitively.
pub fn resource_type(name: &str, base_url: &str) -> Option<Value> {
    ALL_RESOURCE_TYPES
        .iter()
        .find(|rt| rt.name.eq_ignore_ascii_case(name) || rt.id.eq_ignore_ascii_case(name))
        .map(|rt| resource_type_doc(rt, base_url))
}

fn resource_type_doc(rt: &ResourceType, base_url: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    let extensions: Vec<Value> = rt
        .extensions
        .iter()
        .map(|s| json!({"schema": s.id, "required": false}))
        .collect();
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([RESOURCE_TYPE_SCHEMA]));
    doc.insert("id".into(), json!(rt.id));
    doc.insert("name".into(), json!(rt.name));
    doc.insert("endpoint".into(), json!(rt.endpoint));
    doc.insert("description".into(), json!(rt.description));
    doc.insert("schema".into(), json!(rt.schema.id));
    if !extensions.is_empty() {
        doc.insert("schemaExtensions".into(), Value::Array(extensions));
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", rt.id),
        }),
    );
    Value::Object(doc)
}

/// `/Schemas`: a ListResponse of the core User, core Group and enterprise User schemas.
pub fn schemas(base_url: &str) -> Value {
    let all: Vec<Value> = ALL_SCHEMAS
        .iter()
        .map(|s| schema_doc(s, base_url))
        .collect();
    list_response(all.len(), 1, all)
}

/// `/Schemas/{urn}`, the URN matched case-insensitively.
pub fn schema(urn: &str, base_url: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(urn))
        .map(|s| schema_doc(s, base_url))
}

fn schema_doc(s: &SchemaDef, base_url: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    let common: &[AttributeDef] = if s.id == ENTERPRISE_USER_SCHEMA {
        &[]
    } else {
        COMMON_ATTRIBUTES
    };
    let attributes: Vec<Value> = common
        .iter()
        .chain(s.attributes.iter())
        .map(attribute_doc)
        .collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{}", s.id),
        },
    })
}

/// One attribute with every characteristic of RFC 7643 section 7.
fn attribute_doc(a: &AttributeDef) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), json!(a.name));
    doc.insert("type".into(), json!(a.ty.as_str()));
    doc.insert("multiValued".into(), json!(a.multi_valued));
    doc.insert("description".into(), json!(a.description));
    doc.insert("required".into(), json!(a.required));
    if !a.canonical_values.is_empty() {
        doc.insert("canonicalValues".into(), json!(a.canonical_values));
    }
    doc.insert("caseExact".into(), json!(a.case_exact));
    doc.insert("mutability".into(), json!(a.mutability.as_str()));
    doc.insert("returned".into(), json!(a.returned.as_str()));
    doc.insert("uniqueness".into(), json!(a.uniqueness.as_str()));
    if a.ty == AttrType::Reference {
        doc.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if a.ty == AttrType::Complex {
        let subs: Vec<Value> = a.sub_attributes.iter().map(attribute_doc).collect();
        doc.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{GROUP_SCHEMA, LIST_RESPONSE_SCHEMA, USER_SCHEMA};

    const BASE: &str = "https://bridge.example.com/scim/v2/";

    fn caps() -> Capabilities {
        Capabilities {
            patch: true,
            bulk_max_operations: 100,
            bulk_max_payload_size: 1_048_576,
            filter_max_results: 200,
            change_password: false,
            sort: true,
            etag: true,
            auth_schemes: vec![AuthScheme {
                kind: AuthSchemeKind::OAuthBearerToken,
                name: "OAuth Bearer Token".into(),
                description: "Authentication with a bearer token".into(),
                primary: true,
            }],
            documentation_uri: None,
        }
    }

    fn attr<'a>(schema: &'a Value, name: &str) -> &'a Value {
        schema["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no attribute {name}"))
    }

    #[test]
    fn service_provider_config_advertises_exactly_the_capabilities_given() {
        let doc = service_provider_config(&caps(), "https://h/scim/v2/ServiceProviderConfig");
        assert_eq!(doc["schemas"], json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
        assert_eq!(doc["patch"], json!({"supported": true}));
        assert_eq!(
            doc["bulk"],
            json!({"supported": true, "maxOperations": 100, "maxPayloadSize": 1_048_576})
        );
        assert_eq!(doc["filter"], json!({"supported": true, "maxResults": 200}));
        assert_eq!(doc["changePassword"], json!({"supported": false}));
        assert_eq!(doc["sort"], json!({"supported": true}));
        assert_eq!(doc["etag"], json!({"supported": true}));
        assert_eq!(doc["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(doc["authenticationSchemes"][0]["primary"], true);
        assert!(doc.get("documentationUri").is_none());
        assert_eq!(doc["meta"]["resourceType"], "ServiceProviderConfig");

        let mut c = caps();
        c.patch = false;
        c.bulk_max_operations = 0;
        c.sort = false;
        c.etag = false;
        c.documentation_uri = Some("https://docs.example.com/scim".into());
        c.auth_schemes.push(AuthScheme {
            kind: AuthSchemeKind::HttpBasic,
            name: "HTTP Basic".into(),
            description: "Basic authentication".into(),
            primary: false,
        });
        let doc = service_provider_config(&c, "x");
        assert_eq!(doc["patch"]["supported"], false);
        assert_eq!(doc["bulk"]["supported"], false);
        assert_eq!(doc["sort"]["supported"], false);
        assert_eq!(doc["etag"]["supported"], false);
        assert_eq!(doc["documentationUri"], "https://docs.example.com/scim");
        assert_eq!(doc["authenticationSchemes"][1]["type"], "httpbasic");
    }

    #[test]
    fn resource_types_list_both_with_locations_and_the_enterprise_extension() {
        let doc = resource_types(BASE);
        assert_eq!(doc["schemas"], json!([LIST_RESPONSE_SCHEMA]));
        assert_eq!(doc["totalResults"], 2);
        let user = &doc["Resources"][0];
        assert_eq!(user["schemas"], json!([RESOURCE_TYPE_SCHEMA]));
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], USER_SCHEMA);
        assert_eq!(
            user["schemaExtensions"],
            json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
        );
        assert_eq!(
            user["meta"]["location"],
            "https://bridge.example.com/scim/v2/ResourceTypes/User"
        );
        let group = resource_type("group", BASE).unwrap();
        assert_eq!(group["schema"], GROUP_SCHEMA);
        assert!(group.get("schemaExtensions").is_none());
        assert!(resource_type("Device", BASE).is_none());
    }

    #[test]
    fn schemas_list_all_three_with_meta_location() {
        let doc = schemas(BASE);
        assert_eq!(doc["totalResults"], 3);
        let ids: Vec<&str> = doc["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA]);
        let ent = schema(&ENTERPRISE_USER_SCHEMA.to_uppercase(), BASE).unwrap();
        assert_eq!(
            ent["meta"]["location"],
            format!("https://bridge.example.com/scim/v2/Schemas/{ENTERPRISE_USER_SCHEMA}")
        );
        assert!(schema("urn:nope", BASE).is_none());
    }

    #[test]
    fn user_schema_states_the_characteristics_clients_rely_on() {
        let user = schema(USER_SCHEMA, BASE).unwrap();
        let user_name = attr(&user, "userName");
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        assert_eq!(user_name["type"], "string");
        let password = attr(&user, "password");
        assert_eq!(password["mutability"], "writeOnly");
        assert_eq!(password["returned"], "never");
        assert_eq!(attr(&user, "groups")["mutability"], "readOnly");
        let id = attr(&user, "id");
        assert_eq!(id["mutability"], "readOnly");
        assert_eq!(id["returned"], "always");
        let emails = attr(&user, "emails");
        assert_eq!(emails["multiValued"], true);
        let subs = emails["subAttributes"].as_array().unwrap();
        let ty = subs.iter().find(|s| s["name"] == "type").unwrap();
        assert_eq!(ty["canonicalValues"], json!(["work", "home", "other"]));
        let profile = attr(&user, "profileUrl");
        assert_eq!(profile["referenceTypes"], json!(["external"]));
        let ent = schema(ENTERPRISE_USER_SCHEMA, BASE).unwrap();
        let manager = attr(&ent, "manager");
        let m_ref = manager["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "$ref")
            .unwrap();
        assert_eq!(m_ref["referenceTypes"], json!(["User"]));
        assert!(ent["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["name"] != "id"));
    }

    #[test]
    fn every_attribute_has_the_full_set_of_characteristics() {
        fn check(a: &Value) {
            for k in [
                "name",
                "type",
                "multiValued",
                "description",
                "required",
                "caseExact",
                "mutability",
                "returned",
                "uniqueness",
            ] {
                assert!(a.get(k).is_some(), "{} lacks {k}", a["name"]);
            }
            if a["type"] == "complex" {
                for s in a["subAttributes"].as_array().unwrap() {
                    check(s);
                }
            }
        }
        for s in schemas(BASE)["Resources"].as_array().unwrap() {
            for a in s["attributes"].as_array().unwrap() {
                check(a);
            }
        }
    }
}
