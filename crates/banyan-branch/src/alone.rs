//! The site's own state while the branch routes alone: a copy of the replica narrowed to
//! the site, advanced by the branch's journal instead of by Raft, with its own event feed
//! for the agents' desks and watchers. Its events are numbered by journal sequence, as
//! the replica's are by log index.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use banyan_domain::{DomainError, Event, Stamped};
use banyan_events::{EventFeed, EventRecord};
use banyan_raft::{Applied, AppliedState, History};
use tokio::sync::watch;

/// The site's state and feed while cut off from the core. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SiteAlone {
    state: Arc<RwLock<Applied>>,
    /// The last journal sequence applied, which [`SiteAlone::view`] follows.
    applied: Arc<watch::Sender<u64>>,
    view: AppliedState,
    events: EventFeed,
}

impl SiteAlone {
    /// Starts from `domain` (the replica narrowed to the site), nothing applied yet;
    /// finished contacts it no longer holds are read from the replica's `history`.
    pub(crate) fn new(domain: banyan_domain::State, history: Option<&History>) -> Self {
        let state = Arc::new(RwLock::new(Applied::of(domain)));
        let (applied, seen) = watch::channel(0);
        let view = AppliedState::over(state.clone(), seen);
        Self {
            view: match history {
                Some(history) => view.with_history(history.clone()),
                None => view,
            },
            state,
            applied: Arc::new(applied),
            events: EventFeed::default(),
        }
    }

    /// The state as the services read it.
    pub(crate) fn view(&self) -> &AppliedState {
        &self.view
    }

    /// The events applied to it.
    pub(crate) fn events(&self) -> &EventFeed {
        &self.events
    }

    /// Reads the state. Hold the guard briefly: applying waits for it.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.view.read()
    }

    /// Applies the journal's entry `seq`, publishing its new events.
    pub(crate) fn apply(&self, seq: u64, stamped: &Stamped) -> Result<Vec<Event>, DomainError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let (result, fresh) = state.domain.apply_traced(stamped);
        if let (Ok(events), true) = (&result, fresh) {
            let records = events
                .iter()
                .enumerate()
                .map(|(ordinal, event)| EventRecord {
                    index: seq,
                    ordinal: ordinal as u32,
                    at_ms: stamped.at_ms,
                    principal: stamped.command.principal.clone(),
                    event: event.clone(),
                });
            self.events.publish(records.collect());
        }
        drop(state);
        self.applied.send_replace(seq);
        result
    }
}
