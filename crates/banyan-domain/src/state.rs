//! The whole replicated domain state and the one function that changes it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Event, Stamped};
use crate::customer::{normalize_email, normalize_phone, Customer, CustomerInput, Tier};
use crate::error::DomainError;
use crate::requests::{RequestLog, RequestRecord};

/// Everything the cluster agrees on. Lookup indexes are derived data: they are rebuilt on
/// load and never serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    customers: BTreeMap<String, Customer>,
    /// Recent idempotency keys and their first results.
    requests: RequestLog,
    /// The largest leader stamp applied so far: the state machine's notion of "now".
    clock_ms: i64,
    /// Normalized phone → ids of customers with that phone.
    by_phone: BTreeMap<String, BTreeSet<String>>,
    /// Normalized email → ids of customers with that email.
    by_email: BTreeMap<String, BTreeSet<String>>,
}

/// The serialized form of [`State`]: only the source of truth.
#[derive(Serialize, Deserialize)]
struct StateData {
    customers: BTreeMap<String, Customer>,
    requests: BTreeMap<String, RequestRecord>,
    clock_ms: i64,
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ref<'a> {
            customers: &'a BTreeMap<String, Customer>,
            requests: &'a BTreeMap<String, RequestRecord>,
            clock_ms: i64,
        }
        Ref {
            customers: &self.customers,
            requests: self.requests.records(),
            clock_ms: self.clock_ms,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = StateData::deserialize(deserializer)?;
        let mut state = State {
            requests: RequestLog::from_records(data.requests),
            clock_ms: data.clock_ms,
            ..State::default()
        };
        for (_, customer) in data.customers {
            state.index(&customer.input);
            state.customers.insert(customer.id().to_owned(), customer);
        }
        Ok(state)
    }
}

/// Filters for [`State::find_customers`]; every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct CustomerQuery {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub name_prefix: Option<String>,
    pub tier: Option<Tier>,
    /// Only ids strictly after this one (paging).
    pub after_id: Option<String>,
    pub limit: usize,
}

impl State {
    /// Applies one leader-stamped command. On `Err` the state is unchanged.
    ///
    /// A command whose `request_id` was applied before (within the retention window)
    /// returns the first result again when it is the same command, and is refused when it
    /// differs.
    pub fn apply(&mut self, stamped: &Stamped) -> Result<Vec<Event>, DomainError> {
        self.clock_ms = self.clock_ms.max(stamped.at_ms);
        self.requests.expire(self.clock_ms);
        let request_id = stamped.command.request_id();
        if let Some(record) = request_id.and_then(|id| self.requests.get(id)) {
            if record.command == stamped.command {
                return Ok(record.events.clone());
            }
            return Err(DomainError::precondition(
                "request_id",
                "already used for a different request",
            ));
        }
        let events = match &stamped.command {
            Command::UpsertCustomer { customer, .. } => {
                vec![self.upsert_customer(stamped.at_ms, customer)?]
            }
        };
        if let Some(id) = request_id {
            self.requests.record(
                id,
                RequestRecord {
                    // The state machine's clock, not the stamp: a leader whose clock is
                    // behind must not record an entry that expires on the next apply.
                    at_ms: self.clock_ms,
                    command: stamped.command.clone(),
                    events: events.clone(),
                },
            );
        }
        Ok(events)
    }

    /// Idempotency keys currently remembered.
    pub fn remembered_requests(&self) -> usize {
        self.requests.len()
    }

    fn upsert_customer(&mut self, at_ms: i64, input: &CustomerInput) -> Result<Event, DomainError> {
        input.validate()?;
        let customer = match self.customers.remove(&input.id) {
            Some(old) => {
                self.unindex(&old.input);
                Customer {
                    input: input.clone(),
                    version: old.version + 1,
                    created_at_ms: old.created_at_ms,
                    updated_at_ms: at_ms,
                }
            }
            None => Customer {
                input: input.clone(),
                version: 1,
                created_at_ms: at_ms,
                updated_at_ms: at_ms,
            },
        };
        self.index(&customer.input);
        self.customers.insert(input.id.clone(), customer.clone());
        Ok(Event::CustomerUpserted(customer))
    }

    fn index(&mut self, input: &CustomerInput) {
        for phone in input.normalized_phones() {
            self.by_phone
                .entry(phone)
                .or_default()
                .insert(input.id.clone());
        }
        for email in input.normalized_emails() {
            self.by_email
                .entry(email)
                .or_default()
                .insert(input.id.clone());
        }
    }

    fn unindex(&mut self, input: &CustomerInput) {
        for (index, keys) in [
            (
                &mut self.by_phone,
                input.normalized_phones().collect::<Vec<_>>(),
            ),
            (&mut self.by_email, input.normalized_emails().collect()),
        ] {
            for key in keys {
                if let Some(ids) = index.get_mut(&key) {
                    ids.remove(&input.id);
                    if ids.is_empty() {
                        index.remove(&key);
                    }
                }
            }
        }
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.get(id)
    }

    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    /// Customers matching `query`, in id order, at most `query.limit`.
    pub fn find_customers(&self, query: &CustomerQuery) -> Vec<&Customer> {
        let after = |id: &String| query.after_id.as_ref().is_none_or(|a| id > a);
        let matches =
            |c: &Customer| {
                query
                    .name_prefix
                    .as_ref()
                    .is_none_or(|p| c.input.name.to_lowercase().starts_with(&p.to_lowercase()))
                    && query.tier.is_none_or(|t| c.input.tier == t)
                    && query.phone.as_ref().is_none_or(|p| {
                        c.input.normalized_phones().any(|q| q == normalize_phone(p))
                    })
                    && query.email.as_ref().is_none_or(|e| {
                        c.input.normalized_emails().any(|q| q == normalize_email(e))
                    })
            };
        // Use an index when one applies, so a lookup by phone or email does not scan.
        let indexed = match (&query.phone, &query.email) {
            (Some(phone), _) => self.by_phone.get(&normalize_phone(phone)),
            (None, Some(email)) => self.by_email.get(&normalize_email(email)),
            (None, None) => None,
        };
        if query.phone.is_some() || query.email.is_some() {
            return indexed
                .into_iter()
                .flatten()
                .filter(|id| after(id))
                .filter_map(|id| self.customers.get(id))
                .filter(|c| matches(c))
                .take(query.limit)
                .collect();
        }
        let start = match &query.after_id {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        self.customers
            .range((start, Bound::Unbounded))
            .map(|(_, c)| c)
            .filter(|c| matches(c))
            .take(query.limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: &str, name: &str, request_id: Option<&str>) -> Stamped {
        Stamped {
            at_ms: 1_000,
            command: Command::UpsertCustomer {
                customer: CustomerInput {
                    id: id.into(),
                    name: name.into(),
                    phones: vec!["+1 555 0100".into()],
                    emails: vec![format!("{id}@example.com")],
                    ..Default::default()
                },
                request_id: request_id.map(Into::into),
            },
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
        later.at_ms = 1_000 + crate::requests::RETENTION_MS + 1;
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
        let Command::UpsertCustomer { customer, .. } = &mut moved.command;
        customer.emails = vec!["new@example.com".into()];
        state.apply(&moved).unwrap();
        assert!(state
            .find_customers(&CustomerQuery {
                email: Some("c3@example.com".into()),
                limit: 10,
                ..Default::default()
            })
            .is_empty());
    }
}
