//! The accepts in doubt: an agent's accept is written here, on disk, before the branch
//! sends it to the core, and forgotten once settled. While no answer has come back the
//! core may have connected the call without the branch's replica knowing, so a branch cut
//! off at that moment (or restarted) counts the call against the agent in its own view.

use std::sync::Arc;

use banyan_api::ApiError;
use banyan_raft::AppliedState;

use crate::outbox::Outbox;

/// The accepts sent to the core without a definite answer yet: `(contact, agent)`.
pub(crate) struct Accepts(Arc<Outbox>);

impl Accepts {
    pub(crate) fn new(records: Arc<Outbox>) -> Self {
        Self(records)
    }

    /// Records, on disk, an accept about to be sent to the core.
    pub(crate) async fn record(&self, contact_id: &str, agent_id: &str) -> Result<u64, ApiError> {
        let entry = banyan_raft::codec::encode(&(contact_id.to_owned(), agent_id.to_owned()));
        self.0
            .push(&entry)
            .await
            .map_err(|e| ApiError::unavailable(format!("recording the accept: {e}")))
    }

    /// Forgets an accept record the core has settled. A failure to do so is logged, not
    /// dropped: the record then stays in doubt, which keeps its agent's capacity for a call
    /// that is over until the next reconciliation clears it.
    pub(crate) async fn forget(&self, seq: u64) {
        if let Err(e) = self.0.delivered(seq).await {
            tracing::error!(seq, error = %e, "could not forget a settled accept record");
        }
    }

    /// Checks that every accept record reads (at start: see `resume_journal`).
    pub(crate) fn check(&self) -> Result<(), String> {
        let records = self
            .0
            .pending(usize::MAX)
            .map_err(|e| format!("reading the accept records: {e}"))?;
        for (seq, bytes) in records {
            banyan_raft::codec::decode::<(String, String)>(&bytes)
                .map_err(|e| format!("accept record {seq} cannot be read: {e}"))?;
        }
        Ok(())
    }

    /// The accepts still in doubt, as `(contact, agent)`, with their sequence numbers.
    pub(crate) fn in_doubt(&self) -> Vec<(u64, (String, String))> {
        self.0
            .pending(usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(seq, bytes)| Some((seq, banyan_raft::codec::decode(&bytes).ok()?)))
            .collect()
    }

    /// Forgets accepts the replica has settled: the contact is no longer on offer to the
    /// agent, so the accept either connected it (the replica shows that) or never will.
    pub(crate) async fn forget_settled(&self, replica: &AppliedState) {
        for (seq, (contact_id, agent_id)) in self.in_doubt() {
            let open = replica.read().domain.contact(&contact_id).is_some_and(|c| {
                c.state == banyan_domain::ContactState::Offered
                    && c.offer
                        .as_ref()
                        .is_some_and(|o| o.agents.contains(&agent_id))
            });
            if !open {
                self.forget(seq).await;
            }
        }
    }
}
