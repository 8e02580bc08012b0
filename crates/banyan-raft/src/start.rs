//! Starting a node's Raft the same way on a core voter and on a branch: open the stores
//! under the data directory, start openraft over them with the node's timers and
//! transport, and settle which cluster and data directory the node runs as.

use std::path::Path;
use std::sync::Arc;

use banyan_events::ApplyHook;
use banyan_trust::Security;

use crate::{
    open_stores, Database, Identity, LinkControl, LogStore, NetworkFactory, NodeId, Raft,
    RaftTimers, StateMachineStore, StoreError,
};

/// Why a node's Raft did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The timers do not make a valid openraft configuration.
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    /// Raft did not start over the stores, or (a core voter's `--init`) could not form
    /// the cluster.
    #[error("starting Raft: {0}")]
    Raft(String),
    /// The data directory's incarnation could not be settled or written.
    #[error("settling the data directory's identity: {0}")]
    Identity(String),
}

/// A running Raft and the stores under it.
pub struct Started {
    /// The node's database: the stores' trees, and the node's own beside them.
    pub db: Database,
    /// The Raft log, synced before an append is acknowledged.
    pub log: LogStore,
    /// The state machine: the domain state and its snapshots.
    pub state_machine: StateMachineStore,
    /// The Raft instance over both.
    pub raft: Raft,
    /// The cluster and data directory the node runs as, settled.
    pub identity: Identity,
}

/// Opens node `id`'s stores under `data_dir` and starts its Raft, reaching peers through
/// `links` with `security`; the state machine hands what it applies to `hook`.
pub async fn start_raft(
    id: NodeId,
    data_dir: &Path,
    timers: &RaftTimers,
    links: LinkControl,
    security: &Security,
    hook: Arc<dyn ApplyHook>,
) -> Result<Started, StartError> {
    let (db, log, state_machine) = open_stores(data_dir, hook)?;
    let identity = Identity::new(id, &db, state_machine.applied_state());
    // What the log held as committed when the node started, before Raft reads it.
    let committed = log.committed_index();
    let raft_config = timers
        .to_openraft("banyan-core")
        .map_err(StartError::Config)?;
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        NetworkFactory::new(links, security.clone(), identity.clone()),
        log.clone(),
        state_machine.clone(),
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    state_machine.send_history_with_snapshots();
    identity
        .resolve(committed)
        .await
        .map_err(|e| StartError::Identity(e.to_string()))?;
    Ok(Started {
        db,
        log,
        state_machine,
        raft,
        identity,
    })
}
