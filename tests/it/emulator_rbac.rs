//! RBAC sites of the partner emulator over real HTTP on loopback (section 4.2 of
//! `partner-api.md`): every call and error row of the contract table, paging, `test_mode`,
//! `Everyone`, the default roles, the 404 each kind of site answers on the other's paths,
//! faults, switches, the admin API and the `--rbac-site` flag.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::emulator::{
    Emulator, RunningEmulator, SiteKind, SiteSpec, Switches, WireShape,
};
use scim_bridge::partner::{CallKind, PartnerRole, PartnerUserV2, Privilege};

const SITE: &str = "rbac-site";
const AUTH: &str = "rbac-site:rbac-key";
const OWNER: &str = "owner@example.com";
const V1_AUTH: &str = "v1-site:v1-key";

async fn start() -> RunningEmulator {
    Emulator::builder()
        .rbac_site(SiteSpec::parse(&format!("{AUTH}:{OWNER}")).unwrap())
        .site(SiteSpec::parse(V1_AUTH).unwrap())
        .build()
        .spawn()
        .await
        .unwrap()
}

/// Sends a request as the vendor's Python examples do (auth, `Content-Type: application/json`
/// on every call, the body as a string); answers the status and the JSON body.
async fn call(
    em: &RunningEmulator,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = Client::new()
        .request(method.clone(), format!("{}{path}", em.base_url))
        .header("Content-Type", "application/json");
    if let Some(auth) = auth {
        rb = rb.header("HTTP-X-PARTNER-AUTH", auth);
    }
    if let Some(body) = body {
        rb = rb.body(body.to_string());
    }
    let response = rb.send().await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{method} {path}"
    );
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

async fn get(em: &RunningEmulator, path: &str) -> (StatusCode, Value) {
    call(em, Method::GET, path, Some(AUTH), None).await
}
async fn post(em: &RunningEmulator, path: &str, body: Value) -> (StatusCode, Value) {
    call(em, Method::POST, path, Some(AUTH), Some(body)).await
}
async fn put(em: &RunningEmulator, path: &str, body: Value) -> (StatusCode, Value) {
    call(em, Method::PUT, path, Some(AUTH), Some(body)).await
}
async fn delete(em: &RunningEmulator, path: &str) -> (StatusCode, Value) {
    call(em, Method::DELETE, path, Some(AUTH), None).await
}

/// The status is `want` and the body `{"error": "<non-empty text>"}`.
fn assert_error((status, body): (StatusCode, Value), want: u16, what: &str) {
    assert_eq!(status.as_u16(), want, "{what}: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {body}");
    assert!(!message.contains("rbac-key"), "{what}: {body}");
}

fn role_id(em: &RunningEmulator, name: &str) -> String {
    em.emulator.role_by_name(SITE, name).unwrap().id
}

fn owner_id(em: &RunningEmulator) -> String {
    em.emulator.rbac_user_by_email(SITE, OWNER).unwrap().id
}

fn new_user(email: &str, roles: Value) -> Value {
    json!({"first_name": "MyFirstName", "last_name": "MyLastName", "email": email,
           "roles": roles, "invited_by_email": OWNER})
}

fn user_json(user: &PartnerUserV2) -> Value {
    serde_json::to_value(user).unwrap()
}

#[tokio::test]
async fn user_calls_dry_run_then_apply() {
    let em = start().await;
    let e = &em.emulator;
    let (admin, everyone, analyst) = (
        role_id(&em, "Admin"),
        role_id(&em, "Everyone"),
        role_id(&em, "Analyst"),
    );

    // GET users: the owner, with Admin and Everyone
    let owner = json!({"id": owner_id(&em), "email": OWNER, "first_name": "Site",
                       "last_name": "Owner", "roles": [admin, everyone]});
    let (status, body) = get(&em, "/api/v2/users").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"users": [owner], "next_page_start": null, "items_this_page": 1})
    );
    // GET one user
    let (status, body) = get(&em, &format!("/api/v2/users/{}", owner_id(&em))).await;
    assert_eq!((status, body), (StatusCode::OK, owner));

    // CREATE, dry run then applied: a fresh UUID each time, Everyone added
    let payload = new_user("new.user@example.com", json!([analyst]));
    let (status, dry) = post(&em, "/api/v2/users?test_mode=true", payload.clone()).await;
    assert_eq!(status, 200);
    assert!(e.rbac_user_by_email(SITE, "new.user@example.com").is_none());
    let (status, created) = post(&em, "/api/v2/users?test_mode=false", payload).await;
    assert_eq!(status, 200);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_ne!(dry["id"], created["id"]);
    let expected = json!({"id": id, "email": "new.user@example.com", "first_name": "MyFirstName",
                          "last_name": "MyLastName", "roles": [analyst, everyone]});
    assert_eq!(created, expected);
    assert_eq!(dry["roles"], expected["roles"]);
    assert_eq!(user_json(&e.rbac_user(SITE, &id).unwrap()), expected);

    // UPDATE, dry run then applied
    let path = format!("/api/v2/users/{id}");
    let payload = json!({"first_name": "newFirstName", "last_name": "newLastName"});
    let (status, dry) = put(&em, &format!("{path}?test_mode=true"), payload.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(dry["first_name"], "newFirstName");
    assert_eq!(dry["roles"], json!([analyst, everyone]));
    assert_eq!(e.rbac_user(SITE, &id).unwrap().first_name, "MyFirstName");
    let (status, applied) = put(&em, &format!("{path}?test_mode=false"), payload).await;
    assert_eq!((status, &applied), (StatusCode::OK, &dry));
    assert_eq!(user_json(&e.rbac_user(SITE, &id).unwrap()), applied);

    // DELETE, dry run then applied
    let dry = delete(&em, &format!("{path}?test_mode=true")).await;
    assert_eq!(dry, (StatusCode::OK, json!({})));
    assert!(e.rbac_user(SITE, &id).is_some());
    let applied = delete(&em, &path).await;
    assert_eq!(applied, (StatusCode::OK, json!({})));
    assert!(e.rbac_user(SITE, &id).is_none());
    assert_error(get(&em, &path).await, 404, "deleted user");
}

#[tokio::test]
async fn role_calls_dry_run_then_apply() {
    let em = start().await;
    let e = &em.emulator;

    let (status, body) = get(&em, "/api/v1/roles").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Admin", "Analyst", "Business User", "Everyone", "Read"]
    );
    let read = e.role_by_name(SITE, "read").unwrap();
    let (status, body) = get(&em, &format!("/api/v1/roles/{}", read.id)).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::to_value(&read).unwrap());
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "name", "description", "privileges", "permissions"]
    );

    // CREATE, as the vendor's example: type-wide privileges and per-object permissions
    let payload = json!({
        "name": "Dashboard Readers", "description": "Reads dashboards",
        "created_by_email": OWNER,
        "privileges": [{"object_type": "Dashboard",
                        "permissions": ["read_dashboards", "download_pdf"]}],
        "permissions": [{"object_type": "Dashboard", "object_id": "0000-test-1111-dash",
                         "permissions": ["edit_dashboard_settings"]}],
    });
    let (status, dry) = post(&em, "/api/v1/roles?test_mode=true", payload.clone()).await;
    assert_eq!(status, 200);
    assert!(e.role_by_name(SITE, "Dashboard Readers").is_none());
    let (status, created) = post(&em, "/api/v1/roles", payload.clone()).await;
    assert_eq!(status, 200);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_ne!(dry["id"], created["id"]);
    for field in ["name", "description", "privileges", "permissions"] {
        assert_eq!(created[field], payload[field], "{field}");
        assert_eq!(dry[field], payload[field], "{field}");
    }
    assert_eq!(
        serde_json::to_value(e.role(SITE, &id).unwrap()).unwrap(),
        created
    );

    // UPDATE: a present list replaces, absent fields are kept
    let path = format!("/api/v1/roles/{id}");
    let payload = json!({"name": "Readers", "updated_by_email": OWNER,
                         "privileges": [{"object_type": "Dashboard",
                                         "permissions": ["read_dashboards"]}]});
    let (status, dry) = put(&em, &format!("{path}?test_mode=true"), payload.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(e.role(SITE, &id).unwrap().name, "Dashboard Readers");
    let (status, applied) = put(&em, &path, payload).await;
    assert_eq!((status, &applied), (StatusCode::OK, &dry));
    let role = e.role(SITE, &id).unwrap();
    assert_eq!(role.name, "Readers");
    assert_eq!(role.description, "Reads dashboards");
    assert_eq!(
        role.privileges,
        vec![Privilege {
            object_type: "Dashboard".into(),
            permissions: vec!["read_dashboards".into()],
        }]
    );
    assert_eq!(role.permissions.len(), 1);

    // DELETE
    assert_eq!(
        delete(&em, &format!("{path}?test_mode=true")).await,
        (StatusCode::OK, json!({}))
    );
    assert!(e.role(SITE, &id).is_some());
    assert_eq!(delete(&em, &path).await, (StatusCode::OK, json!({})));
    assert!(e.role(SITE, &id).is_none());
    assert_error(get(&em, &path).await, 404, "deleted role");
}

#[tokio::test]
async fn every_error_row_of_the_table() {
    let em = start().await;
    let read = role_id(&em, "Read");
    let owner = owner_id(&em);
    let (_, other) = post(
        &em,
        "/api/v2/users",
        new_user("other@example.com", json!([])),
    )
    .await;
    let other = other["id"].as_str().unwrap().to_owned();
    let (_, custom) = post(&em, "/api/v1/roles", json!({"name": "Custom"})).await;
    let custom = custom["id"].as_str().unwrap().to_owned();
    let (_, second) = post(&em, "/api/v1/roles", json!({"name": "Second"})).await;
    let second = second["id"].as_str().unwrap().to_owned();

    // GET /api/v2/users: 400 bad cursor; 401 without or with a wrong key
    assert_error(
        get(&em, "/api/v2/users?next_page_start=nope").await,
        400,
        "cursor",
    );
    assert_error(
        call(&em, Method::GET, "/api/v2/users", None, None).await,
        401,
        "no auth",
    );
    assert_error(
        call(
            &em,
            Method::GET,
            "/api/v1/roles",
            Some("rbac-site:wrong"),
            None,
        )
        .await,
        401,
        "wrong key",
    );
    // GET /api/v2/users/<id>: 404
    assert_error(get(&em, "/api/v2/users/no-such-id").await, 404, "get user");
    // POST /api/v2/users: 400 missing field / unknown role id / unknown inviter; 409 email exists
    for field in ["email", "first_name", "last_name", "invited_by_email"] {
        let mut body = new_user("a@example.com", json!([]));
        body.as_object_mut().unwrap().remove(field);
        assert_error(post(&em, "/api/v2/users", body).await, 400, field);
    }
    assert_error(
        post(
            &em,
            "/api/v2/users",
            new_user("a@example.com", json!(["no-such-role"])),
        )
        .await,
        400,
        "unknown role id",
    );
    let mut body = new_user("a@example.com", json!([read]));
    body["invited_by_email"] = json!("nobody@example.com");
    assert_error(
        post(&em, "/api/v2/users", body).await,
        400,
        "unknown inviter",
    );
    assert_error(
        post(
            &em,
            "/api/v2/users",
            new_user("OWNER@example.com", json!([])),
        )
        .await,
        409,
        "email exists",
    );
    // PUT /api/v2/users/<id>: 400 unknown role id, 404, 409 email taken
    assert_error(
        put(
            &em,
            &format!("/api/v2/users/{other}"),
            json!({"roles": ["nope"]}),
        )
        .await,
        400,
        "put unknown role",
    );
    assert_error(
        put(&em, "/api/v2/users/nope", json!({"first_name": "X"})).await,
        404,
        "put unknown user",
    );
    assert_error(
        put(
            &em,
            &format!("/api/v2/users/{other}"),
            json!({"email": "Owner@Example.com"}),
        )
        .await,
        409,
        "email taken",
    );
    // DELETE /api/v2/users/<id>: 404
    assert_error(delete(&em, "/api/v2/users/nope").await, 404, "delete user");
    // GET /api/v1/roles/<id>: 404
    assert_error(get(&em, "/api/v1/roles/nope").await, 404, "get role");
    // POST /api/v1/roles: 400 missing name / bad privilege; 409 name exists (any case)
    assert_error(
        post(&em, "/api/v1/roles", json!({"description": "d"})).await,
        400,
        "missing name",
    );
    assert_error(
        post(
            &em,
            "/api/v1/roles",
            json!({"name": "P", "privileges": [{"object_type": "Dashboard", "permissions": "all"}]}),
        )
        .await,
        400,
        "bad privilege",
    );
    assert_error(
        post(&em, "/api/v1/roles", json!({"name": "custom"})).await,
        409,
        "name exists",
    );
    assert_error(
        post(&em, "/api/v1/roles", json!({"name": "ANALYST"})).await,
        409,
        "default name exists",
    );
    // PUT /api/v1/roles/<id>: 400, 403 built-in, 404, 409 rename onto an existing name
    assert_error(
        put(
            &em,
            &format!("/api/v1/roles/{custom}"),
            json!({"permissions": [{}]}),
        )
        .await,
        400,
        "put bad permission",
    );
    assert_error(
        put(
            &em,
            &format!("/api/v1/roles/{read}"),
            json!({"name": "Readers"}),
        )
        .await,
        403,
        "rename built-in",
    );
    assert_error(
        put(&em, "/api/v1/roles/nope", json!({"name": "X"})).await,
        404,
        "put unknown role",
    );
    assert_error(
        put(
            &em,
            &format!("/api/v1/roles/{custom}"),
            json!({"name": "SECOND"}),
        )
        .await,
        409,
        "rename onto existing",
    );
    // DELETE /api/v1/roles/<id>: 403 built-in, 404
    assert_error(
        delete(&em, &format!("/api/v1/roles/{read}")).await,
        403,
        "delete built-in",
    );
    assert_error(
        delete(&em, "/api/v1/roles/nope").await,
        404,
        "delete unknown role",
    );
    // test_mode that is neither true nor false, malformed JSON, wrong methods
    assert_error(
        delete(&em, &format!("/api/v1/roles/{second}?test_mode=yes")).await,
        400,
        "bad test_mode",
    );
    let (status, _) = call(
        &em,
        Method::PUT,
        &format!("/api/v2/users/{owner}"),
        Some(AUTH),
        None,
    )
    .await;
    assert_eq!(status, 200, "an empty body is {{}}");
    assert_error(
        call(&em, Method::POST, "/api/v1/roles", Some(AUTH), None).await,
        400,
        "empty body has no name",
    );
    let (status, _) = call(&em, Method::PATCH, "/api/v1/roles", Some(AUTH), None).await;
    assert_eq!(status, 405);
    // nothing above changed anything
    assert!(em.emulator.role(SITE, &second).is_some());
    assert_eq!(em.emulator.rbac_users(SITE).len(), 2);
    assert_eq!(em.emulator.roles(SITE).len(), 7);
}

#[tokio::test]
async fn users_page_by_hundred_and_a_cursor_is_followed_to_the_end() {
    let em = start().await;
    for i in 0..249 {
        assert!(em.emulator.insert_rbac_user(
            SITE,
            PartnerUserV2 {
                id: format!("seed-{i}"),
                email: format!("user{i:03}@example.com"),
                first_name: "F".into(),
                last_name: "L".into(),
                roles: vec![],
            },
        ));
    }
    let mut emails = Vec::new();
    let mut counts = Vec::new();
    let mut cursors = Vec::new();
    let mut path = "/api/v2/users".to_owned();
    loop {
        let (status, body) = get(&em, &path).await;
        assert_eq!(status, 200, "{body}");
        let users = body["users"].as_array().unwrap();
        assert_eq!(body["items_this_page"], users.len());
        counts.push(users.len());
        emails.extend(
            users
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_owned()),
        );
        match body["next_page_start"].as_str() {
            Some(cursor) => {
                assert!(!cursors.contains(&cursor.to_owned()), "cursor repeats");
                cursors.push(cursor.to_owned());
                path = format!("/api/v2/users?next_page_start={cursor}");
            }
            None => {
                assert!(body["next_page_start"].is_null());
                break;
            }
        }
    }
    assert_eq!(counts, [100, 100, 50]);
    let mut unique = emails.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 250);
    assert!(emails.contains(&OWNER.to_owned()));
    // a cursor we never issued is 400; a cursor together with test_mode works
    assert_error(
        get(&em, "/api/v2/users?next_page_start=%20%21").await,
        400,
        "bad cursor",
    );
    assert_error(
        get(&em, "/api/v2/users?next_page_start=").await,
        400,
        "empty cursor",
    );
    let (status, body) = get(
        &em,
        &format!(
            "/api/v2/users?test_mode=false&next_page_start={}",
            cursors[1]
        ),
    )
    .await;
    assert_eq!(
        (status, body["items_this_page"].as_u64()),
        (StatusCode::OK, Some(50))
    );
    assert_eq!(em.emulator.count(SITE, CallKind::ListUsersV2, false), 6);
}

#[tokio::test]
async fn test_mode_changes_nothing_and_is_counted_separately() {
    let em = start().await;
    let e = &em.emulator;
    let (_, user) = post(&em, "/api/v2/users", new_user("u@example.com", json!([]))).await;
    let user = user["id"].as_str().unwrap().to_owned();
    let (_, role) = post(&em, "/api/v1/roles", json!({"name": "R"})).await;
    let role = role["id"].as_str().unwrap().to_owned();
    let before = (e.rbac_users(SITE), e.roles(SITE));
    let dry = |p: &str| format!("{p}?test_mode=true");
    assert_eq!(
        post(
            &em,
            &dry("/api/v2/users"),
            new_user("n@example.com", json!([role]))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        put(
            &em,
            &dry(&format!("/api/v2/users/{user}")),
            json!({"first_name": "X", "email": "x@example.com", "roles": [role]})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        delete(&em, &dry(&format!("/api/v2/users/{user}"))).await.0,
        200
    );
    assert_eq!(
        post(&em, &dry("/api/v1/roles"), json!({"name": "S"}))
            .await
            .0,
        200
    );
    assert_eq!(
        put(
            &em,
            &dry(&format!("/api/v1/roles/{role}")),
            json!({"name": "T"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        delete(&em, &dry(&format!("/api/v1/roles/{role}"))).await.0,
        200
    );
    assert_eq!(before, (e.rbac_users(SITE), e.roles(SITE)));
    for kind in [
        CallKind::CreateUserV2,
        CallKind::UpdateUserV2,
        CallKind::DeleteUserV2,
        CallKind::CreateRole,
        CallKind::UpdateRole,
        CallKind::DeleteRole,
    ] {
        assert_eq!(e.count(SITE, kind, true), 1, "{kind}");
        assert!(kind.is_write() && kind.is_rbac());
    }
    assert_eq!(e.count(SITE, CallKind::CreateUserV2, false), 1);
    assert_eq!(e.count(SITE, CallKind::UpdateUserV2, false), 0);
    let log = e.call_log();
    let last = log.last().unwrap();
    assert_eq!(
        (last.call, last.test_mode, last.group.as_deref()),
        (CallKind::DeleteRole, true, Some("R"))
    );
    let put_user = log
        .iter()
        .find(|r| r.call == CallKind::UpdateUserV2)
        .unwrap();
    assert_eq!(put_user.email.as_deref(), Some("u@example.com"));
    assert_eq!(put_user.site, SITE);
}

#[tokio::test]
async fn everyone_is_kept_and_a_deleted_role_leaves_every_user() {
    let em = start().await;
    let e = &em.emulator;
    let everyone = role_id(&em, "Everyone");
    let analyst = role_id(&em, "Analyst");
    let (_, role) = post(&em, "/api/v1/roles", json!({"name": "Temp"})).await;
    let temp = role["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let (_, u) = post(
            &em,
            "/api/v2/users",
            new_user(email, json!([temp, analyst])),
        )
        .await;
        assert_eq!(u["roles"], json!([temp, analyst, everyone]));
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    // a roles list replaces the set; Everyone stays even when left out
    let (status, u) = put(
        &em,
        &format!("/api/v2/users/{}", ids[0]),
        json!({"roles": [temp]}),
    )
    .await;
    assert_eq!(
        (status, &u["roles"]),
        (StatusCode::OK, &json!([temp, everyone]))
    );
    let (_, u) = put(
        &em,
        &format!("/api/v2/users/{}", ids[0]),
        json!({"roles": []}),
    )
    .await;
    assert_eq!(u["roles"], json!([everyone]));
    // with the merge switch, a roles list is added to the set
    e.set_switches(
        SITE,
        Switches {
            groups_merge: true,
            ..Switches::default()
        },
    );
    let (_, u) = put(
        &em,
        &format!("/api/v2/users/{}", ids[0]),
        json!({"roles": [temp]}),
    )
    .await;
    assert_eq!(u["roles"], json!([everyone, temp]));
    // deleting Temp removes it from both users
    assert_eq!(delete(&em, &format!("/api/v1/roles/{temp}")).await.0, 200);
    assert_eq!(
        e.rbac_user(SITE, &ids[0]).unwrap().roles,
        vec![everyone.clone()]
    );
    assert_eq!(
        e.rbac_user(SITE, &ids[1]).unwrap().roles,
        vec![analyst, everyone]
    );
}

#[tokio::test]
async fn default_roles_cannot_be_renamed_or_deleted() {
    let em = start().await;
    for name in ["Admin", "Everyone", "Analyst", "Business User", "Read"] {
        let id = role_id(&em, name);
        let path = format!("/api/v1/roles/{id}");
        assert_error(
            put(&em, &path, json!({"name": format!("{name} 2")})).await,
            403,
            name,
        );
        assert_error(
            put(&em, &path, json!({"name": name.to_uppercase()})).await,
            403,
            name,
        );
        assert_error(delete(&em, &path).await, 403, name);
        assert_error(
            delete(&em, &format!("{path}?test_mode=true")).await,
            403,
            name,
        );
        assert_eq!(em.emulator.role(SITE, &id).unwrap().name, name);
    }
    // their grants may change, keeping the name
    let read = role_id(&em, "Read");
    let (status, body) = put(
        &em,
        &format!("/api/v1/roles/{read}"),
        json!({"name": "Read", "description": "Only reads"}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (StatusCode::OK, Some("Only reads"))
    );
}

#[tokio::test]
async fn each_kind_of_site_answers_the_others_paths_404() {
    let em = start().await;
    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::POST, "/api/v1/users"),
        (Method::PATCH, "/api/v1/users"),
        (Method::GET, "/api/v1/groups"),
        (Method::GET, "/api/v1/groups/All%20Users"),
        (Method::DELETE, "/api/v1/groups/Administrators"),
    ] {
        let (status, body) = call(&em, method.clone(), path, Some(AUTH), Some(json!({}))).await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(
            body["error"].as_str().unwrap().contains("uses roles"),
            "{body}"
        );
    }
    let owner = owner_id(&em);
    for (method, path) in [
        (Method::GET, "/api/v2/users".to_owned()),
        (Method::POST, "/api/v2/users".to_owned()),
        (Method::GET, format!("/api/v2/users/{owner}")),
        (Method::GET, "/api/v1/roles".to_owned()),
        (Method::PUT, "/api/v1/roles/some-id".to_owned()),
    ] {
        let (status, body) = call(&em, method.clone(), &path, Some(V1_AUTH), Some(json!({}))).await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(
            body["error"].as_str().unwrap().contains("uses groups"),
            "{body}"
        );
    }
    // not calls of the site: neither counted nor logged
    assert!(em.emulator.counters().is_empty());
    assert!(em.emulator.call_log().is_empty());
    // without valid credentials it is still 401, whatever the path
    assert_error(
        call(&em, Method::GET, "/api/v1/users", None, None).await,
        401,
        "v1 path",
    );
    assert_error(
        call(&em, Method::GET, "/api/v2/users", Some("v1-site:bad"), None).await,
        401,
        "v2 path",
    );
    // and each site still answers its own paths
    assert_eq!(
        call(&em, Method::GET, "/api/v1/users", Some(V1_AUTH), None)
            .await
            .0,
        200
    );
    assert_eq!(em.emulator.site_kind(SITE), Some(SiteKind::Rbac));
    assert_eq!(em.emulator.site_kind("v1-site"), Some(SiteKind::V1));
    assert!(em.emulator.users(SITE).is_empty() && em.emulator.groups(SITE).is_empty());
    assert!(
        em.emulator.rbac_users("v1-site").is_empty() && em.emulator.roles("v1-site").is_empty()
    );
}

#[tokio::test]
async fn ids_in_paths_are_percent_decoded() {
    let em = start().await;
    let e = &em.emulator;
    assert!(e.insert_rbac_user(
        SITE,
        PartnerUserV2 {
            id: "0000-test 1111/user%id".into(),
            email: "odd@example.com".into(),
            first_name: "O".into(),
            last_name: "D".into(),
            roles: vec![],
        },
    ));
    assert!(e.insert_role(
        SITE,
        PartnerRole {
            id: "rôle/1".into(),
            name: "Odd".into(),
            description: String::new(),
            privileges: vec![],
            permissions: vec![],
        },
    ));
    // a second role with the same name in another case is refused
    assert!(!e.insert_role(
        SITE,
        PartnerRole {
            id: "r2".into(),
            name: "ODD".into(),
            description: String::new(),
            privileges: vec![],
            permissions: vec![],
        },
    ));
    let (status, body) = get(&em, "/api/v2/users/0000-test%201111%2Fuser%25id").await;
    assert_eq!(
        (status, body["email"].as_str()),
        (StatusCode::OK, Some("odd@example.com"))
    );
    assert_eq!(body["roles"], json!([role_id(&em, "Everyone")]));
    let (status, body) = get(&em, "/api/v1/roles/r%C3%B4le%2F1").await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("Odd"))
    );
    // an unencoded `/` is no id; bad percent-encoding is 400
    assert_error(get(&em, "/api/v1/roles/r%C3%B4le/1").await, 404, "slash");
    assert_error(get(&em, "/api/v1/roles/%FF").await, 400, "not UTF-8");
}

#[tokio::test]
async fn faults_apply_to_rbac_calls() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            script: vec![ScriptedFault {
                call: Some(CallKind::CreateRole),
                count: 2,
                action: FaultAction::Status {
                    status: 503,
                    retry_after_secs: Some(4),
                },
            }],
            ..Faults::default()
        },
    );
    for _ in 0..2 {
        assert_eq!(get(&em, "/api/v1/roles").await.0, 200);
        let response = Client::new()
            .post(format!("{}/api/v1/roles", em.base_url))
            .header("HTTP-X-PARTNER-AUTH", AUTH)
            .body(json!({"name": "S"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "4");
    }
    assert!(em.emulator.role_by_name(SITE, "S").is_none());
    assert_eq!(
        post(&em, "/api/v1/roles", json!({"name": "S"})).await.0,
        200
    );
    let statuses: Vec<u16> = em
        .emulator
        .call_log()
        .iter()
        .filter(|r| r.call == CallKind::CreateRole)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(em.emulator.count(SITE, CallKind::CreateRole, false), 3);
    assert_eq!(
        em.emulator
            .count_executed(SITE, CallKind::CreateRole, false),
        1
    );

    // applied-then-failed: the user exists although the answer was 502
    em.emulator.set_faults(
        SITE,
        Faults {
            script: vec![ScriptedFault {
                call: Some(CallKind::CreateUserV2),
                count: 1,
                action: FaultAction::Applied { status: 502 },
            }],
            ..Faults::default()
        },
    );
    assert_error(
        post(
            &em,
            "/api/v2/users",
            new_user("late@example.com", json!([])),
        )
        .await,
        502,
        "applied",
    );
    assert!(em
        .emulator
        .rbac_user_by_email(SITE, "late@example.com")
        .is_some());

    // every call answered 500 under an error share of 1
    em.emulator.set_faults(
        SITE,
        Faults {
            error_share: 1.0,
            error_statuses: vec![500],
            ..Faults::default()
        },
    );
    assert_error(
        get(&em, &format!("/api/v2/users/{}", owner_id(&em))).await,
        500,
        "share",
    );
}

#[tokio::test]
async fn wire_shapes_apply_to_rbac_answers() {
    let em = start().await;
    let owner = owner_id(&em);
    let mut switches = Switches {
        wire_shape: WireShape::Wrapped,
        ..Switches::default()
    };
    em.emulator.set_switches(SITE, switches.clone());
    let (_, body) = get(&em, "/api/v2/users").await;
    assert_eq!(body["data"][0]["id"], owner.as_str());
    assert_eq!(body["items_this_page"], 1);
    assert!(body["next_page_start"].is_null());
    let (_, body) = get(&em, &format!("/api/v2/users/{owner}")).await;
    assert_eq!(body["user"]["email"], OWNER);
    let (_, body) = get(&em, "/api/v1/roles").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    let (_, body) = post(&em, "/api/v1/roles", json!({"name": "W"})).await;
    assert_eq!(body["role"]["name"], "W");

    switches.wire_shape = WireShape::Bare;
    em.emulator.set_switches(SITE, switches);
    for i in 0..120 {
        post(
            &em,
            "/api/v2/users",
            new_user(&format!("b{i}@example.com"), json!([])),
        )
        .await;
    }
    let (_, body) = get(&em, "/api/v2/users").await;
    assert_eq!(
        body.as_array().unwrap().len(),
        121,
        "bare lists are unpaged"
    );
    let (_, body) = get(&em, "/api/v1/roles").await;
    assert_eq!(body.as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn refused_email_change_is_400_by_switch() {
    let em = start().await;
    let owner = owner_id(&em);
    let path = format!("/api/v2/users/{owner}");
    let (status, body) = put(&em, &path, json!({"email": "boss@example.com"})).await;
    assert_eq!(
        (status, body["email"].as_str()),
        (StatusCode::OK, Some("boss@example.com"))
    );
    assert!(em.emulator.rbac_user_by_email(SITE, OWNER).is_none());
    em.emulator.set_switches(
        SITE,
        Switches {
            refuse_email_change: true,
            ..Switches::default()
        },
    );
    assert_error(
        put(&em, &path, json!({"email": "x@example.com"})).await,
        400,
        "refused",
    );
}

#[tokio::test]
async fn admin_api_shows_users_roles_and_counters_of_an_rbac_site() {
    let em = start().await;
    let client = Client::new();
    let admin = |path: &str| format!("{}/_emulator{path}", em.base_url);
    get(&em, "/api/v1/roles").await;
    post(
        &em,
        "/api/v2/users?test_mode=true",
        new_user("n@example.com", json!([])),
    )
    .await;

    let site: Value = client
        .get(admin("/sites/rbac-site"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site["kind"], "rbac");
    assert_eq!(site["users"][0]["email"], OWNER);
    assert_eq!(site["users"][0]["id"], owner_id(&em).as_str());
    assert_eq!(site["roles"].as_array().unwrap().len(), 5);
    assert!(site.get("groups").is_none());
    assert_eq!(
        site["switches"],
        serde_json::to_value(Switches::default()).unwrap()
    );
    // a v1 site's view is unchanged: no kind, users and groups
    let v1: Value = client
        .get(admin("/sites/v1-site"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v1.get("kind").is_none());
    assert_eq!(v1["groups"].as_array().unwrap().len(), 2);

    let counters: Value = client
        .get(admin("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters,
        json!([{"site": SITE, "call": "create_user_v2", "test_mode": true, "count": 1},
               {"site": SITE, "call": "list_roles", "test_mode": false, "count": 1}])
    );
    let calls: Value = client
        .get(admin("/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls[1]["call"], "create_user_v2");
    assert_eq!(calls[1]["email"], "n@example.com");
    // a scripted fault on a new call kind, set through the admin API
    let response = client
        .put(admin("/sites/rbac-site/faults"))
        .body(r#"{"script": [{"call": "get_role", "count": 1, "action": {"status": {"status": 418}}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let read = role_id(&em, "Read");
    assert_error(
        get(&em, &format!("/api/v1/roles/{read}")).await,
        418,
        "scripted",
    );
    assert_eq!(get(&em, &format!("/api/v1/roles/{read}")).await.0, 200);
    assert_eq!(CallKind::parse("get_role"), Some(CallKind::GetRole));
}

#[tokio::test]
async fn rbac_site_flag_serves_an_rbac_site() {
    use clap::Parser;
    use scim_bridge::partner::emulator::cli::EmulatorArgs;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }
    let cli = Cli::try_parse_from([
        "partner-emulator",
        "--site",
        V1_AUTH,
        "--rbac-site",
        &format!("{AUTH}:{OWNER}"),
        "--rbac-site",
        "second:k:e:y",
    ])
    .unwrap();
    assert_eq!(cli.args.rbac_sites.len(), 2);
    assert_eq!(cli.args.rbac_sites[1].api_key.expose(), "k:e:y");
    assert_eq!(
        cli.args.rbac_sites[1].owner_email,
        "owner@second.example.com"
    );
    let em = cli.args.build().unwrap().spawn().await.unwrap();
    assert_eq!(em.emulator.site_names(), ["rbac-site", "second", "v1-site"]);
    let (status, body) = get(&em, "/api/v2/users").await;
    assert_eq!(
        (status, body["users"][0]["email"].as_str()),
        (StatusCode::OK, Some(OWNER))
    );
    assert_eq!(
        call(&em, Method::GET, "/api/v1/groups", Some(V1_AUTH), None)
            .await
            .0,
        200
    );
    assert!(Cli::try_parse_from(["x", "--rbac-site", "no-key"]).is_err());
    assert!(Cli::try_parse_from(["x", "--rbac-site", "name:"]).is_err());
}
