//! Values are checked at the wire (issue 15, item 5): a control character (CR, LF, NUL, TAB,
//! DEL, C1, U+2028/2029) in any string of a User or Group, or a value of the wrong type (a
//! number for a string, a scalar for a complex attribute), is 400 `invalidValue` naming the
//! attribute, by POST, PUT, PATCH (every operation form) and `/Bulk`; nothing is stored and the
//! partner hears nothing. Entra's string booleans and the bare `manager` id stay accepted.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{create_group, create_user, Harness, Options};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const TARGET: &str = "target@acme.example.com";
const NEW: &str = "new.user@acme.example.com";

/// A harness with one user and one group (its member), settled, and an empty call log.
struct Fixture {
    h: Harness,
    user: String,
    group: String,
    user_body: Value,
    group_body: Value,
}

impl Fixture {
    async fn start() -> Fixture {
        let h = Harness::start(Options::default()).await;
        let user = create_user(&h, TARGET, "Tar", "Get").await;
        let group = create_group(&h, "Validated", &[&user]).await;
        h.settle(Duration::from_secs(10)).await;
        let user_body = h.get(&format!("/Users/{user}")).await.1;
        let group_body = h.get(&format!("/Groups/{group}")).await.1;
        h.emulator.clear_call_log();
        Fixture {
            h,
            user,
            group,
            user_body,
            group_body,
        }
    }

    /// Nothing changed: the user and the group read as before, no other user or group exists,
    /// and the partner received no call (after the outbox drained, so a queued write would
    /// show).
    async fn assert_nothing_changed(&self, case: &str) {
        self.h.settle(Duration::from_secs(10)).await;
        let calls = self.h.emulator.call_log();
        assert!(calls.is_empty(), "{case}: partner calls: {calls:?}");
        let (_, u) = self.h.get(&format!("/Users/{}", self.user)).await;
        assert_eq!(u, self.user_body, "{case}: the user changed");
        let (_, g) = self.h.get(&format!("/Groups/{}", self.group)).await;
        assert_eq!(g, self.group_body, "{case}: the group changed");
        let (_, users) = self.h.get("/Users?count=0").await;
        assert_eq!(users["totalResults"], 1, "{case}: a user was stored");
        let (_, groups) = self.h.get("/Groups?count=0").await;
        assert_eq!(groups["totalResults"], 1, "{case}: a group was stored");
        assert!(
            self.h.partner_user("acme", NEW).is_none(),
            "{case}: the partner has the new user"
        );
    }
}

/// A SCIM 400 `invalidValue` whose detail names `attr` and does not echo `bad`.
fn assert_refused(case: &str, status: StatusCode, body: &Value, attr: &str, bad: Option<&str>) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
    assert_eq!(body["scimType"], "invalidValue", "{case}: {body}");
    assert_eq!(body["status"], "400", "{case}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(attr),
        "{case}: the detail does not name {attr}: {detail}"
    );
    if let Some(bad) = bad {
        assert!(
            !detail.contains(bad),
            "{case}: the detail echoes the value: {detail}"
        );
    }
}

/// A valid new user with `edit` applied.
fn new_user(edit: impl FnOnce(&mut Value)) -> Value {
    let mut u = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": NEW,
        "externalId": "00u-new",
        "name": {"givenName": "New", "familyName": "User"},
        "displayName": "New User",
        "emails": [{"value": NEW, "type": "work", "primary": true}],
        "active": true,
    });
    edit(&mut u);
    u
}

/// Bodies with one bad value each: (case, attribute the error must name, body edit).
type Edit = Box<dyn Fn(&mut Value)>;

fn bad_bodies() -> Vec<(&'static str, &'static str, Option<&'static str>, Edit)> {
    vec![
        // The cases.
        (
            "CR LF in emails[].value",
            "emails.value",
            Some("Bcc: evil@example.com"),
            Box::new(|u| {
                u["emails"][0]["value"] = json!(format!("{NEW}\r\nBcc: evil@example.com"))
            }),
        ),
        (
            "an integer in emails[].value",
            "emails.value",
            None,
            Box::new(|u| u["emails"][0]["value"] = json!(42)),
        ),
        (
            "externalId 1e40",
            "externalId",
            None,
            Box::new(|u| u["externalId"] = json!(1e40)),
        ),
        // The rest of the user, one attribute and one kind of control character at a time.
        (
            "LF in displayName",
            "displayName",
            None,
            Box::new(|u| u["displayName"] = json!("New\nUser")),
        ),
        (
            "NUL in name.givenName",
            "name.givenName",
            None,
            Box::new(|u| u["name"]["givenName"] = json!("Ne\u{0}w")),
        ),
        (
            "TAB in title",
            "title",
            None,
            Box::new(|u| u["title"] = json!("Data\tAnalyst")),
        ),
        (
            "NUL in addresses[].streetAddress (line breaks are kept there)",
            "addresses.streetAddress",
            None,
            Box::new(|u| {
                u["addresses"] = json!([{"type": "work", "streetAddress": "1 Main St\u{0}Suite 2"}])
            }),
        ),
        (
            "CR in addresses[].locality",
            "addresses.locality",
            None,
            Box::new(|u| u["addresses"] = json!([{"type": "work", "locality": "Holly\rwood"}])),
        ),
        (
            "U+2028 in phoneNumbers[].value",
            "phoneNumbers.value",
            None,
            Box::new(|u| {
                u["phoneNumbers"] = json!([{"type": "work", "value": "+1 555\u{2028}0100"}])
            }),
        ),
        (
            "DEL in the enterprise department",
            "department",
            None,
            Box::new(|u| u[ENTERPRISE] = json!({"department": "Fin\u{7f}ance"})),
        ),
        (
            "ESC in the enterprise manager id",
            "manager.value",
            None,
            Box::new(|u| u[ENTERPRISE] = json!({"manager": "m\u{1b}[2J"})),
        ),
        (
            "C1 NEL in an unknown enterprise attribute",
            "badge",
            None,
            Box::new(|u| u[ENTERPRISE] = json!({"badge": "blue\u{85}green"})),
        ),
        (
            "a number for nickName",
            "nickName",
            None,
            Box::new(|u| u["nickName"] = json!(7)),
        ),
        (
            "a string for emails",
            "emails",
            None,
            Box::new(|u| u["emails"] = json!([NEW])),
        ),
        (
            "a number for active",
            "active",
            None,
            Box::new(|u| u["active"] = json!(1)),
        ),
    ]
}

#[tokio::test]
async fn post_and_put_of_users_refuse_control_characters_and_wrong_types() {
    let f = Fixture::start().await;
    for (case, attr, bad, edit) in bad_bodies() {
        let (status, body) = f.h.post("/Users", new_user(&edit)).await;
        assert_refused(&format!("POST: {case}"), status, &body, attr, bad);
        f.assert_nothing_changed(&format!("POST: {case}")).await;

        let mut replacement = new_user(&edit);
        replacement["userName"] = json!(TARGET);
        if replacement["emails"][0]["value"] == NEW {
            replacement["emails"][0]["value"] = json!(TARGET);
        }
        let (status, body) = f.h.put(&format!("/Users/{}", f.user), replacement).await;
        assert_refused(&format!("PUT: {case}"), status, &body, attr, bad);
        f.assert_nothing_changed(&format!("PUT: {case}")).await;
    }
}

#[tokio::test]
async fn patch_of_users_refuses_control_characters_and_wrong_types_in_every_form() {
    let f = Fixture::start().await;
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "a path value",
            "displayName",
            json!([{"op": "replace", "path": "displayName", "value": "Tar\r\nGet"}]),
        ),
        (
            "a value-filtered sub-attribute (Entra)",
            "emails.value",
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value",
                    "value": "target@acme.example.com\r\nBcc: evil@example.com"}]),
        ),
        (
            "a value-filtered element",
            "emails.value",
            json!([{"op": "replace", "path": "emails[type eq \"work\"]",
                    "value": {"type": "work", "value": "t\u{8}@acme.example.com"}}]),
        ),
        (
            "the type a `type eq` filter creates",
            "phoneNumbers.type",
            json!([{"op": "replace", "path": "phoneNumbers[type eq \"mo\r\nbile\"].value",
                    "value": "+1 555 0100"}]),
        ),
        (
            "an added element",
            "emails.value",
            json!([{"op": "add", "path": "emails", "value": [{"type": "home", "value": "h\n@x.io"}]}]),
        ),
        (
            "a no-path object (Okta)",
            "name.givenName",
            json!([{"op": "replace", "value": {"name": {"givenName": "Tar\tGet"}}}]),
        ),
        (
            "a no-path dotted key (Entra)",
            "name.familyName",
            json!([{"op": "replace", "value": {"name.familyName": "G\u{2029}et"}}]),
        ),
        (
            "an extension path",
            "employeeNumber",
            json!([{"op": "Replace",
                    "path": format!("{ENTERPRISE}:employeeNumber"), "value": "20\r482"}]),
        ),
        (
            "an extension object without a path",
            "department",
            json!([{"op": "add", "value": {ENTERPRISE: {"department": "Fin\nance"}}}]),
        ),
        (
            "a bare manager id",
            "manager.value",
            json!([{"op": "Add", "path": "manager", "value": "m\r\n1"}]),
        ),
        (
            "a number for externalId",
            "externalId",
            json!([{"op": "replace", "path": "externalId", "value": 1e40}]),
        ),
        (
            "an integer in emails",
            "emails.value",
            json!([{"op": "add", "path": "emails", "value": [{"type": "home", "value": 42}]}]),
        ),
        (
            "a number for active",
            "active",
            json!([{"op": "replace", "value": {"active": 0}}]),
        ),
        (
            "a valid operation before a refused one",
            "nickName",
            json!([{"op": "replace", "path": "title", "value": "Changed"},
                   {"op": "replace", "path": "nickName", "value": "Nick\u{1f}"}]),
        ),
    ];
    for (case, attr, ops) in cases {
        let (status, body) =
            f.h.patch(
                &format!("/Users/{}", f.user),
                json!({"schemas": [PATCH_OP], "Operations": ops}),
            )
            .await;
        assert_refused(case, status, &body, attr, Some("evil@example.com"));
        f.assert_nothing_changed(case).await;
    }
    // Entra's string boolean is still a boolean.
    let (status, body) =
        f.h.patch(
            &format!("/Users/{}", f.user),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Replace", "path": "active", "value": "False"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
}

#[tokio::test]
async fn group_writes_refuse_control_characters_and_wrong_types() {
    let f = Fixture::start().await;
    let group_path = format!("/Groups/{}", f.group);
    let posts: Vec<(&str, &str, Value)> = vec![
        (
            "CR LF in externalId",
            "externalId",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "New Group", "externalId": "e\r\n1"}),
        ),
        (
            "a number as a member id",
            "members.value",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "New Group", "members": [{"value": 42}]}),
        ),
        (
            "a bare string as a member",
            "members",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "New Group", "members": [f.user]}),
        ),
        (
            "LF in a member's display",
            "members.display",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "New Group",
                   "members": [{"value": f.user, "display": "Tar\nGet"}]}),
        ),
    ];
    for (case, attr, body) in posts {
        let (status, answer) = f.h.post("/Groups", body.clone()).await;
        assert_refused(&format!("POST: {case}"), status, &answer, attr, None);
        f.assert_nothing_changed(&format!("POST: {case}")).await;
        let mut put = body;
        put["displayName"] = json!("Validated");
        let (status, answer) = f.h.put(&group_path, put).await;
        assert_refused(&format!("PUT: {case}"), status, &answer, attr, None);
        f.assert_nothing_changed(&format!("PUT: {case}")).await;
    }
    for (case, attr, ops) in [
        (
            "a number as an added member",
            "members.value",
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": 42}]}]),
        ),
        (
            "NUL in externalId without a path",
            "externalId",
            json!([{"op": "replace", "value": {"externalId": "e\u{0}"}}]),
        ),
    ] {
        let (status, body) =
            f.h.patch(
                &group_path,
                json!({"schemas": [PATCH_OP], "Operations": ops}),
            )
            .await;
        assert_refused(case, status, &body, attr, None);
        f.assert_nothing_changed(case).await;
    }
}

#[tokio::test]
async fn bulk_operations_refuse_control_characters_and_wrong_types() {
    let f = Fixture::start().await;
    let user_path = format!("/Users/{}", f.user);
    let bulk = json!({"schemas": [BULK_REQUEST], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u1",
         "data": new_user(|u| u["emails"][0]["value"] = json!(format!("{NEW}\r\nBcc: evil@example.com")))},
        {"method": "PUT", "path": user_path,
         "data": {"schemas": [USER_SCHEMA], "userName": TARGET, "externalId": 1e40}},
        {"method": "PATCH", "path": user_path,
         "data": {"schemas": [PATCH_OP], "Operations": [
             {"op": "replace", "path": "name.givenName", "value": "Tar\u{1}"}]}},
        {"method": "POST", "path": "/Groups", "bulkId": "g1",
         "data": {"schemas": [GROUP_SCHEMA], "displayName": "Bulk Group", "externalId": "x\ny"}},
    ]});
    let (status, body) = f.h.post("/Bulk", bulk).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ops = body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 4, "{body}");
    for (op, attr) in ops
        .iter()
        .zip(["emails.value", "externalId", "name.givenName", "externalId"])
    {
        let response = &op["response"];
        assert_eq!(op["status"], "400", "{op}");
        assert_refused(
            &format!("bulk {}", op["method"]),
            StatusCode::BAD_REQUEST,
            response,
            attr,
            Some("evil@example.com"),
        );
    }
    f.assert_nothing_changed("bulk").await;
}

#[tokio::test]
async fn valid_text_in_every_script_is_still_stored_as_sent() {
    let f = Fixture::start().await;
    // Accents, emoji with joiners, right-to-left text with marks and an override, a
    // non-breaking space: none of them is a control character.
    let given = "Zoë 👩🏽‍💻";
    let family = "שלום \u{202E}עולם\u{200F}";
    let title = "Head\u{a0}of Data";
    let (status, body) =
        f.h.post(
            "/Users",
            new_user(|u| {
                u["name"] = json!({"givenName": given, "familyName": family});
                u["title"] = json!(title);
                u["active"] = json!("True");
                u[ENTERPRISE] = json!({"manager": f.user.clone(), "employeeNumber": "0042"});
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"]["givenName"], given);
    assert_eq!(body["name"]["familyName"], family);
    assert_eq!(body["title"], title);
    assert_eq!(body["active"], true);
    assert_eq!(body[ENTERPRISE]["manager"]["value"], f.user);
    assert_eq!(body[ENTERPRISE]["employeeNumber"], "0042");
    f.h.settle(Duration::from_secs(10)).await;
    let p = f.h.partner_user("acme", NEW).unwrap();
    assert_eq!(p.first_name, given);
    assert_eq!(p.last_name, family);
}
