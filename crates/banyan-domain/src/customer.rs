//! Customers: who contacts the center, and how they are found again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

pub use crate::validate::validate_id;
use crate::validate::{validate_attributes, validate_count, validate_len, validate_name};
pub use crate::validate::{
    MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_ID_LEN, MAX_NAME_LEN,
};

/// Most phone numbers one customer may have.
pub const MAX_PHONES: usize = 8;
/// Longest phone number accepted, in bytes, spaces and punctuation included.
pub const MAX_PHONE_LEN: usize = 32;
/// Most email addresses one customer may have.
pub const MAX_EMAILS: usize = 8;
/// Longest email address accepted, in bytes (the SMTP limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest language tag accepted, in bytes (the length RFC 5646 asks every implementation to
/// support).
pub const MAX_LANGUAGE_LEN: usize = 35;

/// Service tier; higher tiers get a priority boost in routing.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Tier {
    /// No boost: most customers.
    #[default]
    Standard,
    /// A queue's `gold_boost` is added to their contacts' priority.
    Gold,
    /// A queue's `platinum_boost` is added to their contacts' priority.
    Platinum,
}

/// The fields a client sets on a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerInput {
    /// The customer's id, chosen by the client (often the CRM's key).
    pub id: String,
    /// The customer's name; `find_customers` matches on its prefix.
    pub name: String,
    /// Phone numbers the customer calls from; a lookup by any of them finds the customer.
    pub phones: Vec<String>,
    /// Email addresses the customer writes from; a lookup by any of them finds the customer.
    pub emails: Vec<String>,
    /// Service tier, which raises the priority of the customer's contacts.
    pub tier: Tier,
    /// BCP 47 language tag, e.g. `en-GB`; empty when unknown.
    pub language: String,
    /// Free-form data from the client's CRM, kept as given.
    pub attributes: BTreeMap<String, String>,
}

/// A stored customer: the client's fields plus what the cluster keeps about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The client's fields, as last upserted.
    pub input: CustomerInput,
    /// Accepted changes so far; a duplicate application of one write would show here.
    pub version: u64,
    /// When the customer was first upserted, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When the customer was last upserted, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

impl Customer {
    /// The customer's id, the key they are stored under.
    pub fn id(&self) -> &str {
        &self.input.id
    }
}

impl CustomerInput {
    /// Checks every field against its limits. Called at the service edge before proposing
    /// and again inside `apply`, so a bad command in the log still changes nothing.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_id("customer.id", &self.id)?;
        validate_name("customer.name", &self.name)?;
        validate_count("customer.phones", self.phones.len(), MAX_PHONES)?;
        for (i, phone) in self.phones.iter().enumerate() {
            let field = format!("customer.phones[{i}]");
            validate_len(&field, phone, MAX_PHONE_LEN)?;
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            if digits < 3
                || !phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))
            {
                return Err(DomainError::invalid(
                    field,
                    "expected a phone number (digits, + - ( ) and spaces)",
                ));
            }
        }
        validate_count("customer.emails", self.emails.len(), MAX_EMAILS)?;
        for (i, email) in self.emails.iter().enumerate() {
            let field = format!("customer.emails[{i}]");
            validate_len(&field, email, MAX_EMAIL_LEN)?;
            let valid = email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !email.contains(char::is_whitespace);
            if !valid {
                return Err(DomainError::invalid(field, "expected an email address"));
            }
        }
        validate_len("customer.language", &self.language, MAX_LANGUAGE_LEN)?;
        validate_attributes("customer.attributes", &self.attributes)
    }

    /// Phone numbers reduced to `+` and digits, so `+44 20 7946-0000` and
    /// `+442079460000` find the same customer.
    pub fn normalized_phones(&self) -> impl Iterator<Item = String> + '_ {
        self.phones.iter().map(|p| normalize_phone(p))
    }

    /// Email addresses trimmed and lower-cased, so a lookup ignores case.
    pub fn normalized_emails(&self) -> impl Iterator<Item = String> + '_ {
        self.emails.iter().map(|e| normalize_email(e))
    }
}

/// A phone number reduced to `+` and digits: the form customers are indexed and looked up by.
pub fn normalize_phone(phone: &str) -> String {
    phone
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
}

/// An email address trimmed and lower-cased: the form customers are indexed and looked up by.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> CustomerInput {
        CustomerInput {
            id: "c-1".into(),
            name: "Ada Lovelace".into(),
            phones: vec!["+44 20 7946 0000".into()],
            emails: vec!["ada@example.com".into()],
            tier: Tier::Gold,
            language: "en-GB".into(),
            attributes: BTreeMap::from([("account".into(), "A-17".into())]),
        }
    }

    fn field_of(err: DomainError) -> String {
        match err {
            DomainError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_complete_customer() {
        valid().validate().unwrap();
    }

    #[test]
    fn names_the_offending_field() {
        type Mutation = fn(&mut CustomerInput);
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.id.clear(), "customer.id"),
            (|c| c.id = "x".repeat(MAX_ID_LEN + 1), "customer.id"),
            (|c| c.id = "has space".into(), "customer.id"),
            (|c| c.name = "  ".into(), "customer.name"),
            (|c| c.name = "n".repeat(MAX_NAME_LEN + 1), "customer.name"),
            (|c| c.phones.push("call me".into()), "customer.phones[1]"),
            (
                |c| c.phones = vec!["1".into(); MAX_PHONES + 1],
                "customer.phones",
            ),
            (|c| c.emails = vec!["nobody".into()], "customer.emails[0]"),
            (|c| c.language = "x".repeat(100), "customer.language"),
            (
                |c| {
                    c.attributes
                        .insert("k".into(), "v".repeat(MAX_ATTRIBUTE_VALUE_LEN + 1));
                },
                "customer.attributes[k]",
            ),
        ];
        for (mutate, field) in cases {
            let mut input = valid();
            mutate(&mut input);
            assert_eq!(field_of(input.validate().unwrap_err()), field);
        }
    }

    #[test]
    fn phones_and_emails_normalize() {
        assert_eq!(normalize_phone("+44 (20) 7946-0000"), "+442079460000");
        assert_eq!(normalize_email(" Ada@Example.COM "), "ada@example.com");
    }
}
