//! The branch node: an openraft learner of the core over the same sled stores as a core
//! voter, and the `Backend` the public services run on.

use std::sync::Arc;
use std::time::Duration;

use banyan_api::{Backend, Committed};
use banyan_client::{Client, RetryPolicy};
use banyan_domain::Command;
use banyan_raft::{
    open_stores, AppliedState, Database, LinkControl, NetworkFactory, Raft, StoreError,
};
use tonic::transport::Channel;
use tonic::Status;

use crate::config::BranchConfig;
use crate::lease::Lease;

/// How long a write waits for the core, and then for the branch's replica to apply it.
const WRITE_WAIT: Duration = Duration::from_secs(6);
/// Pause between attempts to join the core as a learner.
const JOIN_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("starting Raft: {0}")]
    Raft(String),
    #[error("core endpoints: {0}")]
    Core(String),
}

/// A running branch. Cheap to clone.
#[derive(Clone)]
pub struct BranchNode {
    inner: Arc<Inner>,
}

struct Inner {
    config: BranchConfig,
    raft: Raft,
    applied: AppliedState,
    db: Database,
    /// The core, for joining, writes and lease renewals.
    core: Client,
    lease: Lease,
}

impl BranchNode {
    /// Opens the branch's storage, starts its Raft as a (not yet joined) learner, and
    /// starts joining the core and renewing the site's lease in the background.
    pub async fn start(config: BranchConfig, links: LinkControl) -> Result<Self, StartError> {
        let (db, log, state_machine) = open_stores(&config.data_dir)?;
        let raft_config = config
            .timers
            .to_openraft("banyan-core")
            .map_err(StartError::Config)?;
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            NetworkFactory::new(config.id, links),
            log,
            state_machine.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let core = Client::new(&config.core, RetryPolicy::default())
            .map_err(|e| StartError::Core(e.to_string()))?;
        let lease = Lease::new(&config);
        let node = Self {
            inner: Arc::new(Inner {
                applied: state_machine.applied_state(),
                raft,
                db,
                core,
                lease,
                config,
            }),
        };
        tokio::spawn(join_core(Arc::downgrade(&node.inner)));
        tokio::spawn(crate::lease::renew_forever(
            node.inner.lease.clone(),
            node.inner.config.clone(),
        ));
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.inner.config.id
    }

    pub fn site(&self) -> &str {
        &self.inner.config.site
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn lease(&self) -> &Lease {
        &self.inner.lease
    }

    /// Stops Raft and flushes storage.
    pub async fn shutdown(&self) {
        self.inner.lease.stop();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Err(e) = self.inner.db.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Asks the core to add this branch as a learner until it has, then ends. The core
/// replicates its log to the branch from then on.
async fn join_core(node: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = node.upgrade() else {
            return;
        };
        let (id, addr) = (inner.config.id, inner.config.advertise_addr.clone());
        match inner.core.add_learner(id, &addr).await {
            Ok(reply) => {
                tracing::info!(
                    id,
                    log_index = reply.log_index,
                    "joined the core as a learner"
                );
                return;
            }
            Err(status) => {
                tracing::warn!(id, %status, "joining the core failed; retrying");
            }
        }
        drop(inner);
        tokio::time::sleep(JOIN_RETRY).await;
    }
}

impl Backend for BranchNode {
    fn node_id(&self) -> u64 {
        self.inner.config.id
    }

    fn applied(&self) -> &AppliedState {
        &self.inner.applied
    }

    /// Sends the command to the core's leader, then waits until the branch's own replica
    /// has applied it, so a read at the branch right after sees it.
    async fn submit(&self, command: Command) -> Result<Committed, Status> {
        let reply = self
            .inner
            .core
            .propose(banyan_raft::codec::encode(&command))
            .await?;
        let committed: Committed = banyan_raft::codec::decode(&reply)
            .map_err(|e| Status::internal(format!("undecodable reply from the core: {e}")))?;
        let applied = self.inner.applied.wait_applied(committed.index);
        if tokio::time::timeout(WRITE_WAIT, applied).await.is_err() {
            return Err(Status::unavailable(format!(
                "committed at the core at log index {} but not yet replicated to this branch; retry with the same request_id",
                committed.index
            )));
        }
        Ok(committed)
    }

    /// A linearizable read at a branch is answered by the core; a local read by the
    /// branch's replica (with its applied index).
    async fn read_target(&self, already_forwarded: bool) -> Result<Option<Channel>, Status> {
        if already_forwarded {
            return Ok(None);
        }
        banyan_client::channel(&self.inner.core.current_endpoint())
            .map(Some)
            .map_err(|e| Status::unavailable(format!("no core endpoint: {e}")))
    }
}
