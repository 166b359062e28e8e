//! The store, one suite for both back ends: every `case_*` runs on a fresh SQLite file and, when
//! `SCIM_BRIDGE_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL schema of its own (created
//! for the test, dropped after), so tests run in parallel. Without it those cases print that
//! they skip, unless `SCIM_BRIDGE_TEST_POSTGRES_REQUIRED=1` (CI) makes them fail instead.

use std::future::Future;
use std::time::{Duration, Instant};

use scim_bridge::store::{
    AuditEntry, Backend, GroupRow, IndexTerm, MembershipChange, OutboxItem, Store, StoreError,
    UserRow,
};
use serde_json::json;

use crate::support::{for_each_backend_url, with_postgres_url, PG_ENV, PG_REQUIRED_ENV};

/// Runs `case` on a connected, migrated store of each back end.
async fn for_each_backend<F, Fut>(case: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    for_each_backend_url(|url| {
        let case = &case;
        async move {
            let store = connect(&url).await;
            case(store.clone()).await;
            store.close().await;
        }
    })
    .await;
}

async fn connect(url: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn user(tenant: &str, id: &str, user_name: &str, created_ms: i64) -> UserRow {
    let email = format!("{}@example.com", user_name.to_lowercase());
    UserRow {
        tenant: tenant.into(),
        id: id.into(),
        user_name: user_name.into(),
        external_id: Some(format!("ext-{id}")),
        active: true,
        partner_email: email.clone(),
        emails: vec![email.clone(), format!("{id}@Other.example")],
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id,
            "userName": user_name,
            "emails": [{"value": email, "primary": true}],
        }),
        created_ms,
        last_modified_ms: created_ms,
        version: 1,
    }
}

fn group(tenant: &str, id: &str, display_name: &str, created_ms: i64) -> GroupRow {
    GroupRow {
        tenant: tenant.into(),
        id: id.into(),
        display_name: display_name.into(),
        external_id: Some(format!("ext-{id}")),
        partner_name: display_name.into(),
        access: None,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": id,
            "displayName": display_name,
        }),
        created_ms,
        last_modified_ms: created_ms,
        version: 1,
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn user_ids(rows: &[UserRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn group_ids(rows: &[GroupRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn change<'a>(
    tenant: &'a str,
    group_id: &'a str,
    add: &'a [String],
    remove: &'a [String],
    sites: &'a [String],
    now_ms: i64,
) -> MembershipChange<'a> {
    MembershipChange {
        tenant,
        group: None,
        group_id,
        add,
        remove,
        also_mark: &[],
        sites,
        now_ms,
    }
}

fn conflict_on(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Conflict { what }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Claims everything due at `now_ms` (long lease).
async fn claim_all(store: &Store, now_ms: i64) -> Vec<OutboxItem> {
    store
        .claim_outbox("w", 10_000, Duration::from_secs(60), now_ms)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn store_migrate_twice_is_idempotent() {
    for_each_backend_url(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        store.ping().await.unwrap();
        assert!(!store.migrations_applied().await.unwrap());
        store.migrate().await.unwrap();
        assert!(store.migrations_applied().await.unwrap());
        store.migrate().await.unwrap();
        assert!(store.migrations_applied().await.unwrap());
        let expected = if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        assert_eq!(store.backend(), expected);
        store.close().await;
    })
    .await;
}

/// A store at migration 1 whose users share a partner email cannot take migration 2 (a unique
/// index on it): `migrate` says so before trying, naming the tenant, how many emails are shared
/// and by which user ids (not the emails), and how to repair it; once repaired, it migrates.
#[tokio::test]
async fn migrate_names_users_sharing_a_partner_email_before_the_unique_index() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
    // The store as the release with migration 1 alone left it.
    let first = dir.path().join("migrations");
    std::fs::create_dir(&first).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_init.sql"
        ),
        first.join("0001_init.sql"),
    )
    .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(first.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (tenant, id, email) in [
        ("acme", "u1", "Ann@x.com"),
        ("acme", "u2", "ann@X.com"),
        ("acme", "u3", "bob@x.com"),
        ("acme", "u4", "Bob@x.com"),
        ("acme", "u5", "cy@x.com"),
        ("beta", "u6", "ann@x.com"),
        ("acme", "u7", ""),
        ("acme", "u8", ""),
    ] {
        sqlx::query(
            "INSERT INTO users (tenant, id, user_name, user_name_lc, active, partner_email, \
             partner_email_lc, emails, resource, created_ms, last_modified_ms, version) \
             VALUES ($1, $2, $2, $2, TRUE, $3, lower($3), '[]', '{}', 1, 1, 1)",
        )
        .bind(tenant)
        .bind(id)
        .bind(email)
        .execute(&pool)
        .await
        .unwrap();
    }

    let store = Store::connect(&url).await.unwrap();
    let err = store.migrate().await.unwrap_err().to_string();
    for expected in [
        "cannot apply migration 2 (one SCIM user per partner email)",
        "tenant 'acme': 2 partner emails held by more than one user",
        "[u1, u2] [u3, u4]",
        "delete the others",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    // No email in the message, and nothing about the other tenant or users without email.
    assert!(!err.to_lowercase().contains("@x.com"), "{err}");
    assert!(!err.contains("beta") && !err.contains("u7"), "{err}");
    assert!(!store.migrations_applied().await.unwrap());

    // Repaired: one user per email. Migration 2 applies, and the check is not run again.
    sqlx::query("DELETE FROM users WHERE id IN ('u2', 'u4')")
        .execute(&pool)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(store.migrations_applied().await.unwrap());
    assert!(store.get_user("acme", "u1").await.unwrap().is_some());
    store.migrate().await.unwrap();
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn store_in_memory_sqlite_works() {
    let store = connect("sqlite::memory:").await;
    store
        .insert_user(&user("a", "u1", "alice", 1))
        .await
        .unwrap();
    assert!(store.get_user("a", "u1").await.unwrap().is_some());
}

#[tokio::test]
async fn store_bad_url_is_refused_without_echoing_it() {
    let err = Store::connect("mysql://root:hunter2@db/x")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // Nothing listens on port 1: unavailable, and the password is not in the message.
    let err = Store::connect("postgres://app:hunter2@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn store_user_insert_get_update_delete() {
    for_each_backend(|store| async move {
        let mut alice = user("a", "u1", "Alice", 10);
        // `groups` is derived: not stored, and taking it out keeps the other keys' order.
        let stored = alice.resource.clone();
        alice.resource = json!({
            "schemas": stored["schemas"],
            "id": "u1",
            "groups": [{"value": "g1"}],
            "userName": "Alice",
            "emails": stored["emails"],
        });
        store.insert_user(&alice).await.unwrap();

        let got = store.get_user("a", "u1").await.unwrap().unwrap();
        assert!(got.resource.get("groups").is_none());
        // Key order survives the round trip (the canonical JSON is served as stored).
        let keys: Vec<&String> = got.resource.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["schemas", "id", "userName", "emails"]);
        alice.resource = stored;
        assert_eq!(got, alice);
        let by_name = store.get_user_by_user_name("a", "ALICE").await.unwrap();
        assert_eq!(by_name.unwrap().id, "u1");
        let by_email = store
            .users_by_partner_email("a", "Alice@Example.com")
            .await
            .unwrap();
        assert_eq!(user_ids(&by_email), ["u1"]);
        assert_eq!(store.get_user("a", "nope").await.unwrap(), None);

        let mut changed = got.clone();
        changed.user_name = "alice.smith".into();
        changed.active = false;
        changed.emails = vec!["alice.smith@example.com".into()];
        changed.external_id = None;
        changed.last_modified_ms = 20;
        changed.created_ms = 999; // ignored: created is kept
        changed.version = 2;
        store.update_user(&changed, 1).await.unwrap();
        let got = store.get_user("a", "u1").await.unwrap().unwrap();
        assert_eq!(got.user_name, "alice.smith");
        assert!(!got.active);
        assert_eq!(got.external_id, None);
        assert_eq!(got.created_ms, 10);
        assert_eq!(got.last_modified_ms, 20);
        assert_eq!(got.version, 2);
        // The email index follows the update.
        let old = IndexTerm::EmailValue("alice@example.com".into());
        assert!(store.find_users("a", &[old]).await.unwrap().is_empty());
        let new = IndexTerm::EmailValue("ALICE.SMITH@example.com".into());
        assert_eq!(
            user_ids(&store.find_users("a", &[new]).await.unwrap()),
            ["u1"]
        );

        assert_eq!(
            store.delete_user("a", "u1", None, &[]).await.unwrap().0,
            Vec::<String>::new()
        );
        assert_eq!(store.get_user("a", "u1").await.unwrap(), None);
        assert!(matches!(
            store.delete_user("a", "u1", None, &[]).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.update_user(&changed, 2).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn store_group_insert_get_update_delete() {
    for_each_backend(|store| async move {
        let mut admins = group("a", "g1", "Admins", 10);
        admins.access = Some("SQL".into());
        admins.resource["members"] = json!([{"value": "u1"}]); // derived: not stored
        store.insert_group(&admins).await.unwrap();
        let got = store.get_group("a", "g1").await.unwrap().unwrap();
        assert!(got.resource.get("members").is_none());
        assert_eq!(got.access.as_deref(), Some("SQL"));
        let by_name = store
            .get_group_by_display_name("a", "admins")
            .await
            .unwrap();
        assert_eq!(by_name.unwrap().id, "g1");

        let mut renamed = got.clone();
        renamed.display_name = "Administrators".into();
        renamed.partner_name = "Administrators".into();
        renamed.access = None;
        renamed.version = 2;
        store.update_group(&renamed, 1).await.unwrap();
        let got = store.get_group("a", "g1").await.unwrap().unwrap();
        assert_eq!(got, renamed);
        assert_eq!(
            store.managed_group_names("a").await.unwrap(),
            ["Administrators"]
        );

        assert_eq!(
            store.delete_group("a", "g1").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.get_group("a", "g1").await.unwrap(), None);
        assert!(matches!(
            store.delete_group("a", "g1").await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn store_user_name_uniqueness_is_case_insensitive() {
    for_each_backend(|store| async move {
        store
            .insert_user(&user("a", "u1", "Alice", 1))
            .await
            .unwrap();
        // Another partner email, so only the userName collides.
        let mut other = user("a", "u2", "alice", 2);
        other.partner_email = "someone.else@example.com".into();
        let what = conflict_on(store.insert_user(&other).await);
        assert_eq!(what, "userName");
        let what = conflict_on(
            store.insert_user(&user("a", "u2", "ÁLICE", 2)).await.and(
                store
                    .insert_user(&UserRow {
                        partner_email: "u3@example.com".into(),
                        ..user("a", "u3", "álice", 3)
                    })
                    .await,
            ),
        );
        assert_eq!(what, "userName");
        let what = conflict_on(
            store
                .insert_user(&UserRow {
                    partner_email: "u1-bob@example.com".into(),
                    ..user("a", "u1", "bob", 3)
                })
                .await,
        );
        assert_eq!(what, "id");
        // Another tenant has its own namespace.
        store
            .insert_user(&user("b", "u1", "alice", 4))
            .await
            .unwrap();
        // Renaming into a taken name conflicts; renaming one's own case does not.
        store
            .insert_user(&user("a", "u4", "carol", 5))
            .await
            .unwrap();
        let mut carol = store.get_user("a", "u4").await.unwrap().unwrap();
        carol.user_name = "ALICE".into();
        assert_eq!(conflict_on(store.update_user(&carol, 1).await), "userName");
        carol.user_name = "Carol".into();
        store.update_user(&carol, 1).await.unwrap();
        assert_eq!(store.count_users("a").await.unwrap(), 3);
    })
    .await;
}

#[tokio::test]
async fn store_display_name_uniqueness_is_case_insensitive() {
    for_each_backend(|store| async move {
        store
            .insert_group(&group("a", "g1", "Admins", 1))
            .await
            .unwrap();
        let what = conflict_on(store.insert_group(&group("a", "g2", "ADMINS", 2)).await);
        assert_eq!(what, "displayName");
        let what = conflict_on(store.insert_group(&group("a", "g1", "Other", 2)).await);
        assert_eq!(what, "id");
        store
            .insert_group(&group("b", "g1", "admins", 3))
            .await
            .unwrap();
        store
            .insert_group(&group("a", "g2", "Sales", 4))
            .await
            .unwrap();
        let mut sales = store.get_group("a", "g2").await.unwrap().unwrap();
        sales.display_name = "admins".into();
        assert_eq!(
            conflict_on(store.update_group(&sales, 1).await),
            "displayName"
        );
        // The same conflict inside the membership transaction.
        let sites = ids(&["s1"]);
        let result = store
            .change_memberships(&MembershipChange {
                group: Some((&sales, 1)),
                ..change("a", "g2", &[], &[], &sites, 5)
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict { .. })),
            "{result:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn store_version_mismatch_is_reported() {
    for_each_backend(|store| async move {
        let alice = user("a", "u1", "alice", 1);
        store.insert_user(&alice).await.unwrap();
        store.update_user(&alice, 1).await.unwrap(); // now version 2
        assert!(matches!(
            store.update_user(&alice, 1).await,
            Err(StoreError::VersionMismatch)
        ));
        store.update_user(&alice, 2).await.unwrap();
        assert_eq!(store.get_user("a", "u1").await.unwrap().unwrap().version, 3);

        let admins = group("a", "g1", "Admins", 1);
        store.insert_group(&admins).await.unwrap();
        assert!(matches!(
            store.update_group(&admins, 7).await,
            Err(StoreError::VersionMismatch)
        ));
        assert!(matches!(
            store.update_group(&group("a", "nope", "X", 1), 1).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn store_find_by_every_index_term() {
    for_each_backend(|store| async move {
        store
            .insert_user(&user("a", "u1", "Alice", 1))
            .await
            .unwrap();
        store.insert_user(&user("a", "u2", "Bob", 2)).await.unwrap();
        let mut carol = user("a", "u3", "Carol", 3);
        carol.external_id = Some("EXT-shared".into());
        carol.emails.push("shared@example.com".into());
        store.insert_user(&carol).await.unwrap();
        let mut dave = user("a", "u4", "Dave", 4);
        dave.external_id = Some("EXT-shared".into());
        dave.emails.push("SHARED@example.com".into());
        store.insert_user(&dave).await.unwrap();

        let find = |terms: Vec<IndexTerm>| {
            let store = store.clone();
            async move { store.find_users("a", &terms).await.unwrap() }
        };
        use IndexTerm::*;
        assert_eq!(user_ids(&find(vec![]).await), ["u1", "u2", "u3", "u4"]);
        assert_eq!(user_ids(&find(vec![Id("u2".into())]).await), ["u2"]);
        assert_eq!(user_ids(&find(vec![UserName("bOB".into())]).await), ["u2"]);
        assert_eq!(
            user_ids(&find(vec![ExternalId("ext-u1".into())]).await),
            ["u1"]
        );
        assert!(find(vec![ExternalId("EXT-U1".into())]).await.is_empty()); // case-exact
        assert_eq!(
            user_ids(&find(vec![ExternalId("EXT-shared".into())]).await),
            ["u3", "u4"]
        );
        assert_eq!(
            user_ids(&find(vec![EmailValue("Shared@Example.COM".into())]).await),
            ["u3", "u4"]
        );
        assert_eq!(
            user_ids(&find(vec![EmailValue("u2@other.EXAMPLE".into())]).await),
            ["u2"]
        );
        // Conjunctions.
        assert_eq!(
            user_ids(
                &find(vec![
                    ExternalId("EXT-shared".into()),
                    EmailValue("shared@example.com".into()),
                    UserName("dave".into()),
                ])
                .await
            ),
            ["u4"]
        );
        assert!(find(vec![Id("u1".into()), UserName("bob".into())])
            .await
            .is_empty());
        assert!(matches!(
            store.find_users("a", &[DisplayName("x".into())]).await,
            Err(StoreError::Other(_))
        ));
        assert_eq!(
            user_ids(
                &store
                    .users_by_ids("a", &ids(&["u4", "nope", "u1", "u4"]))
                    .await
                    .unwrap()
            ),
            ["u1", "u4"]
        );

        store
            .insert_group(&group("a", "g1", "Admins", 1))
            .await
            .unwrap();
        store
            .insert_group(&group("a", "g2", "Sales", 2))
            .await
            .unwrap();
        let sites = ids(&["s1"]);
        store
            .change_memberships(&change("a", "g1", &ids(&["u1", "u2"]), &[], &sites, 10))
            .await
            .unwrap();
        store
            .change_memberships(&change("a", "g2", &ids(&["u2"]), &[], &sites, 10))
            .await
            .unwrap();
        let find = |terms: Vec<IndexTerm>| {
            let store = store.clone();
            async move { store.find_groups("a", &terms).await.unwrap() }
        };
        assert_eq!(group_ids(&find(vec![]).await), ["g1", "g2"]);
        assert_eq!(group_ids(&find(vec![Id("g2".into())]).await), ["g2"]);
        assert_eq!(
            group_ids(&find(vec![DisplayName("sALES".into())]).await),
            ["g2"]
        );
        assert_eq!(
            group_ids(&find(vec![ExternalId("ext-g1".into())]).await),
            ["g1"]
        );
        assert_eq!(
            group_ids(&find(vec![MemberValue("u2".into())]).await),
            ["g1", "g2"]
        );
        assert_eq!(
            group_ids(&find(vec![MemberValue("u1".into())]).await),
            ["g1"]
        );
        assert!(find(vec![MemberValue("u3".into())]).await.is_empty());
        assert_eq!(
            group_ids(&find(vec![MemberValue("u2".into()), DisplayName("admins".into())]).await),
            ["g1"]
        );
        assert!(matches!(
            store.find_groups("a", &[UserName("x".into())]).await,
            Err(StoreError::Other(_))
        ));
        assert_eq!(
            group_ids(&store.groups_of_user("a", "u2").await.unwrap()),
            ["g1", "g2"]
        );
        // The same for a page of users at once.
        let many = store
            .groups_of_users("a", &["u1".into(), "u2".into(), "u3".into(), "u2".into()])
            .await
            .unwrap();
        assert_eq!(group_ids(&many["u1"]), ["g1"]);
        assert_eq!(group_ids(&many["u2"]), ["g1", "g2"]);
        assert!(!many.contains_key("u3"));
        assert_eq!(
            store.group_member_ids("a", "g1").await.unwrap(),
            ["u1", "u2"]
        );
        assert_eq!(store.member_count("a", "g1").await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn store_paging_order_is_stable() {
    for_each_backend(|store| async move {
        // Several users share a creation time: the id breaks the tie.
        let rows: Vec<UserRow> = (0..25)
            .map(|i| user("a", &format!("u{:02}", 24 - i), &format!("n{i}"), i / 5))
            .collect();
        store.insert_users(&rows).await.unwrap();
        let all = store.find_users("a", &[]).await.unwrap();
        let mut expected: Vec<(i64, String)> =
            rows.iter().map(|r| (r.created_ms, r.id.clone())).collect();
        expected.sort();
        let got: Vec<(i64, String)> = all.iter().map(|r| (r.created_ms, r.id.clone())).collect();
        assert_eq!(got, expected);
        let mut paged = Vec::new();
        for page in 0..3 {
            paged.extend(store.list_users_page("a", page * 10, 10).await.unwrap());
        }
        assert_eq!(paged, all);
        assert!(store.list_users_page("a", 25, 10).await.unwrap().is_empty());
        assert_eq!(store.count_users("a").await.unwrap(), 25);

        for i in 0..5 {
            store
                .insert_group(&group("a", &format!("g{}", 4 - i), &format!("G{i}"), 0))
                .await
                .unwrap();
        }
        let groups = store.list_groups_page("a", 1, 3).await.unwrap();
        assert_eq!(group_ids(&groups), ["g1", "g2", "g3"]);
        assert_eq!(store.count_groups("a").await.unwrap(), 5);
    })
    .await;
}

#[tokio::test]
async fn store_tenants_are_isolated() {
    for_each_backend(|store| async move {
        let alice = user("a", "u1", "alice", 1);
        store.insert_user(&alice).await.unwrap();
        store
            .insert_group(&group("a", "g1", "Admins", 1))
            .await
            .unwrap();
        let sites = ids(&["s1"]);
        store
            .change_memberships(&change("a", "g1", &ids(&["u1"]), &[], &sites, 1))
            .await
            .unwrap();
        store.append_audit(&audit("a", 1)).await.unwrap();

        use IndexTerm::*;
        assert_eq!(store.get_user("b", "u1").await.unwrap(), None);
        assert_eq!(
            store.get_user_by_user_name("b", "alice").await.unwrap(),
            None
        );
        assert!(store
            .users_by_partner_email("b", "alice@example.com")
            .await
            .unwrap()
            .is_empty());
        for term in [
            Id("u1".into()),
            UserName("alice".into()),
            ExternalId("ext-u1".into()),
            EmailValue("alice@example.com".into()),
        ] {
            assert!(store.find_users("b", &[term]).await.unwrap().is_empty());
        }
        assert!(store.find_users("b", &[]).await.unwrap().is_empty());
        assert_eq!(store.count_users("b").await.unwrap(), 0);
        assert!(store.list_users_page("b", 0, 10).await.unwrap().is_empty());
        assert!(store
            .users_by_ids("b", &ids(&["u1"]))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.get_group("b", "g1").await.unwrap(), None);
        for term in [
            Id("g1".into()),
            DisplayName("admins".into()),
            ExternalId("ext-g1".into()),
            MemberValue("u1".into()),
        ] {
            assert!(store.find_groups("b", &[term]).await.unwrap().is_empty());
        }
        assert_eq!(store.count_groups("b").await.unwrap(), 0);
        assert!(store.list_groups_page("b", 0, 10).await.unwrap().is_empty());
        assert!(store.managed_group_names("b").await.unwrap().is_empty());
        assert!(store.group_member_ids("b", "g1").await.unwrap().is_empty());
        assert!(store.groups_of_user("b", "u1").await.unwrap().is_empty());
        assert!(store
            .groups_of_users("b", &["u1".into()])
            .await
            .unwrap()
            .is_empty());
        assert!(store.audit_entries("b", 10).await.unwrap().is_empty());
        // Writes in tenant b cannot reach tenant a's rows.
        let mut hijack = alice.clone();
        hijack.tenant = "b".into();
        assert!(matches!(
            store.update_user(&hijack, 1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.delete_user("b", "u1", None, &[]).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.delete_group("b", "g1").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store
                .change_memberships(&change("b", "g1", &[], &ids(&["u1"]), &sites, 2))
                .await,
            Err(StoreError::NotFound)
        ));
        // A user of tenant b cannot join tenant a's group, nor a's user b's group.
        store.insert_user(&user("b", "u2", "bob", 1)).await.unwrap();
        assert!(matches!(
            store
                .change_memberships(&change("a", "g1", &ids(&["u2"]), &[], &sites, 2))
                .await,
            Err(StoreError::NotFound)
        ));
        // Tenant a is untouched.
        assert_eq!(store.group_member_ids("a", "g1").await.unwrap(), ["u1"]);
        assert_eq!(store.get_user("a", "u1").await.unwrap().unwrap(), alice);
        assert_eq!(store.audit_entries("a", 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn store_change_memberships_is_atomic() {
    for_each_backend(|store| async move {
        store
            .insert_users(&[user("a", "u1", "alice", 1), user("a", "u2", "bob", 1)])
            .await
            .unwrap();
        let admins = group("a", "g1", "Admins", 1);
        store.insert_group(&admins).await.unwrap();
        let sites = ids(&["s1", "s2"]);
        let add = ids(&["u1", "u2"]);

        // Stale group version: nothing is written.
        let mut renamed = admins.clone();
        renamed.display_name = "Renamed".into();
        let result = store
            .change_memberships(&MembershipChange {
                group: Some((&renamed, 5)),
                ..change("a", "g1", &add, &[], &sites, 10)
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::VersionMismatch)),
            "{result:?}"
        );
        assert!(store.group_member_ids("a", "g1").await.unwrap().is_empty());
        assert_eq!(store.outbox_stats().await.unwrap().depth, 0);
        assert_eq!(
            store
                .get_group("a", "g1")
                .await
                .unwrap()
                .unwrap()
                .display_name,
            "Admins"
        );

        // An unknown member: nothing is written either.
        let bad = ids(&["u1", "ghost"]);
        let result = store
            .change_memberships(&change("a", "g1", &bad, &[], &sites, 10))
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
        assert!(store.group_member_ids("a", "g1").await.unwrap().is_empty());
        assert_eq!(store.outbox_stats().await.unwrap().depth, 0);

        // The right version: group, memberships and marks together.
        let marks = store
            .change_memberships(&MembershipChange {
                group: Some((&renamed, 1)),
                also_mark: &ids(&["u9"]),
                ..change("a", "g1", &add, &[], &sites, 10)
            })
            .await
            .unwrap();
        let group_now = store.get_group("a", "g1").await.unwrap().unwrap();
        assert_eq!(
            (group_now.display_name.as_str(), group_now.version),
            ("Renamed", 2)
        );
        assert_eq!(
            store.group_member_ids("a", "g1").await.unwrap(),
            ["u1", "u2"]
        );
        let mut marked: Vec<(String, String)> = marks
            .iter()
            .map(|m| (m.site.clone(), m.user_id.clone()))
            .collect();
        marked.sort();
        let expected: Vec<(String, String)> = ["s1", "s2"]
            .iter()
            .flat_map(|s| ["u1", "u2", "u9"].map(|u| (s.to_string(), u.to_string())))
            .collect();
        assert_eq!(marked, expected);
        assert_eq!(store.outbox_pending(&marks).await.unwrap(), 6);
    })
    .await;
}

#[tokio::test]
async fn store_adding_an_existing_member_is_ignored() {
    for_each_backend(|store| async move {
        store
            .insert_users(&[user("a", "u1", "alice", 1), user("a", "u2", "bob", 1)])
            .await
            .unwrap();
        store
            .insert_group(&group("a", "g1", "Admins", 1))
            .await
            .unwrap();
        let sites = ids(&["s1"]);
        store
            .change_memberships(&change("a", "g1", &ids(&["u1"]), &[], &sites, 1))
            .await
            .unwrap();
        let marks = store
            .change_memberships(&change(
                "a",
                "g1",
                &ids(&["u1", "u2", "u2"]),
                &[],
                &sites,
                2,
            ))
            .await
            .unwrap();
        assert_eq!(marks.len(), 2);
        assert_eq!(
            store.group_member_ids("a", "g1").await.unwrap(),
            ["u1", "u2"]
        );
        // Removing a non-member is ignored too; a user both added and removed ends up removed.
        store
            .change_memberships(&change(
                "a",
                "g1",
                &ids(&["u1"]),
                &ids(&["u1", "u7"]),
                &sites,
                3,
            ))
            .await
            .unwrap();
        assert_eq!(store.group_member_ids("a", "g1").await.unwrap(), ["u2"]);
    })
    .await;
}

#[tokio::test]
async fn store_outbox_remark_bumps_generation_and_makes_due_now() {
    for_each_backend(|store| async move {
        let sites = ids(&["s1"]);
        let users = ids(&["u1"]);
        let first = store
            .mark_outbox_at("a", &sites, &users, 1_000)
            .await
            .unwrap();
        let second = store
            .mark_outbox_at("a", &sites, &users, 1_000)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(second[0].generation > first[0].generation);
        // A failed row waits for its retry time; a new mark makes it due again.
        let item = claim_all(&store, 1_000).await.remove(0);
        store.fail_outbox(&item, "boom", 50_000).await.unwrap();
        assert!(claim_all(&store, 2_000).await.is_empty());
        let third = store
            .mark_outbox_at("a", &sites, &users, 2_000)
            .await
            .unwrap();
        assert!(third[0].generation > second[0].generation);
        let again = claim_all(&store, 2_000).await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("boom"));
        assert_eq!(store.outbox_stats().await.unwrap().failing, 1);
        // Wall-clock marking works too.
        let now = store.mark_outbox("a", &sites, &ids(&["u2"])).await.unwrap();
        assert_eq!(now.len(), 1);
        assert!(store
            .mark_outbox("a", &[], &users)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn store_outbox_claim_complete_fail() {
    for_each_backend(|store| async move {
        let sites = ids(&["s1", "s2"]);
        let users = ids(&["u1", "u2"]);
        let marks = store
            .mark_outbox_at("a", &sites, &users, 1_000)
            .await
            .unwrap();
        assert_eq!(marks.len(), 4);
        assert_eq!(store.outbox_pending(&marks).await.unwrap(), 4);
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!(
            (stats.depth, stats.oldest_due_ms, stats.failing),
            (4, Some(1_000), 0)
        );

        // Not due yet.
        assert!(claim_all(&store, 999).await.is_empty());
        // Claimed rows are leased.
        let lease = Duration::from_millis(500);
        let batch = store.claim_outbox("w1", 3, lease, 1_000).await.unwrap();
        assert_eq!(batch.len(), 3);
        let mut rest = store.claim_outbox("w2", 10, lease, 1_100).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert!(store
            .claim_outbox("w2", 10, lease, 1_200)
            .await
            .unwrap()
            .is_empty());
        // Released claims: on SQLite (one process) a start frees its predecessor's claims at
        // once; on PostgreSQL claims may belong to live replicas and stay.
        let released = store.release_stale_claims().await.unwrap();
        match store.backend() {
            Backend::Sqlite => {
                assert_eq!(released, 4);
                // Claimable at once; claim them as before to keep the rest of the case.
                let again = store.claim_outbox("w1", 3, lease, 1_000).await.unwrap();
                assert_eq!(again.len(), 3);
                let again = store.claim_outbox("w2", 10, lease, 1_100).await.unwrap();
                assert_eq!(again.len(), 1);
                // The new claim holds the row now (a new token fences the old one).
                assert_ne!(again[0].token, rest[0].token);
                rest = again;
            }
            Backend::Postgres => assert_eq!(released, 0),
        }
        // After the lease, a row is claimable again.
        let expired = store.claim_outbox("w3", 10, lease, 1_501).await.unwrap();
        assert_eq!(expired.len(), 3);

        // Complete: the row is deleted, its mark is done.
        assert!(store.complete_outbox(&expired[0]).await.unwrap());
        assert_eq!(store.outbox_pending(&marks).await.unwrap(), 3);
        // Completing a row that is already gone is done too.
        assert!(store.complete_outbox(&expired[0]).await.unwrap());

        // Fail: attempts, error, due later, claim released.
        store
            .fail_outbox(&expired[1], "partner 503", 9_000)
            .await
            .unwrap();
        let holders = claim_all(&store, 8_999).await;
        assert!(holders
            .iter()
            .all(|i| i.user_id != expired[1].user_id || i.site != expired[1].site));
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!(stats.failing, 1);

        // Re-marked while claimed: the mark does not steal the claim, completing keeps the row
        // (unclaimed, due) for another run, and only the newer mark stays pending.
        // The row of `rest[0]` is held by the claim just made (its token fences the older).
        let item = holders
            .iter()
            .find(|i| i.user_id == rest[0].user_id && i.site == rest[0].site)
            .expect("rest[0]'s row was claimed again")
            .clone();
        assert!(!store.complete_outbox(&rest[0]).await.unwrap());
        let one_site = vec![item.site.clone()];
        let one_user = vec![item.user_id.clone()];
        let newer = store
            .mark_outbox_at("a", &one_site, &one_user, 1_600)
            .await
            .unwrap();
        assert!(store
            .claim_outbox("w4", 10, lease, 1_650)
            .await
            .unwrap()
            .iter()
            .all(|i| i.user_id != item.user_id || i.site != item.site));
        let old_mark = marks
            .iter()
            .find(|m| m.site == item.site && m.user_id == item.user_id)
            .unwrap()
            .clone();
        assert!(!store.complete_outbox(&item).await.unwrap());
        assert_eq!(
            store
                .outbox_pending(std::slice::from_ref(&old_mark))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.outbox_pending(&newer).await.unwrap(), 1);
        let again = store.claim_outbox("w5", 10, lease, 1_700).await.unwrap();
        let again = again
            .into_iter()
            .find(|i| i.user_id == item.user_id && i.site == item.site)
            .expect("the re-marked row is claimable again");
        assert_eq!(again.generation, newer[0].generation);
        assert!(store.complete_outbox(&again).await.unwrap());
        assert_eq!(store.outbox_pending(&newer).await.unwrap(), 0);
        assert_eq!(store.outbox_pending(&[old_mark]).await.unwrap(), 0);

        // A mark of a deleted row is done, even once the (site, user) is marked again.
        let before = store
            .mark_outbox_at("a", &one_site, &one_user, 2_000)
            .await
            .unwrap();
        let claimed = claim_all(&store, 2_000).await;
        for i in claimed
            .iter()
            .filter(|i| i.user_id == item.user_id && i.site == item.site)
        {
            assert!(store.complete_outbox(i).await.unwrap());
        }
        let after = store
            .mark_outbox_at("a", &one_site, &one_user, 2_001)
            .await
            .unwrap();
        assert_eq!(store.outbox_pending(&before).await.unwrap(), 0);
        assert_eq!(store.outbox_pending(&after).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn store_concurrent_claimers_never_share_a_row() {
    for_each_backend_url(|url| async move {
        let first = connect(&url).await;
        let second = Store::connect(&url).await.unwrap();
        let users: Vec<String> = (0..200).map(|i| format!("u{i:03}")).collect();
        first
            .mark_outbox_at("a", &ids(&["s1"]), &users, 1_000)
            .await
            .unwrap();
        let claimer = |store: Store, name: &'static str| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_outbox(name, 7, Duration::from_secs(600), 2_000)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|i| i.user_id));
                }
            })
        };
        let (a, b) = tokio::join!(
            claimer(first.clone(), "one"),
            claimer(second.clone(), "two")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        eprintln!("claimer one took {}, claimer two took {}", a.len(), b.len());
        let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
        all.sort();
        let claimed = all.len();
        all.dedup();
        assert_eq!(all.len(), claimed, "a row was claimed twice");
        assert_eq!(all, users);
        first.close().await;
        second.close().await;
    })
    .await;
}

#[tokio::test]
async fn store_delete_user_removes_memberships_and_outbox_rows() {
    for_each_backend(|store| async move {
        store
            .insert_users(&[user("a", "u1", "alice", 1), user("a", "u2", "bob", 1)])
            .await
            .unwrap();
        store
            .insert_group(&group("a", "g1", "Admins", 1))
            .await
            .unwrap();
        store
            .insert_group(&group("a", "g2", "Sales", 2))
            .await
            .unwrap();
        let sites = ids(&["s1"]);
        let both = ids(&["u1", "u2"]);
        store
            .change_memberships(&change("a", "g1", &both, &[], &sites, 1))
            .await
            .unwrap();
        store
            .change_memberships(&change("a", "g2", &ids(&["u1"]), &[], &sites, 1))
            .await
            .unwrap();
        assert_eq!(
            store.delete_user("a", "u1", None, &[]).await.unwrap().0,
            ["g1", "g2"]
        );
        assert_eq!(store.group_member_ids("a", "g1").await.unwrap(), ["u2"]);
        assert!(store.group_member_ids("a", "g2").await.unwrap().is_empty());
        assert!(store.groups_of_user("a", "u1").await.unwrap().is_empty());
        let left: Vec<String> = claim_all(&store, 10)
            .await
            .into_iter()
            .map(|i| i.user_id)
            .collect();
        assert_eq!(left, ["u2"]);
        // The userName is free again.
        store
            .insert_user(&user("a", "u3", "ALICE", 5))
            .await
            .unwrap();

        // Deleting a group returns its members and can mark them in the same transaction.
        let (members, marks) = store
            .delete_group_marking("a", "g1", &sites, 20)
            .await
            .unwrap();
        assert_eq!(members, ["u2"]);
        assert_eq!(marks.len(), 1);
        assert!(store.groups_of_user("a", "u2").await.unwrap().is_empty());
    })
    .await;
}

fn audit(tenant: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        at_ms,
        tenant: tenant.into(),
        credential: "okta".into(),
        client: "203.0.113.7".into(),
        request_id: format!("req-{at_ms}"),
        operation: "create".into(),
        resource_type: "User".into(),
        resource_id: Some("u1".into()),
        status: 201,
        detail: None,
    }
}

#[tokio::test]
async fn store_audit_append_and_read_newest_first() {
    for_each_backend(|store| async move {
        for at in 1..=5 {
            store.append_audit(&audit("a", at)).await.unwrap();
        }
        let mut failed = audit("a", 6);
        failed.status = 409;
        failed.resource_id = None;
        failed.detail = Some("userName is already taken".into());
        store.append_audit(&failed).await.unwrap();
        let entries = store.audit_entries("a", 3).await.unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], failed);
        assert_eq!(entries[2], audit("a", 4));
        assert_eq!(store.prune_audit(3).await.unwrap(), 2);
        assert_eq!(store.audit_entries("a", 100).await.unwrap().len(), 4);
    })
    .await;
}

/// The entries' times, oldest first, of tenant `a`.
async fn audit_times(store: &Store) -> Vec<i64> {
    let mut at: Vec<i64> = store
        .audit_entries("a", 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.at_ms)
        .collect();
    at.sort_unstable();
    at
}

/// `audit.retention_days`: what the pruning job runs removes exactly the entries older than
/// the retention, in chunks, counts them, and removes nothing with a retention of 0; the job
/// started as `serve` starts it runs on its own.
#[tokio::test]
async fn audit_retention_removes_older_entries_and_keeps_newer_ones() {
    use scim_bridge::bridge::retention;
    use scim_bridge::telemetry::metrics::{self, Metrics};

    const DAY: i64 = 86_400_000;
    for_each_backend(|store| async move {
        let now = scim_bridge::bridge::now_ms();
        let ages_days = [400, 100, 91, 89, 30, 1];
        for d in ages_days {
            store
                .append_audit(&audit("a", now - d * DAY))
                .await
                .unwrap();
        }
        // One minute inside the retention stays, one minute past it goes.
        store
            .append_audit(&audit("a", now - 90 * DAY + 60_000))
            .await
            .unwrap();
        store
            .append_audit(&audit("a", now - 90 * DAY - 60_000))
            .await
            .unwrap();
        let m = Metrics::new().unwrap();

        // 0 keeps everything.
        assert_eq!(retention::prune_audit(&store, &m, 0, now).await.unwrap(), 0);
        assert_eq!(audit_times(&store).await.len(), 8);

        assert_eq!(
            retention::prune_audit(&store, &m, 90, now).await.unwrap(),
            4
        );
        assert_eq!(
            audit_times(&store).await,
            [
                now - 90 * DAY + 60_000,
                now - 89 * DAY,
                now - 30 * DAY,
                now - DAY
            ]
        );
        // Nothing more to do the second time.
        assert_eq!(
            retention::prune_audit(&store, &m, 90, now).await.unwrap(),
            0
        );
        assert!(
            m.render()
                .contains(&format!("{} 4\n", metrics::AUDIT_PRUNED)),
            "{}",
            m.render()
        );

        // A backlog larger than a chunk goes in several statements, all of it and only it.
        for i in 0..25 {
            store
                .append_audit(&audit("a", now - 200 * DAY + i))
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .prune_audit_in_chunks(now - 90 * DAY, 10)
                .await
                .unwrap(),
            25
        );
        assert_eq!(audit_times(&store).await.len(), 4);
        // A chunk size that divides the backlog exactly ends too.
        for i in 0..20 {
            store
                .append_audit(&audit("a", now - 200 * DAY + i))
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .prune_audit_in_chunks(now - 90 * DAY, 10)
                .await
                .unwrap(),
            20
        );
        assert_eq!(audit_times(&store).await.len(), 4);

        // The job: a first run soon after start, with a 1-day retention here.
        store
            .append_audit(&audit("a", now - 2 * DAY))
            .await
            .unwrap();
        store.append_audit(&audit("a", now)).await.unwrap();
        let job = retention::start(
            store.clone(),
            m.clone(),
            1,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )
        .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let left = audit_times(&store).await;
            // Only the entry younger than a day stays (`now - DAY` is a little older by now).
            if left == [now] {
                break;
            }
            assert!(Instant::now() < end, "the job did not prune: {left:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        job.abort();
        assert!(retention::start(
            store.clone(),
            m.clone(),
            0,
            Duration::ZERO,
            Duration::from_secs(1)
        )
        .is_none());
    })
    .await;
}

#[tokio::test]
async fn store_large_group_add_then_remove_one() {
    for_each_backend(|store| async move {
        let users: Vec<UserRow> = (0..5_000)
            .map(|i| user("a", &format!("u{i:05}"), &format!("user{i}"), i))
            .collect();
        store.insert_users(&users).await.unwrap();
        store
            .insert_group(&group("a", "big", "Everyone", 1))
            .await
            .unwrap();
        let all: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let sites = ids(&["s1"]);

        let started = Instant::now();
        let marks = store
            .change_memberships(&change("a", "big", &all, &[], &sites, 1))
            .await
            .unwrap();
        eprintln!(
            "{:?}: add 5,000 members: {:?}",
            store.backend(),
            started.elapsed()
        );
        assert_eq!(marks.len(), 5_000);
        assert_eq!(store.member_count("a", "big").await.unwrap(), 5_000);

        let started = Instant::now();
        let marks = store
            .change_memberships(&change("a", "big", &[], &ids(&["u02500"]), &sites, 2))
            .await
            .unwrap();
        eprintln!(
            "{:?}: remove 1 member of 5,000: {:?}",
            store.backend(),
            started.elapsed()
        );
        assert_eq!(marks.len(), 1);
        assert_eq!(store.member_count("a", "big").await.unwrap(), 4_999);
        assert!(store
            .groups_of_user("a", "u02500")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.users_by_ids("a", &all).await.unwrap().len(), 5_000);
    })
    .await;
}

/// Membership transactions that mark overlapping users, listed in opposite orders, run at the
/// same time without deadlocking: rows are marked in one global order. (Before, PostgreSQL's
/// deadlock detector aborted one of each such pair after a second, and the retries made an
/// initial sync's PATCHes wait up to 37 s.)
#[tokio::test]
async fn store_overlapping_membership_changes_run_side_by_side() {
    // The two transactions of each pair run side by side in the database (each on its own
    // connection) while this thread polls both, so the store's retry log lands here.
    let (logs, _guard) = crate::support::Logs::capture();
    for_each_backend(|store| async move {
        let users: Vec<UserRow> = (0..300)
            .map(|i| user("a", &format!("u{i:03}"), &format!("user{i}"), i))
            .collect();
        store.insert_users(&users).await.unwrap();
        for g in ["g1", "g2"] {
            store.insert_group(&group("a", g, g, 1)).await.unwrap();
        }
        let forward: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let backward: Vec<String> = forward.iter().rev().cloned().collect();
        let sites = ids(&["s1", "s2"]);
        for round in 0..10 {
            let now = 10 + 2 * round;
            let (add1, add2) = (
                change("a", "g1", &forward, &[], &sites, now),
                change("a", "g2", &backward, &[], &sites, now),
            );
            let (a, b) = tokio::join!(
                store.change_memberships(&add1),
                store.change_memberships(&add2)
            );
            assert_eq!(a.unwrap().len(), 600);
            assert_eq!(b.unwrap().len(), 600);
            let (remove1, remove2) = (
                change("a", "g1", &[], &backward, &sites, now + 1),
                change("a", "g2", &[], &forward, &sites, now + 1),
            );
            let (a, b) = tokio::join!(
                store.change_memberships(&remove1),
                store.change_memberships(&remove2)
            );
            a.unwrap();
            b.unwrap();
        }
    })
    .await;
    assert!(
        !logs.has_line(&["deadlock detected"]),
        "a membership transaction deadlocked and was retried"
    );
}

/// Asks the PostgreSQL helper for a database and does nothing with it: the subject of the next
/// test, which runs it in a child process under chosen variables.
#[tokio::test]
async fn postgres_helper_probe() {
    with_postgres_url(|_url| async {}).await;
}

/// Locally a missing PostgreSQL skips; with `SCIM_BRIDGE_TEST_POSTGRES_REQUIRED=1` (CI) a
/// missing variable or an unreachable server fails, saying which.
#[test]
fn postgres_tests_skip_locally_but_fail_when_postgres_is_required() {
    let probe = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::postgres_helper_probe", "--nocapture"])
            .env_remove(PG_ENV)
            .env_remove(PG_REQUIRED_ENV)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The filter must have run the probe, or the outcome says nothing.
        assert!(
            text.contains("1 passed") || text.contains("1 failed"),
            "{text}"
        );
        (out.status.success(), text)
    };

    let (ok, text) = probe(&[]);
    assert!(ok, "{text}");
    assert!(text.contains("skipping PostgreSQL"), "{text}");
    let (ok, text) = probe(&[(PG_REQUIRED_ENV, "0")]);
    assert!(ok, "{text}");

    let (ok, text) = probe(&[(PG_REQUIRED_ENV, "1")]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "SCIM_BRIDGE_TEST_POSTGRES_REQUIRED=1 but SCIM_BRIDGE_TEST_POSTGRES_URL is not set"
        ),
        "{text}"
    );

    // Nothing listens on port 1: refused at once. The password never shows.
    let unreachable = "postgres://postgres:hunter2@127.0.0.1:1/test";
    let (ok, text) = probe(&[(PG_REQUIRED_ENV, "1"), (PG_ENV, unreachable)]);
    assert!(!ok, "{text}");
    assert!(text.contains("is unreachable"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let (ok, text) = probe(&[(PG_REQUIRED_ENV, "yes please")]);
    assert!(!ok, "{text}");
    assert!(text.contains("must be 1 or 0"), "{text}");
}

/// Dead workers are noticed by their liveness lock, not their lease (issue 14, item 12): the
/// claims of a worker whose lock is free and that went unrenewed are released at once; those
/// of a live worker (lock held), and freshly renewed ones, are not.
#[tokio::test]
async fn store_dead_workers_claims_are_released_live_workers_claims_are_not() {
    with_postgres_url(|url| async move {
        let store = connect(&url).await;
        let now = scim_bridge::bridge::now_ms();
        let users = ids(&["u1", "u2", "u3"]);
        store
            .mark_outbox_at("a", &ids(&["s1"]), &users, now - 60_000)
            .await
            .unwrap();
        let lease = Duration::from_secs(120);
        let live_worker = format!("live-{}", uuid::Uuid::new_v4());
        let dead_worker = format!("dead-{}", uuid::Uuid::new_v4());
        let fresh_worker = format!("fresh-{}", uuid::Uuid::new_v4());
        // Claimed 30 s ago under a 120 s lease, never renewed since: 90 s of lease left.
        let old = now - 30_000;
        let held = store
            .claim_outbox(&live_worker, 1, lease, old)
            .await
            .unwrap();
        assert_eq!(held.len(), 1);
        let live_lock = store.hold_worker_lock(&live_worker).await.unwrap();
        assert!(
            live_lock.is_some(),
            "PostgreSQL workers hold a liveness lock"
        );
        let dead = store
            .claim_outbox(&dead_worker, 1, lease, old)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        let dead_lock = store.hold_worker_lock(&dead_worker).await.unwrap();
        // Claimed just now: a worker that renews on time, though its lock is free.
        let fresh = store
            .claim_outbox(&fresh_worker, 1, lease, now)
            .await
            .unwrap();
        assert_eq!(fresh.len(), 1);

        let me = "survivor";
        let renewed_before = now - 6_000;
        let lease_ms = 120_000;
        // The dead worker still holds its lock: nothing is released, nothing claimable.
        let released = store
            .release_dead_claims(me, renewed_before, lease_ms)
            .await
            .unwrap();
        assert!(released.is_empty(), "{released:?}");
        // Its process dies: the lock's connection closes.
        drop(dead_lock);
        let released = store
            .release_dead_claims(me, renewed_before, lease_ms)
            .await
            .unwrap();
        assert_eq!(released, vec![(dead_worker.clone(), 1)]);
        let taken = store.claim_outbox(me, 10, lease, now).await.unwrap();
        assert_eq!(taken.len(), 1, "only the dead worker's row: {taken:?}");
        assert_eq!(taken[0].user_id, dead[0].user_id);
        // The dead worker's token no longer completes anything.
        assert!(!store.complete_outbox(&dead[0]).await.unwrap());
        // The live worker's and the fresh claim stay theirs.
        assert!(store
            .release_dead_claims(me, renewed_before, lease_ms)
            .await
            .unwrap()
            .is_empty());
        assert!(store.complete_outbox(&held[0]).await.unwrap());
        assert!(store.complete_outbox(&fresh[0]).await.unwrap());
        drop(live_lock);
        store.close().await;
    })
    .await;
}

/// A name a group had before and another group carries now is that group's: never offered
/// as a former name to rename back (the engine's repair would take the other group's partner
/// group), and a rename that gives another group the name ends the first group's claim on it.
#[tokio::test]
async fn store_former_names_exclude_names_another_group_carries() {
    for_each_backend(|store| async move {
        // G was "Alpha", renamed to "Beta".
        store
            .insert_group(&group("a", "g", "Beta", 1_000))
            .await
            .unwrap();
        let names = ["Alpha".to_owned(), "Beta".to_owned()];
        store
            .add_group_known_names("a", "g", &names, 1_000)
            .await
            .unwrap();
        let formers = store.former_names_of("a", "Beta").await.unwrap();
        assert_eq!(formers, vec![("Alpha".to_owned(), 1_000)]);
        // H is created as "alpha" (any case): the name is H's now.
        store
            .insert_group(&group("a", "h", "alpha", 2_000))
            .await
            .unwrap();
        assert!(store.former_names_of("a", "Beta").await.unwrap().is_empty());
        // H is renamed "alpha" -> "Gamma": its claim replaces G's on "alpha".
        let h_names = ["alpha".to_owned(), "Gamma".to_owned()];
        store
            .add_group_known_names("a", "h", &h_names, 3_000)
            .await
            .unwrap();
        store
            .update_group(&group("a", "h", "Gamma", 2_000), 1)
            .await
            .unwrap();
        assert!(store.former_names_of("a", "Beta").await.unwrap().is_empty());
        assert_eq!(
            store.former_names_of("a", "Gamma").await.unwrap(),
            vec![("alpha".to_owned(), 3_000)]
        );
    })
    .await;
}

#[tokio::test]
async fn store_group_name_locks_have_one_holder_until_let_go_or_lapsed() {
    for_each_backend(|store| async move {
        let lock = |holder: &'static str, now: i64| {
            let store = store.clone();
            async move {
                store
                    .lock_group_names("a", "g1", holder, now, now + 1_000)
                    .await
                    .unwrap()
            }
        };
        assert!(lock("rename", 0).await);
        // Another writer waits; the holder itself may take it again (renewing it).
        assert!(!lock("repair", 500).await);
        assert!(lock("rename", 500).await);
        // Another group, another tenant: not locked.
        assert!(store
            .lock_group_names("a", "g2", "repair", 500, 1_500)
            .await
            .unwrap());
        assert!(store
            .lock_group_names("b", "g1", "repair", 500, 1_500)
            .await
            .unwrap());
        // Letting go is the holder's alone.
        store.unlock_group_names("a", "g1", "repair").await.unwrap();
        assert!(!lock("repair", 1_000).await);
        store.unlock_group_names("a", "g1", "rename").await.unwrap();
        assert!(lock("repair", 1_000).await);
        // A holder that died lets go when its lease ends.
        assert!(!lock("rename", 1_999).await);
        assert!(lock("rename", 2_000).await);
    })
    .await;
}

#[tokio::test]
async fn store_write_locks_are_taken_all_or_none() {
    for_each_backend(|store| async move {
        let keys = |names: &[&str]| names.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert!(store
            .take_write_locks("a", &keys(&["user-email:x"]), "other", 0, 10_000)
            .await
            .unwrap());
        // One key of two is held by another: neither is taken.
        assert!(!store
            .take_write_locks(
                "a",
                &keys(&["user-name:x", "user-email:x"]),
                "post",
                0,
                10_000
            )
            .await
            .unwrap());
        assert!(
            store
                .take_write_locks("a", &keys(&["user-name:x"]), "third", 0, 10_000)
                .await
                .unwrap(),
            "a refused take left a key behind"
        );
        store
            .release_write_locks("a", &keys(&["user-name:x"]), "third")
            .await
            .unwrap();
        store
            .release_write_locks("a", &keys(&["user-email:x"]), "other")
            .await
            .unwrap();
        assert!(store
            .take_write_locks(
                "a",
                &keys(&["user-name:x", "user-email:x"]),
                "post",
                0,
                10_000
            )
            .await
            .unwrap());
        // Letting go of keys one does not hold changes nothing.
        store
            .release_write_locks("a", &keys(&["user-name:x", "user-email:x"]), "other")
            .await
            .unwrap();
        assert!(!store
            .take_write_locks("a", &keys(&["user-email:x"]), "other", 5_000, 10_000)
            .await
            .unwrap());
        // Lapsed at the end of the lease.
        assert!(store
            .take_write_locks("a", &keys(&["user-email:x"]), "other", 10_000, 20_000)
            .await
            .unwrap());
    })
    .await;
}

#[tokio::test]
async fn store_partner_links_are_per_site_and_kind_in_any_case_and_move_on_rename() {
    use scim_bridge::store::PartnerLink;
    for_each_backend(|store| async move {
        let link = |name: &str, id: &str, adopted: bool| PartnerLink {
            name: name.into(),
            partner_id: id.into(),
            adopted,
        };
        store
            .put_partner_link("a", "s1", "user", &link("Analysts", "r1", false), None)
            .await
            .unwrap();
        store
            .put_partner_link("a", "s2", "user", &link("Jane@x.com", "u1", true), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .partner_link("a", "s1", "user", "ANALYSTS")
                .await
                .unwrap(),
            Some(link("Analysts", "r1", false))
        );
        for (tenant, site, kind) in [
            ("b", "s1", "user"),
            ("a", "s2", "user"),
            ("a", "s1", "role"),
        ] {
            assert_eq!(
                store
                    .partner_link(tenant, site, kind, "analysts")
                    .await
                    .unwrap(),
                None,
                "{tenant} {site} {kind}"
            );
        }
        // A rename moves the link in one step; linking a name again replaces its id.
        store
            .put_partner_link(
                "a",
                "s1",
                "user",
                &link("Finance", "r1", false),
                Some("analysts"),
            )
            .await
            .unwrap();
        store
            .put_partner_link("a", "s1", "user", &link("analysts", "r2", true), None)
            .await
            .unwrap();
        store
            .put_partner_link("a", "s1", "user", &link("ANALYSTS", "r3", true), None)
            .await
            .unwrap();
        assert_eq!(
            store.partner_links("a", "s1", "user").await.unwrap(),
            vec![link("ANALYSTS", "r3", true), link("Finance", "r1", false)]
        );
        // One partner object, one name: linking another name to r1 unlinks Finance.
        store
            .put_partner_link("a", "s1", "user", &link("Ledger", "r1", false), None)
            .await
            .unwrap();
        assert_eq!(
            store.partner_links("a", "s1", "user").await.unwrap(),
            vec![link("ANALYSTS", "r3", true), link("Ledger", "r1", false)]
        );
        store
            .delete_partner_link("a", "s1", "user", "ledger")
            .await
            .unwrap();
        store
            .delete_partner_link("a", "s1", "user", "ledger")
            .await
            .unwrap();
        assert_eq!(
            store.partner_links("a", "s1", "user").await.unwrap(),
            vec![link("ANALYSTS", "r3", true)]
        );
        assert_eq!(
            store.partner_links("a", "s1", "user").await.unwrap().len(),
            1
        );
    })
    .await;
}

/// A role link counts only while a group of the tenant carries its name, and goes with the
/// group's row.
#[tokio::test]
async fn store_role_links_count_while_a_group_carries_the_name_and_go_with_it() {
    use scim_bridge::store::PartnerLink;
    for_each_backend(|store| async move {
        let link = |name: &str, id: &str| PartnerLink {
            name: name.into(),
            partner_id: id.into(),
            adopted: false,
        };
        store
            .put_partner_link("a", "s1", "role", &link("Analysts", "r1"), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .partner_link("a", "s1", "role", "analysts")
                .await
                .unwrap(),
            None
        );
        assert!(store
            .partner_links("a", "s1", "role")
            .await
            .unwrap()
            .is_empty());
        store
            .insert_group(&group("a", "g1", "ANALYSTS", 10))
            .await
            .unwrap();
        store
            .insert_group(&group("b", "g2", "Other", 10))
            .await
            .unwrap();
        assert_eq!(
            store
                .partner_link("a", "s1", "role", "analysts")
                .await
                .unwrap(),
            Some(link("Analysts", "r1"))
        );
        assert_eq!(
            store.partner_links("a", "s1", "role").await.unwrap(),
            vec![link("Analysts", "r1")]
        );
        // Another tenant's group of the name does not make it count.
        store
            .put_partner_link("b", "s1", "role", &link("Analysts", "r9"), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .partner_link("b", "s1", "role", "analysts")
                .await
                .unwrap(),
            None
        );
        store.delete_group("a", "g1").await.unwrap();
        store
            .insert_group(&group("a", "g3", "Analysts", 20))
            .await
            .unwrap();
        assert_eq!(
            store
                .partner_link("a", "s1", "role", "analysts")
                .await
                .unwrap(),
            None,
            "the deleted group's link went with it"
        );
    })
    .await;
}

#[tokio::test]
async fn store_site_credentials_keep_the_newest_answer_and_the_time_it_began() {
    for_each_backend(|store| async move {
        store
            .record_site_credentials("a", "s1", true, 1_000)
            .await
            .unwrap();
        store
            .record_site_credentials("a", "s1", true, 2_000)
            .await
            .unwrap();
        store
            .record_site_credentials("a", "s1", false, 3_000)
            .await
            .unwrap();
        // A late "refused" from a worker whose call ended before the check: ignored.
        store
            .record_site_credentials("a", "s1", true, 2_500)
            .await
            .unwrap();
        let all = store.site_credentials(Some("a")).await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(
            (all[0].state.as_str(), all[0].checked_ms, all[0].since_ms),
            ("ok", 3_000, 3_000),
            "{all:?}"
        );
        store
            .record_site_credentials("a", "s1", false, 4_000)
            .await
            .unwrap();
        let all = store.site_credentials(Some("a")).await.unwrap();
        assert_eq!(
            (all[0].state.as_str(), all[0].checked_ms, all[0].since_ms),
            ("ok", 4_000, 3_000)
        );
    })
    .await;
}
