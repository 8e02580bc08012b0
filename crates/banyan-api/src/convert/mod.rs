//! Proto ↔ domain conversions: the only module that knows both. Malformed enum values and
//! missing messages become domain errors naming the field.
//!
//! Customers and shared helpers live here; contacts, queues, agents and events in their
//! own files.

mod agent;
mod contact;
mod event;
mod queue;
mod site;

pub use agent::*;
pub use contact::*;
pub use event::*;
pub use queue::*;
pub use site::*;

use banyan_domain::customer::validate_id;
use banyan_domain::{Customer, CustomerInput, DomainError, Tier};
use banyan_proto::v1;

/// A customer tier, `None` when unspecified: an upsert then takes the default, a search
/// any tier.
pub fn tier_from_proto(field: &str, value: i32) -> Result<Option<Tier>, DomainError> {
    match v1::Tier::try_from(value) {
        Ok(v1::Tier::Unspecified) => Ok(None),
        Ok(v1::Tier::Standard) => Ok(Some(Tier::Standard)),
        Ok(v1::Tier::Gold) => Ok(Some(Tier::Gold)),
        Ok(v1::Tier::Platinum) => Ok(Some(Tier::Platinum)),
        Err(_) => Err(DomainError::invalid(field, format!("unknown tier {value}"))),
    }
}

/// A customer's tier as clients see it.
pub fn tier_to_proto(tier: Tier) -> v1::Tier {
    match tier {
        Tier::Standard => v1::Tier::Standard,
        Tier::Gold => v1::Tier::Gold,
        Tier::Platinum => v1::Tier::Platinum,
    }
}

/// The customer fields of an upsert, validated.
pub fn customer_input(customer: Option<v1::Customer>) -> Result<CustomerInput, DomainError> {
    let c = customer.ok_or_else(|| DomainError::invalid("customer", "is required"))?;
    let input = CustomerInput {
        tier: tier_from_proto("customer.tier", c.tier)?.unwrap_or_default(),
        id: c.id,
        name: c.name,
        phones: c.phones,
        emails: c.emails,
        language: c.language,
        attributes: c.attributes.into_iter().collect(),
    };
    input.validate()?;
    Ok(input)
}

/// An optional idempotency key: empty means none.
pub fn request_id(value: String) -> Result<Option<String>, DomainError> {
    if value.is_empty() {
        return Ok(None);
    }
    validate_id("request_id", &value)?;
    Ok(Some(value))
}

/// A customer as the API answers it; `history` is left empty, for the one read that
/// fills it.
pub fn customer_to_proto(customer: &Customer) -> v1::Customer {
    let input = &customer.input;
    v1::Customer {
        id: input.id.clone(),
        name: input.name.clone(),
        phones: input.phones.clone(),
        emails: input.emails.clone(),
        tier: tier_to_proto(input.tier).into(),
        language: input.language.clone(),
        attributes: input.attributes.clone().into_iter().collect(),
        version: customer.version,
        created_at_ms: customer.created_at_ms,
        updated_at_ms: customer.updated_at_ms,
        history: Vec::new(),
    }
}

/// One finished contact of a customer's history, as `GetCustomer` lists it.
pub fn history_to_proto(entry: &banyan_domain::stats::HistoryEntry) -> v1::HistoryEntry {
    v1::HistoryEntry {
        contact_id: entry.contact_id.clone(),
        channel: entry.channel.name().to_owned(),
        queue_id: entry.queue_id.clone(),
        state: entry.state.name().to_owned(),
        agent_id: entry.agent_id.clone(),
        disposition: entry.disposition.clone(),
        notes: entry.notes.clone(),
        ended_ms: entry.ended_ms,
    }
}

/// A finished contact from the history store as an entry of its customer's history.
pub fn finished_to_history(contact: &banyan_domain::Contact) -> v1::HistoryEntry {
    let ended_ms = contact
        .ended_ms
        .or(contact.finished_ms())
        .unwrap_or_default();
    history_to_proto(&banyan_domain::stats::HistoryEntry::of(contact, ended_ms))
}

/// An optional id field: empty means unset; otherwise it must be a valid id.
pub fn optional_id(field: &str, value: &str) -> Result<Option<String>, DomainError> {
    if value.is_empty() {
        return Ok(None);
    }
    validate_id(field, value)?;
    Ok(Some(value.to_owned()))
}

/// A required id field.
pub fn required_id(field: &str, value: &str) -> Result<String, DomainError> {
    validate_id(field, value)?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tier_names_the_field() {
        let err = customer_input(Some(v1::Customer {
            id: "c1".into(),
            name: "Ada".into(),
            tier: 42,
            ..Default::default()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("customer.tier"));
    }

    #[test]
    fn missing_customer_is_named() {
        assert!(customer_input(None)
            .unwrap_err()
            .to_string()
            .contains("customer"));
    }
}
