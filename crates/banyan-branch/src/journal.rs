//! The branch's journal: every command it applied on its own while cut off from the core,
//! on disk before it answered, and what it knows of handing them over (the import still
//! without an answer, the contacts an import already carried, the core's last refusal).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use banyan_domain::Command;

use crate::outbox::Outbox;

/// The journal and the state of its hand-over to the core.
pub(crate) struct Journal {
    /// Commands applied while cut off, in order, on disk before acknowledged.
    pub(crate) entries: Arc<Outbox>,
    /// Serializes local writes and the hand-over: journal order is apply order.
    pub(crate) order: tokio::sync::Mutex<()>,
    /// The last import sent to the core without an answer: `(upto_seq, command)`.
    pub(crate) unanswered_import: Mutex<Option<(u64, Command)>>,
    /// Contacts created alone during this outage whose journal entries an import already
    /// carried to the core.
    pub(crate) created_alone: Mutex<BTreeSet<String>>,
    /// The core's refusal of the last import, and when it came: the branch holds off
    /// sending the next one (see `autonomy::RETRY_REFUSED_FIRST`).
    pub(crate) import_refused: Mutex<Option<RefusedImport>>,
}

impl Journal {
    pub(crate) fn new(entries: Arc<Outbox>) -> Self {
        Self {
            entries,
            order: Default::default(),
            unanswered_import: Default::default(),
            created_alone: Default::default(),
            import_refused: Default::default(),
        }
    }
}

/// The core's last refusal of this branch's import.
pub(crate) struct RefusedImport {
    pub(crate) why: String,
    /// When it came, and how long the branch waits before the next import.
    pub(crate) at: tokio::time::Instant,
    pub(crate) wait: std::time::Duration,
}
