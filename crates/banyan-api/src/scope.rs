//! Site scope: a principal limited to one site (a site's supervisor, a branch) acts on
//! that site's contacts only. The authorization table says whether a principal may call
//! a method at all; this says whether it may touch the object, which only the state
//! knows. The node that takes the call checks it against its replica, and the leader
//! checks a forwarded command again against its own.

use banyan_domain::{Action, Principal, State};
use banyan_trust::policy;

use crate::errors::{denied, ApiError};

/// `Ok` when `by` may apply `action` to the objects it names in `state`.
pub fn check_scope(state: &State, by: &Principal, action: &Action) -> Result<(), ApiError> {
    let Some(scope) = by.site_scope() else {
        return Ok(());
    };
    // A command for one agent (a desk's, or a completion in its name) is for an agent of
    // the site.
    if let Some(agent_id) = policy::action_agent(action).filter(|a| !a.is_empty()) {
        return match state.agent(agent_id) {
            Some(agent) if agent.input.site != scope => Err(denied(banyan_trust::Denied::new(
                Some(by),
                format!(
                    "{} for agent {agent_id} of site {}",
                    policy::action_name(action),
                    agent.input.site
                ),
            ))),
            _ => Ok(()),
        };
    }
    let contact_id = match action {
        Action::CompleteContact { contact_id, .. }
        | Action::AbandonContact { contact_id }
        | Action::TransferContact { contact_id, .. } => contact_id,
        // A branch's own contacts may carry no site (routed anywhere); a person limited
        // to a site creates contacts for that site.
        Action::CreateContact(input)
            if !(input.origin_site.is_empty() && matches!(by, Principal::Branch { .. })) =>
        {
            return policy::check_site(Some(by), &input.origin_site, "create a contact")
                .map_err(denied)
        }
        _ => return Ok(()),
    };
    let Some(contact) = state.contact(contact_id) else {
        // The domain refuses an unknown contact by itself.
        return Ok(());
    };
    // A site's contacts are those that came in there and those its agents hold.
    let holder_site = state
        .agent(&contact.agent_id)
        .map(|a| a.input.site.as_str());
    if holder_site == Some(scope) {
        return Ok(());
    }
    policy::check_site(Some(by), &contact.origin_site, "act on contact").map_err(denied)
}
