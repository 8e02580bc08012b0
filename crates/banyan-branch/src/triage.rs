//! Self-service: the branch's triage table. An intent listed here is answered at the
//! branch, from configuration or from the replicated customer record, recorded as a
//! `SELF_SERVED` contact in the branch's outbox, and shipped to the core afterwards, so
//! the caller never waits on the core (and is answered while the core is down).

use std::collections::BTreeMap;

use banyan_domain::{ContactInput, State};

/// How an intent is answered locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A fixed text: opening hours, an FAQ answer.
    Text(String),
    /// An attribute of the caller's customer record (order status, balance), read from the
    /// branch's replica. Without the customer or the attribute, the contact goes to an agent.
    CustomerAttribute(String),
}

/// Intent → answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triage(BTreeMap<String, Answer>);

impl Triage {
    /// Parses `intent=text:...` or `intent=attr:key` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut table = BTreeMap::new();
        for entry in entries {
            let entry = entry.as_ref();
            let (intent, answer) = entry.split_once('=').ok_or_else(|| {
                format!("expected intent=text:... or intent=attr:key, got {entry:?}")
            })?;
            let answer = match answer.split_once(':') {
                Some(("text", text)) => Answer::Text(text.to_owned()),
                Some(("attr", key)) if !key.is_empty() => Answer::CustomerAttribute(key.to_owned()),
                _ => {
                    return Err(format!(
                        "{intent}: expected text:... or attr:key, got {answer:?}"
                    ))
                }
            };
            if intent.trim().is_empty() {
                return Err(format!("empty intent in {entry:?}"));
            }
            table.insert(intent.trim().to_owned(), answer);
        }
        Ok(Self(table))
    }

    /// The local answer to `input`, if its intent is self-service and the answer is known.
    pub fn answer(&self, input: &ContactInput, replica: &State) -> Option<String> {
        if input.self_served {
            return None;
        }
        match self.0.get(&input.intent)? {
            Answer::Text(text) => Some(text.clone()),
            Answer::CustomerAttribute(key) => replica
                .customer(&input.customer_id)?
                .input
                .attributes
                .get(key)
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let triage = Triage::parse(&["hours=text:8 to 18", "order=attr:order_status"]).unwrap();
        let state = State::default();
        let input = |intent: &str| ContactInput {
            intent: intent.into(),
            ..Default::default()
        };
        assert_eq!(
            triage.answer(&input("hours"), &state).as_deref(),
            Some("8 to 18")
        );
        // No customer record: the caller goes to an agent.
        assert_eq!(triage.answer(&input("order"), &state), None);
        assert_eq!(triage.answer(&input("refund"), &state), None);
        assert!(Triage::parse(&["bad"]).is_err());
        assert!(Triage::parse(&["x=maybe:y"]).is_err());
    }
}
