//! Claims about users and password hashes.

use std::sync::Arc;

use login_metrics::auth::{UserStore, UsersError, hash_password};

#[test]
fn hashes_are_argon2id_phc_strings_with_a_random_salt() {
    let first = hash_password("hunter2");
    let second = hash_password("hunter2");
    assert!(first.starts_with("$argon2id$v=19$"), "{first}");
    assert_ne!(first, second, "each hash gets its own salt");
    assert!(!first.contains("hunter2"));
}

#[tokio::test]
async fn users_file_lines_log_in_with_their_passwords() {
    let mut store = UserStore::empty();
    let file = format!(
        "# comment\n\nalice:{}\nbob:{}\n",
        hash_password("alice-pw"),
        hash_password("bob-pw")
    );
    store.add_users_from(&file).unwrap();
    assert_eq!(store.len(), 2);
    let store = Arc::new(store);
    assert!(
        store
            .verify("alice", "alice-pw".into(), std::time::Duration::MAX)
            .await
            .unwrap()
    );
    assert!(
        store
            .verify("bob", "bob-pw".into(), std::time::Duration::MAX)
            .await
            .unwrap()
    );
    assert!(
        !store
            .verify("alice", "bob-pw".into(), std::time::Duration::MAX)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_demo_user_can_be_left_out() {
    let store = Arc::new(UserStore::empty());
    assert!(store.is_empty());
    assert!(
        !store
            .verify("user", "pass".into(), std::time::Duration::MAX)
            .await
            .unwrap()
    );
    let demo = Arc::new(UserStore::with_demo_user());
    assert!(
        demo.verify("user", "pass".into(), std::time::Duration::MAX)
            .await
            .unwrap()
    );
}

#[test]
fn bad_users_file_lines_are_reported_by_line_number_without_their_content() {
    let mut store = UserStore::empty();
    let error = store
        .add_users_from("ok:$argon2id$broken-secret\n")
        .unwrap_err();
    assert!(
        matches!(error, UsersError::BadHash { line: 1, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("broken-secret"), "{error}");

    let error = store.add_users_from("\n\nno-colon-here\n").unwrap_err();
    assert!(
        matches!(error, UsersError::Malformed { line: 3 }),
        "{error:?}"
    );

    let hash = hash_password("x");
    let error = store
        .add_users_from(&format!("carol:{hash}\ncarol:{hash}\n"))
        .unwrap_err();
    assert!(
        matches!(error, UsersError::Duplicate { line: 2 }),
        "{error:?}"
    );
}
