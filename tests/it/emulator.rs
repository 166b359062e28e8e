//! The partner emulator over real HTTP on loopback: the vendor's example requests, every error
//! row of the contract table, switches, wire shapes, fault injection and the admin API.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use scim_bridge::partner::emulator::faults::{
    FaultAction, Faults, Latency, RateLimit, ScriptedFault,
};
use scim_bridge::partner::emulator::{Emulator, RunningEmulator, SiteSpec, Switches, WireShape};
use scim_bridge::partner::{Access, CallKind, PartnerGroup, PartnerUser};

const SITE: &str = "site-name";
const KEY: &str = "api-key";
const AUTH: &str = "site-name:api-key";
const OWNER: &str = "owner@example.com";

async fn start() -> RunningEmulator {
    Emulator::new(vec![
        SiteSpec::parse(&format!("{AUTH}:{OWNER}")).unwrap(),
        SiteSpec::parse("other-site:other-key").unwrap(),
    ])
    .spawn()
    .await
    .unwrap()
}

/// A request as the vendor's Python examples send it: auth, `Content-Type: application/json`
/// on every call, optional `HTTP-X-EMAIL`, the body as a string.
struct Call<'a> {
    method: Method,
    path: &'a str,
    email: Option<&'a str>,
    body: Option<Value>,
    auth: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            email: None,
            body: None,
            auth: Some(AUTH),
        }
    }
    fn email(mut self, email: &'a str) -> Self {
        self.email = Some(email);
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn auth(mut self, auth: Option<&'a str>) -> Self {
        self.auth = auth;
        self
    }
    async fn send(self, em: &RunningEmulator) -> (StatusCode, Value) {
        let response = self.request(em, &Client::new()).send().await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{} {}",
            self.method,
            self.path
        );
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }
    fn request(&self, em: &RunningEmulator, client: &Client) -> reqwest::RequestBuilder {
        let mut rb = client
            .request(self.method.clone(), format!("{}{}", em.base_url, self.path))
            .header("Content-Type", "application/json");
        if let Some(auth) = self.auth {
            rb = rb.header("HTTP-X-PARTNER-AUTH", auth);
        }
        if let Some(email) = self.email {
            rb = rb.header("HTTP-X-EMAIL", email);
        }
        if let Some(body) = &self.body {
            rb = rb.body(body.to_string());
        }
        rb
    }
}

fn get(path: &str) -> Call<'_> {
    Call::new(Method::GET, path)
}
fn post(path: &str) -> Call<'_> {
    Call::new(Method::POST, path)
}
fn put(path: &str) -> Call<'_> {
    Call::new(Method::PUT, path)
}
fn delete(path: &str) -> Call<'_> {
    Call::new(Method::DELETE, path)
}

fn user(email: &str, groups: &[&str]) -> PartnerUser {
    PartnerUser {
        email: email.to_owned(),
        first_name: "First".to_owned(),
        last_name: "Last".to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn group(name: &str) -> PartnerGroup {
    PartnerGroup {
        name: name.to_owned(),
        access: Access::View,
    }
}

fn new_user_body(email: &str, groups: Value) -> Value {
    json!({"first_name": "F", "last_name": "L", "email": email, "groups": groups,
           "invited_by_email": OWNER})
}

#[tokio::test]
async fn seed_user_examples_dry_run_then_apply() {
    let em = start().await;
    let e = &em.emulator;

    // GET Users
    let (status, body) = get("/api/v1/users").send(&em).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"users": [{"email": OWNER, "first_name": "Site", "last_name": "Owner",
                          "groups": ["Administrators", "All Users"]}]})
    );
    // GET Single User
    let (status, body) = get("/api/v1/users").email(OWNER).send(&em).await;
    assert_eq!(status, 200);
    assert_eq!(body["email"], OWNER);

    // CREATE User, dry run then applied
    let payload = json!({"first_name": "MyFirstName", "last_name": "MyLastName",
                         "email": "new.user@example.com", "groups": ["Administrators"],
                         "invited_by_email": OWNER});
    let expected = json!({"email": "new.user@example.com", "first_name": "MyFirstName",
                          "last_name": "MyLastName", "groups": ["Administrators", "All Users"]});
    let dry = post("/api/v1/users?test_mode=true")
        .body(payload.clone())
        .send(&em)
        .await;
    assert_eq!(dry, (StatusCode::OK, expected.clone()));
    assert!(e.user(SITE, "new.user@example.com").is_none());
    let applied = post("/api/v1/users").body(payload).send(&em).await;
    assert_eq!(applied, (StatusCode::OK, expected));
    assert!(e.user(SITE, "new.user@example.com").is_some());

    // UPDATE User
    let payload = json!({"first_name": "newFirstName", "last_name": "newLastName"});
    let (status, body) = put("/api/v1/users?test_mode=true")
        .email("new.user@example.com")
        .body(payload.clone())
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["first_name"], "newFirstName");
    assert_eq!(body["groups"], json!(["Administrators", "All Users"]));
    assert_eq!(
        e.user(SITE, "new.user@example.com").unwrap().first_name,
        "MyFirstName"
    );
    let applied = put("/api/v1/users?test_mode=false")
        .email("new.user@example.com")
        .body(payload)
        .send(&em)
        .await;
    assert_eq!(applied, (StatusCode::OK, body));
    let stored = e.user(SITE, "new.user@example.com").unwrap();
    assert_eq!(
        (stored.first_name.as_str(), stored.last_name.as_str()),
        ("newFirstName", "newLastName")
    );

    // DELETE User
    let dry = delete("/api/v1/users?test_mode=true")
        .email("new.user@example.com")
        .send(&em)
        .await;
    assert_eq!(dry, (StatusCode::OK, json!({})));
    assert!(e.user(SITE, "new.user@example.com").is_some());
    let applied = delete("/api/v1/users")
        .email("new.user@example.com")
        .send(&em)
        .await;
    assert_eq!(applied, (StatusCode::OK, json!({})));
    assert!(e.user(SITE, "new.user@example.com").is_none());
}

#[tokio::test]
async fn seed_group_examples_dry_run_then_apply() {
    let em = start().await;
    let e = &em.emulator;

    // GET Groups
    let (status, body) = get("/api/v1/groups").send(&em).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"groups": [{"name": "Administrators", "access": "SQL"},
                          {"name": "All Users", "access": "SQL"}]})
    );
    // GET Single Group
    let (status, body) = get("/api/v1/groups/Administrators").send(&em).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"name": "Administrators", "access": "SQL"})
        )
    );

    // CREATE Group
    let payload = json!({"name": "myNewGroup", "access": "discovery", "created_by_email": OWNER});
    let expected = json!({"name": "myNewGroup", "access": "Discovery"});
    let dry = post("/api/v1/groups?test_mode=true")
        .body(payload.clone())
        .send(&em)
        .await;
    assert_eq!(dry, (StatusCode::OK, expected.clone()));
    assert_eq!(e.groups(SITE).len(), 2);
    let applied = post("/api/v1/groups").body(payload).send(&em).await;
    assert_eq!(applied, (StatusCode::OK, expected));

    // UPDATE Group, addressed by its slug
    let payload = json!({"name": "myExistingGroup", "access": "View"});
    let expected = json!({"name": "myExistingGroup", "access": "View"});
    let dry = put("/api/v1/groups/my-new-group?test_mode=true")
        .body(payload.clone())
        .send(&em)
        .await;
    assert_eq!(dry, (StatusCode::OK, expected.clone()));
    assert!(e.groups(SITE).iter().any(|g| g.name == "myNewGroup"));
    let applied = put("/api/v1/groups/my-new-group")
        .body(payload)
        .send(&em)
        .await;
    assert_eq!(applied, (StatusCode::OK, expected));
    assert!(e
        .groups(SITE)
        .iter()
        .any(|g| g.name == "myExistingGroup" && g.access == Access::View));

    // DELETE Group, addressed in lower case; the example prints only the status
    let (status, _) = delete("/api/v1/groups/myexistinggroup?test_mode=true")
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(e.groups(SITE).len(), 3);
    let (status, body) = delete("/api/v1/groups/myexistinggroup").send(&em).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(e.groups(SITE).len(), 2);
}

#[tokio::test]
async fn seed_multi_site_add_and_bulk_delete() {
    let em = Emulator::new(
        (1..=3)
            .map(|i| SiteSpec::parse(&format!("mySiteName{i}:myAPIKey{i}:{OWNER}")).unwrap())
            .collect(),
    )
    .spawn()
    .await
    .unwrap();
    for i in 1..=3 {
        let auth = format!("mySiteName{i}:myAPIKey{i}");
        let (status, body) = post("/api/v1/users?test_mode=true")
            .auth(Some(&auth))
            .body(new_user_body("multi@example.com", json!([])))
            .send(&em)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["groups"], json!(["All Users"]));
        assert_eq!(em.emulator.users(&format!("mySiteName{i}")).len(), 1);
    }
    // Bulk delete with `test_mode=False` applies.
    let auth = "mySiteName1:myAPIKey1";
    em.emulator
        .insert_user("mySiteName1", user("a@example.com", &[]));
    em.emulator
        .insert_user("mySiteName1", user("b@example.com", &[]));
    for email in ["a@example.com", "b@example.com"] {
        let (status, _) = delete("/api/v1/users?test_mode=False")
            .auth(Some(auth))
            .email(email)
            .send(&em)
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(em.emulator.users("mySiteName1").len(), 1);
}

async fn assert_error(call: Call<'_>, em: &RunningEmulator, want: u16) {
    let what = format!("{} {}", call.method, call.path);
    let (status, body) = call.send(em).await;
    assert_eq!(status.as_u16(), want, "{what}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn every_error_row_of_the_table() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_group(SITE, group("Team"));
    e.insert_group(SITE, group("Other"));
    e.insert_user(SITE, user("member@example.com", &["Team"]));

    // 401 on every call, without echoing the key
    for call in [
        get("/api/v1/users").auth(None),
        get("/api/v1/users").auth(Some("site-name:wrong-key")),
        get("/api/v1/users").auth(Some("no-such-site:api-key")),
        get("/api/v1/users").auth(Some("api-key")),
    ] {
        let (status, body) = call.send(&em).await;
        assert_eq!(status, 401);
        assert!(!body.to_string().contains(KEY), "{body}");
    }
    for call in [
        get("/api/v1/users").email(OWNER),
        post("/api/v1/users"),
        put("/api/v1/users").email(OWNER),
        delete("/api/v1/users").email(OWNER),
        get("/api/v1/groups"),
        get("/api/v1/groups/Team"),
        post("/api/v1/groups"),
        put("/api/v1/groups/Team"),
        delete("/api/v1/groups/Team"),
    ] {
        assert_error(call.auth(Some("site-name:nope")), &em, 401).await;
    }

    // users
    assert_error(get("/api/v1/users").email("nobody@example.com"), &em, 404).await;
    for body in [
        json!({"first_name": "F", "last_name": "L", "invited_by_email": OWNER}),
        json!({"email": "x@example.com", "last_name": "L", "invited_by_email": OWNER}),
        json!({"email": "x@example.com", "first_name": "F", "invited_by_email": OWNER}),
        json!({"email": "x@example.com", "first_name": "F", "last_name": "L"}),
        json!({"email": "not-an-email", "first_name": "F", "last_name": "L", "invited_by_email": OWNER}),
        new_user_body("x@example.com", json!(["No Such Group"])),
        json!({"email": "x@example.com", "first_name": "F", "last_name": "L",
               "invited_by_email": "stranger@example.com"}),
        json!(["not", "an", "object"]),
    ] {
        assert_error(post("/api/v1/users").body(body), &em, 400).await;
    }
    assert_error(
        post("/api/v1/users").body(new_user_body("MEMBER@example.com", json!([]))),
        &em,
        409,
    )
    .await;
    assert_error(
        put("/api/v1/users")
            .email("nobody@example.com")
            .body(json!({})),
        &em,
        404,
    )
    .await;
    assert_error(
        put("/api/v1/users").body(json!({"first_name": "X"})),
        &em,
        400,
    )
    .await;
    assert_error(
        put("/api/v1/users")
            .email("member@example.com")
            .body(json!({"groups": ["Nope"]})),
        &em,
        400,
    )
    .await;
    assert_error(
        put("/api/v1/users")
            .email("member@example.com")
            .body(json!({"email": OWNER})),
        &em,
        409,
    )
    .await;
    assert_error(
        delete("/api/v1/users").email("nobody@example.com"),
        &em,
        404,
    )
    .await;

    // groups
    assert_error(get("/api/v1/groups/Nope"), &em, 404).await;
    assert_error(
        post("/api/v1/groups").body(json!({"access": "SQL"})),
        &em,
        400,
    )
    .await;
    assert_error(
        post("/api/v1/groups").body(json!({"name": "N", "access": "admin"})),
        &em,
        400,
    )
    .await;
    assert_error(
        post("/api/v1/groups").body(json!({"name": "team"})),
        &em,
        409,
    )
    .await;
    assert_error(
        put("/api/v1/groups/Team").body(json!({"access": "root"})),
        &em,
        400,
    )
    .await;
    assert_error(
        put("/api/v1/groups/Administrators").body(json!({"access": "View"})),
        &em,
        403,
    )
    .await;
    assert_error(
        put("/api/v1/groups/All%20Users").body(json!({"name": "Everyone"})),
        &em,
        403,
    )
    .await;
    assert_error(
        put("/api/v1/groups/Nope").body(json!({"access": "View"})),
        &em,
        404,
    )
    .await;
    assert_error(
        put("/api/v1/groups/Team").body(json!({"name": "OTHER"})),
        &em,
        409,
    )
    .await;
    assert_error(delete("/api/v1/groups/administrators"), &em, 403).await;
    assert_error(delete("/api/v1/groups/Nope"), &em, 404).await;

    // malformed JSON, whatever the content type
    let response = Client::new()
        .post(format!("{}/api/v1/users", em.base_url))
        .header("HTTP-X-PARTNER-AUTH", AUTH)
        .header("Content-Type", "text/plain")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"));

    // nothing changed through all of that
    assert_eq!(e.users(SITE).len(), 2);
    assert_eq!(e.groups(SITE).len(), 4);
}

#[tokio::test]
async fn json_is_parsed_whatever_the_content_type() {
    let em = start().await;
    let response = Client::new()
        .post(format!("{}/api/v1/groups", em.base_url))
        .header("http-x-partner-auth", AUTH)
        .body(r#"{"name": "Plain", "access": "sql"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"name": "Plain", "access": "SQL"}));
    // a group without access defaults to SQL
    let (_, body) = post("/api/v1/groups")
        .body(json!({"name": "NoAccess"}))
        .send(&em)
        .await;
    assert_eq!(body["access"], "SQL");
}

#[tokio::test]
async fn emails_and_group_names_match_case_insensitively() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_group(SITE, group("Data Team"));
    let (status, body) = post("/api/v1/users")
        .body(new_user_body(
            "Mixed.Case@Example.com",
            json!(["DATA TEAM"]),
        ))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["email"], "Mixed.Case@Example.com");
    assert_eq!(body["groups"], json!(["Data Team", "All Users"]));
    let (status, body) = get("/api/v1/users")
        .email("mixed.case@example.COM")
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["email"], "Mixed.Case@Example.com");
    let (status, body) = get("/api/v1/groups/data%20team").send(&em).await;
    assert_eq!(
        (status, body["name"].clone()),
        (StatusCode::OK, json!("Data Team"))
    );
    let (status, body) = get("/api/v1/groups/DATA-TEAM").send(&em).await;
    assert_eq!(
        (status, body["name"].clone()),
        (StatusCode::OK, json!("Data Team"))
    );
    let (status, _) = delete("/api/v1/users")
        .email("MIXED.CASE@EXAMPLE.COM")
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert!(e.user(SITE, "mixed.case@example.com").is_none());
}

#[tokio::test]
async fn percent_encoded_group_names() {
    let em = start().await;
    let e = &em.emulator;
    for name in ["Sales / EMEA", "100% Growth", "Ünïcødé Grüppe", "a+b"] {
        let (status, body) = post("/api/v1/groups")
            .body(json!({"name": name}))
            .send(&em)
            .await;
        assert_eq!(
            (status, body["name"].clone()),
            (StatusCode::OK, json!(name))
        );
        let encoded: String =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let path = format!("/api/v1/groups/{encoded}");
        let (status, body) = get(&path).send(&em).await;
        assert_eq!(
            (status, body["name"].clone()),
            (StatusCode::OK, json!(name)),
            "{path}"
        );
        let (status, body) = put(&path)
            .body(json!({"access": "discovery"}))
            .send(&em)
            .await;
        assert_eq!(
            (status, body["access"].clone()),
            (StatusCode::OK, json!("Discovery"))
        );
        let (status, _) = delete(&path).send(&em).await;
        assert_eq!(status, 200);
        assert!(!e.groups(SITE).iter().any(|g| g.name == name));
    }
    // an unencoded `/` is not part of a name
    e.insert_group(SITE, group("x/y"));
    let (status, _) = get("/api/v1/groups/x/y").send(&em).await;
    assert_eq!(status, 404);
    let (status, _) = get("/api/v1/groups/x%2Fy").send(&em).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rename_and_delete_propagate_to_members() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_group(SITE, group("Old Name"));
    e.insert_user(SITE, user("a@example.com", &["Old Name"]));
    e.insert_user(SITE, user("b@example.com", &["old name", "All Users"]));
    let (status, _) = put("/api/v1/groups/Old%20Name")
        .body(json!({"name": "New Name"}))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    for email in ["a@example.com", "b@example.com"] {
        let (_, body) = get("/api/v1/users").email(email).send(&em).await;
        assert_eq!(body["groups"], json!(["New Name", "All Users"]), "{email}");
    }
    let (status, _) = delete("/api/v1/groups/new%20name").send(&em).await;
    assert_eq!(status, 200);
    for email in ["a@example.com", "b@example.com"] {
        assert_eq!(e.user(SITE, email).unwrap().groups, vec!["All Users"]);
    }
}

#[tokio::test]
async fn all_users_is_always_kept() {
    let em = start().await;
    let (_, body) = post("/api/v1/users")
        .body(
            json!({"email": "n@example.com", "first_name": "F", "last_name": "L",
                     "invited_by_email": OWNER}),
        )
        .send(&em)
        .await;
    assert_eq!(body["groups"], json!(["All Users"]));
    let (_, body) = put("/api/v1/users")
        .email(OWNER)
        .body(json!({"groups": []}))
        .send(&em)
        .await;
    assert_eq!(body["groups"], json!(["All Users"]));
    assert_eq!(
        em.emulator.user(SITE, OWNER).unwrap().groups,
        vec!["All Users"]
    );
}

#[tokio::test]
async fn user_groups_replace_by_default_and_merge_by_switch() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_group(SITE, group("A"));
    e.insert_group(SITE, group("B"));
    e.insert_user(SITE, user("u@example.com", &["A"]));
    let (_, body) = put("/api/v1/users")
        .email("u@example.com")
        .body(json!({"groups": ["B"]}))
        .send(&em)
        .await;
    assert_eq!(body["groups"], json!(["B", "All Users"]));
    // absent fields stay as they were
    assert_eq!(body["first_name"], "First");

    e.insert_user(SITE, user("u@example.com", &["A"]));
    assert!(e.set_switches(
        SITE,
        Switches {
            groups_merge: true,
            ..Switches::default()
        }
    ));
    let (_, body) = put("/api/v1/users")
        .email("u@example.com")
        .body(json!({"groups": ["b"]}))
        .send(&em)
        .await;
    assert_eq!(body["groups"], json!(["A", "All Users", "B"]));
}

#[tokio::test]
async fn email_change_applies_unless_refused_by_switch() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_user(SITE, user("old@example.com", &[]));
    let (status, body) = put("/api/v1/users")
        .email("old@example.com")
        .body(json!({"email": "new@example.com"}))
        .send(&em)
        .await;
    assert_eq!(
        (status, body["email"].clone()),
        (StatusCode::OK, json!("new@example.com"))
    );
    assert!(e.user(SITE, "old@example.com").is_none());
    assert!(e.user(SITE, "new@example.com").is_some());

    assert!(e.set_switches(
        SITE,
        Switches {
            refuse_email_change: true,
            ..Switches::default()
        }
    ));
    assert_error(
        put("/api/v1/users")
            .email("new@example.com")
            .body(json!({"email": "newer@example.com"})),
        &em,
        400,
    )
    .await;
    // the same email in another case is no change
    let (status, _) = put("/api/v1/users")
        .email("new@example.com")
        .body(json!({"email": "NEW@example.com", "first_name": "Renamed"}))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        e.user(SITE, "new@example.com").unwrap().first_name,
        "Renamed"
    );
}

#[tokio::test]
async fn test_mode_changes_nothing_and_is_counted_separately() {
    let em = start().await;
    let e = &em.emulator;
    e.insert_group(SITE, group("G"));
    e.insert_user(SITE, user("u@example.com", &["G"]));
    let before = (e.users(SITE), e.groups(SITE));
    for mode in ["true", "TRUE", "1", "True"] {
        let q = format!("?test_mode={mode}");
        let calls = [
            post("/api/v1/users").body(new_user_body("n@example.com", json!(["G"]))),
            put("/api/v1/users")
                .email("u@example.com")
                .body(json!({"groups": [], "email": "z@example.com"})),
            delete("/api/v1/users").email("u@example.com"),
            post("/api/v1/groups").body(json!({"name": "H"})),
            put("/api/v1/groups/G").body(json!({"name": "K"})),
            delete("/api/v1/groups/G"),
        ];
        for call in calls {
            let path = format!("{}{q}", call.path);
            let (status, _) = Call {
                path: &path,
                ..call
            }
            .send(&em)
            .await;
            assert_eq!(status, 200, "{path}");
        }
    }
    assert_eq!(before, (e.users(SITE), e.groups(SITE)));
    for kind in [
        CallKind::CreateUser,
        CallKind::UpdateUser,
        CallKind::DeleteUser,
        CallKind::CreateGroup,
        CallKind::UpdateGroup,
        CallKind::DeleteGroup,
    ] {
        assert_eq!(e.count(SITE, kind, true), 4, "{kind}");
        assert_eq!(e.count(SITE, kind, false), 0, "{kind}");
    }
    let (status, _) = post("/api/v1/groups?test_mode=false")
        .body(json!({"name": "H"}))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(e.count(SITE, CallKind::CreateGroup, false), 1);
    // a value that is neither true nor false is refused rather than applied
    assert_error(
        post("/api/v1/groups?test_mode=yes").body(json!({"name": "I"})),
        &em,
        400,
    )
    .await;
    assert!(!e.groups(SITE).iter().any(|g| g.name == "I"));
    // the call log records the mode
    let log = e.call_log();
    assert_eq!(log.iter().filter(|r| r.test_mode).count(), 24);
    assert!(log
        .iter()
        .all(|r| r.site == SITE && r.started_us <= r.finished_us));
}

#[tokio::test]
async fn wire_shapes() {
    let em = start().await;
    let e = &em.emulator;
    e.set_switches(
        SITE,
        Switches {
            wire_shape: WireShape::Bare,
            ..Switches::default()
        },
    );
    let (_, body) = get("/api/v1/users").send(&em).await;
    assert_eq!(body[0]["email"], OWNER);
    let (_, body) = get("/api/v1/groups").send(&em).await;
    assert_eq!(body[0]["name"], "Administrators");
    let (_, body) = get("/api/v1/users").email(OWNER).send(&em).await;
    assert_eq!(body["groups"][0], "Administrators");

    e.set_switches(
        SITE,
        Switches {
            wire_shape: WireShape::Wrapped,
            ..Switches::default()
        },
    );
    let (_, body) = get("/api/v1/users").send(&em).await;
    assert_eq!(
        body["data"][0]["groups"],
        json!([{"name": "Administrators"}, {"name": "All Users"}])
    );
    let (_, body) = get("/api/v1/groups").send(&em).await;
    assert_eq!(
        body["data"][1],
        json!({"name": "All Users", "access": "SQL"})
    );
    let (_, body) = get("/api/v1/users").email(OWNER).send(&em).await;
    assert_eq!(body["user"]["email"], OWNER);
    let (_, body) = get("/api/v1/groups/administrators").send(&em).await;
    assert_eq!(
        body,
        json!({"group": {"name": "Administrators", "access": "SQL"}})
    );
    let (_, body) = post("/api/v1/groups")
        .body(json!({"name": "W", "access": "view"}))
        .send(&em)
        .await;
    assert_eq!(body, json!({"group": {"name": "W", "access": "View"}}));
    let (_, body) = delete("/api/v1/groups/W").send(&em).await;
    assert_eq!(body, json!({}));
    // a client may echo wrapped group entries back
    let (status, body) = put("/api/v1/users")
        .email(OWNER)
        .body(json!({"groups": [{"name": "administrators"}]}))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["user"]["groups"],
        json!([{"name": "Administrators"}, {"name": "All Users"}])
    );
}

#[tokio::test]
async fn sites_are_isolated() {
    let em = start().await;
    let (status, _) = post("/api/v1/groups")
        .auth(Some("other-site:other-key"))
        .body(json!({"name": "Only There"}))
        .send(&em)
        .await;
    assert_eq!(status, 200);
    assert_error(get("/api/v1/groups/Only%20There"), &em, 404).await;
    assert_error(
        get("/api/v1/users").auth(Some("other-site:api-key")),
        &em,
        401,
    )
    .await;
    assert_error(
        get("/api/v1/users").auth(Some("site-name:other-key")),
        &em,
        401,
    )
    .await;
    let (_, body) = get("/api/v1/users")
        .auth(Some("other-site:other-key"))
        .send(&em)
        .await;
    assert_eq!(body["users"][0]["email"], "owner@other-site.example.com");
    assert_eq!(
        em.emulator
            .count("other-site", CallKind::CreateGroup, false),
        1
    );
    assert_eq!(em.emulator.count(SITE, CallKind::CreateGroup, false), 0);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            rate_limit: Some(RateLimit {
                per_second: 0.5,
                burst: 2,
                retry_after: true,
            }),
            ..Faults::default()
        },
    );
    for _ in 0..2 {
        assert_eq!(get("/api/v1/users").send(&em).await.0, 200);
    }
    let response = get("/api/v1/users")
        .request(&em, &Client::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
    // the other site has no limit
    for _ in 0..3 {
        assert_eq!(
            get("/api/v1/users")
                .auth(Some("other-site:other-key"))
                .send(&em)
                .await
                .0,
            200
        );
    }
    assert_eq!(
        em.emulator
            .call_log()
            .iter()
            .filter(|r| r.status == 429)
            .count(),
        1
    );
}

#[tokio::test]
async fn error_shares_repeat_under_the_same_seed() {
    let em = start().await;
    let faults = Faults {
        error_share: 0.5,
        seed: 42,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        em.emulator.set_faults(SITE, faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(get("/api/v1/groups").send(&em).await.0.as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200));
    assert!(runs[0].iter().any(|s| [500, 502, 503].contains(s)));
    assert!(runs[0].iter().all(|s| [200, 500, 502, 503].contains(s)));
    em.emulator.set_faults(
        SITE,
        Faults {
            error_share: 1.0,
            error_statuses: vec![504],
            ..Faults::default()
        },
    );
    assert_error(get("/api/v1/groups"), &em, 504).await;
}

#[tokio::test]
async fn hang_outlasts_the_client_timeout() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            hang_share: 1.0,
            hang_for_ms: Some(3_000),
            ..Faults::default()
        },
    );
    let client = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = get("/api/v1/users")
        .request(&em, &client)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // a short hang is answered normally
    em.emulator.set_faults(
        SITE,
        Faults {
            hang_share: 1.0,
            hang_for_ms: Some(50),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(get("/api/v1/users").send(&em).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            latency: Some(Latency::FixedMs(80)),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(get("/api/v1/users").send(&em).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn dropped_connection_fails_the_body_read_after_the_change_is_made() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            drop_share: 1.0,
            ..Faults::default()
        },
    );
    let response = post("/api/v1/users")
        .body(new_user_body("dropped@example.com", json!([])))
        .request(&em, &Client::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    assert!(em.emulator.user(SITE, "dropped@example.com").is_some());
    let log = em.emulator.call_log();
    assert_eq!(log.last().unwrap().status, 0);
    assert_eq!(
        log.last().unwrap().email.as_deref(),
        Some("dropped@example.com")
    );
}

#[tokio::test]
async fn script_fails_the_next_n_calls_of_a_kind() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            script: vec![ScriptedFault {
                call: Some(CallKind::CreateGroup),
                count: 2,
                action: FaultAction::Status {
                    status: 503,
                    retry_after_secs: Some(7),
                },
            }],
            ..Faults::default()
        },
    );
    for _ in 0..2 {
        assert_eq!(get("/api/v1/groups").send(&em).await.0, 200);
        let response = post("/api/v1/groups")
            .body(json!({"name": "S"}))
            .request(&em, &Client::new())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "7");
    }
    assert!(!em.emulator.groups(SITE).iter().any(|g| g.name == "S"));
    assert_eq!(
        post("/api/v1/groups")
            .body(json!({"name": "S"}))
            .send(&em)
            .await
            .0,
        200
    );
    let statuses: Vec<u16> = em
        .emulator
        .call_log()
        .iter()
        .filter(|r| r.call == CallKind::CreateGroup)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    // faulted calls are counted
    assert_eq!(em.emulator.count(SITE, CallKind::CreateGroup, false), 3);
}

#[tokio::test]
async fn admin_api() {
    let em = start().await;
    let client = Client::new();
    let admin = |path: &str| format!("{}/_emulator{path}", em.base_url);
    get("/api/v1/users").send(&em).await;
    post("/api/v1/groups?test_mode=true")
        .body(json!({"name": "A"}))
        .send(&em)
        .await;

    let calls: Value = client
        .get(admin("/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls.as_array().unwrap().len(), 2);
    assert_eq!(calls[1]["call"], "create_group");
    assert_eq!(calls[1]["group"], "A");
    assert_eq!(calls[1]["test_mode"], true);
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
        json!([{"site": SITE, "call": "list_users", "test_mode": false, "count": 1},
               {"site": SITE, "call": "create_group", "test_mode": true, "count": 1}])
    );
    let response = client.delete(admin("/calls")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(em.emulator.call_log().is_empty());

    let site: Value = client
        .get(admin("/sites/site-name"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site["users"][0]["email"], OWNER);
    assert_eq!(site["groups"].as_array().unwrap().len(), 2);
    assert_eq!(
        client
            .get(admin("/sites/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let response = client
        .put(admin("/sites/site-name/faults"))
        .body(r#"{"script": [{"call": "list_users", "count": 1, "action": {"status": {"status": 418}}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_error(get("/api/v1/users"), &em, 418).await;
    assert_eq!(get("/api/v1/users").send(&em).await.0, 200);
    for (path, body) in [
        ("/sites/site-name/faults", r#"{"error_share": 2.0}"#),
        ("/sites/site-name/faults", r#"{"bogus": 1}"#),
        ("/sites/site-name/switches", r#"{"wire_shape": "round"}"#),
    ] {
        let response = client.put(admin(path)).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(
        client
            .put(admin("/sites/nope/faults"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let response = client
        .put(admin("/sites/site-name/switches"))
        .body(r#"{"wire_shape": "bare", "groups_merge": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, body) = get("/api/v1/groups").send(&em).await;
    assert!(body.is_array());
    assert!(em.emulator.switches(SITE).unwrap().groups_merge);
}

#[tokio::test]
async fn concurrent_writes_are_all_applied_and_logged() {
    let em = start().await;
    let client = Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let rb = post("/api/v1/users")
            .body(new_user_body(&format!("user{i}@example.com"), json!([])))
            .request(&em, &client);
        tasks.push(tokio::spawn(
            async move { rb.send().await.unwrap().status() },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(em.emulator.users(SITE).len(), 201);
    let log = em.emulator.call_log();
    assert_eq!(log.len(), 200);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(em.emulator.count(SITE, CallKind::CreateUser, false), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let em = start().await;
    assert_error(get("/api/v1/nothing"), &em, 404).await;
    assert_error(Call::new(Method::PATCH, "/api/v1/users"), &em, 405).await;
    assert_error(Call::new(Method::POST, "/api/v1/groups/G"), &em, 405).await;
}

#[tokio::test]
async fn a_hang_the_client_gave_up_on_is_logged_with_status_0() {
    let em = start().await;
    em.emulator.set_faults(
        SITE,
        Faults {
            hang_share: 1.0,
            hang_for_ms: Some(10_000),
            ..Faults::default()
        },
    );
    let client = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = get("/api/v1/users")
        .request(&em, &client)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    drop(client);
    let mut log = Vec::new();
    for _ in 0..100 {
        log = em.emulator.call_log();
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].status, 0);
    assert!(log[0].finished_us - log[0].started_us < 5_000_000);
}

#[tokio::test]
async fn serve_stops_soon_after_shutdown_even_with_a_hanging_request() {
    let emulator = Emulator::new(vec![SiteSpec::parse(AUTH).unwrap()]);
    emulator.set_faults(
        SITE,
        Faults {
            hang_share: 1.0,
            hang_for_ms: Some(60_000),
            ..Faults::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/users", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(emulator.clone().serve(listener, async {
        let _ = rx.await;
    }));
    let hanging = tokio::spawn(async move {
        Client::new()
            .get(url)
            .header("HTTP-X-PARTNER-AUTH", AUTH)
            .send()
            .await
    });
    while emulator.count(SITE, CallKind::ListUsers, false) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // the hanging call was cut short and told so
    let status = hanging.await.unwrap().map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(503) | Err(_)), "{status:?}");
    assert_eq!(emulator.call_log()[0].status, 503);
}
