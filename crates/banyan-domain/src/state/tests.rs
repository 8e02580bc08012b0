//! Unit tests of customers and idempotency; routing scenarios and properties live in
//! `tests/`.

use super::*;
use crate::requests::RETENTION_MS;

fn upsert(id: &str, name: &str, request_id: Option<&str>) -> Stamped {
    Stamped {
        at_ms: 1_000,
        command: Command::with_request_id(
            Action::UpsertCustomer(CustomerInput {
                id: id.into(),
                name: name.into(),
                phones: vec!["+1 555 0100".into()],
                emails: vec![format!("{id}@example.com")],
                ..Default::default()
            }),
            request_id.map(Into::into),
        ),
    }
}

#[test]
fn upsert_creates_then_updates() {
    let mut state = State::default();
    state.apply(&upsert("c1", "Ada", None)).unwrap();
    let mut second = upsert("c1", "Ada L.", None);
    second.at_ms = 2_000;
    state.apply(&second).unwrap();
    let c = state.customer("c1").unwrap();
    assert_eq!(
        (c.version, c.created_at_ms, c.updated_at_ms),
        (2, 1_000, 2_000)
    );
    assert_eq!(c.input.name, "Ada L.");
}

#[test]
fn retry_with_same_request_id_returns_the_first_result() {
    let mut state = State::default();
    let first = state.apply(&upsert("c1", "Ada", Some("r1"))).unwrap();
    // Another writer changes the customer in between.
    state.apply(&upsert("c1", "Ada B.", Some("r2"))).unwrap();
    let retry = state.apply(&upsert("c1", "Ada", Some("r1"))).unwrap();
    assert_eq!(retry, first);
    let c = state.customer("c1").unwrap();
    assert_eq!((c.version, c.input.name.as_str()), (2, "Ada B."));

    let before = state.clone();
    let err = state.apply(&upsert("c1", "Eve", Some("r1"))).unwrap_err();
    assert!(
        matches!(err, DomainError::FailedPrecondition { ref field, .. } if field == "request_id")
    );
    assert_eq!(state, before);
}

#[test]
fn request_ids_expire_after_the_retention_window() {
    let mut state = State::default();
    state.apply(&upsert("c1", "Ada", Some("r1"))).unwrap();
    let mut later = upsert("c2", "Bob", Some("r2"));
    later.at_ms = 1_000 + RETENTION_MS + 1;
    state.apply(&later).unwrap();
    assert_eq!(state.remembered_requests(), 1);
    // A stamp from a leader whose clock is behind does not bring r1 back.
    let mut behind = upsert("c1", "Ada", Some("r1"));
    behind.at_ms = 500;
    state.apply(&behind).unwrap();
    assert_eq!(state.customer("c1").unwrap().version, 2);
    // ...and a key recorded under that clock is kept for the whole window.
    let mut retry = upsert("c1", "Ada", Some("r1"));
    retry.at_ms = 600;
    state.apply(&retry).unwrap();
    assert_eq!(
        state.customer("c1").unwrap().version,
        2,
        "retry applied once"
    );
}

#[test]
fn invalid_command_changes_nothing() {
    let mut state = State::default();
    state.apply(&upsert("c1", "Ada", None)).unwrap();
    let before = state.clone();
    assert!(state.apply(&upsert("", "Nobody", None)).is_err());
    assert_eq!(state, before);
}

#[test]
fn find_uses_indexes_and_pages() {
    let mut state = State::default();
    for i in 0..5 {
        state.apply(&upsert(&format!("c{i}"), "Ada", None)).unwrap();
    }
    let by_email = state.find_customers(&CustomerQuery {
        email: Some("C3@EXAMPLE.com".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_email[0].id(), "c3");
    let page = state.find_customers(&CustomerQuery {
        phone: Some("+15550100".into()),
        after_id: Some("c1".into()),
        limit: 2,
        ..Default::default()
    });
    assert_eq!(
        page.iter().map(|c| c.id()).collect::<Vec<_>>(),
        ["c2", "c3"]
    );
    // Re-indexing on update drops the old email.
    let mut moved = upsert("c3", "Ada", None);
    if let Action::UpsertCustomer(customer) = &mut moved.command.action {
        customer.emails = vec!["new@example.com".into()];
    }
    state.apply(&moved).unwrap();
    assert!(state
        .find_customers(&CustomerQuery {
            email: Some("c3@example.com".into()),
            limit: 10,
            ..Default::default()
        })
        .is_empty());
}
