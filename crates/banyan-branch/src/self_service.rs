//! Self-service at the branch: a contact whose intent the branch answers itself
//! ([`triage`](crate::triage)) is recorded in the outbox, on disk before the caller hears
//! the answer, and [shipped](crate::ship) to the core later, so the caller never waits on
//! the core.

use std::sync::Arc;

use banyan_api::ApiError;
use banyan_domain::{Action, Command, Contact, ContactInput};
use banyan_env::Clock;
use banyan_raft::AppliedState;

use crate::config::BranchConfig;
use crate::outbox::{Appended, Outbox};

/// The self-served contacts on their way to the core.
pub(crate) struct SelfService {
    /// The contacts, and their create commands for the core, until delivered.
    pub(crate) outbox: Arc<Outbox>,
    /// The wall clock the contacts are stamped with.
    clock: Clock,
}

impl SelfService {
    pub(crate) fn new(outbox: Arc<Outbox>, clock: Clock) -> Self {
        Self { outbox, clock }
    }

    /// Records the self-served contact of `input` with `answer`, on disk before the
    /// caller hears it; a retry of `request_id` gets the first answer.
    pub(crate) async fn record(
        &self,
        config: &BranchConfig,
        replica: &AppliedState,
        input: &ContactInput,
        request_id: Option<&str>,
        answer: String,
        by: &banyan_domain::Principal,
    ) -> Result<Contact, ApiError> {
        let id = if input.id.is_empty() {
            crate::node::fresh_contact_id("ss", &config.site, config.id)
        } else {
            input.id.clone()
        };
        let mut input = input.clone();
        input.id = id.clone();
        input.self_served = true;
        input.origin_site = config.site.clone();
        input.attributes.insert("answer".into(), answer);
        // A queue the core does not know would make it refuse the record.
        if !input.queue_id.is_empty() && replica.read().domain.queue(&input.queue_id).is_none() {
            input.queue_id.clear();
        }
        let contact = Contact::self_served(
            id.clone(),
            request_id.map(str::to_owned),
            &input,
            (self.clock)(),
        );
        let command = Command::with_request_id(
            Action::CreateContact(input),
            Some(format!("self-served/{id}")),
        )
        .by(by.clone());
        let key = request_id.map_or_else(|| format!("self-served/{id}"), str::to_owned);
        let appended = self
            .outbox
            .append(
                &key,
                &banyan_raft::codec::encode(&contact),
                &banyan_raft::codec::encode(&command),
                (self.clock)(),
            )
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("recording the self-served contact: {e}"))
            })?;
        match appended {
            Appended::New(_) => Ok(contact),
            Appended::Existing(first) => banyan_raft::codec::decode(&first)
                .map_err(|e| ApiError::fatal(format!("undecodable earlier answer: {e}"))),
        }
    }
}
