//! The server side of Banyan's Raft transport: decodes peers' RPCs and hands them to the
//! local Raft.

use banyan_proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use banyan_proto::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::metadata::MetadataValue;

use crate::codec;
use crate::identity::{Identity, FENCED_HEADER};
use crate::network::MAX_MESSAGE_BYTES;
use crate::types::{NodeId, Raft, TypeConfig};

/// Serves `banyan.v1.RaftTransport` for one node.
#[derive(Clone)]
pub struct RaftTransportService {
    raft: Raft,
    /// Checks every call's cluster and data directories (see [`crate::identity`]).
    identity: Identity,
    /// When each peer's refusal was last logged: a refused leader retries every 250 ms.
    warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

/// A peer refused again within this long is not logged again.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl RaftTransportService {
    pub fn new(raft: Raft, identity: Identity) -> Self {
        Self {
            raft,
            identity,
            warned: Arc::default(),
        }
    }

    /// Decodes a call from a peer and checks who it is: the sender is the node that
    /// signed the call's vote (the candidate, or the leader).
    fn accept<T: DeserializeOwned>(
        &self,
        request: Request<RaftPayload>,
        sender: impl Fn(&T) -> NodeId,
    ) -> Result<T, Status> {
        let (headers, _, payload) = request.into_parts();
        let rpc: T = codec::decode(&payload.data).map_err(|e| {
            Status::invalid_argument(format!("data: undecodable Raft message: {e}"))
        })?;
        let from = sender(&rpc);
        self.identity
            .check_incoming(from, &headers)
            .map_err(|refusal| {
                let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
                let due = warned
                    .get(&from)
                    .is_none_or(|at| at.elapsed() >= WARN_EVERY);
                if due {
                    warned.insert(from, Instant::now());
                    tracing::warn!(from, reason = %refusal.reason, "refused a Raft call");
                }
                let mut status = Status::failed_precondition(refusal.reason);
                if refusal.caller_fenced {
                    status
                        .metadata_mut()
                        .insert(FENCED_HEADER, MetadataValue::from_static("caller"));
                }
                status
            })?;
        Ok(rpc)
    }

    fn reply<T: Serialize>(&self, result: &T) -> Result<Response<RaftPayload>, Status> {
        let mut reply = Response::new(RaftPayload {
            data: codec::encode(result),
        });
        self.identity.reply_headers(reply.metadata_mut());
        Ok(reply)
    }

    /// The tonic service, with message limits raised for append batches and snapshots.
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self
            .accept(request, |rpc: &AppendEntriesRequest<TypeConfig>| {
                rpc.vote.leader_id().node_id
            })?;
        self.reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = self.accept(request, |rpc: &VoteRequest<NodeId>| {
            rpc.vote.leader_id().node_id
        })?;
        self.reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self
            .accept(request, |rpc: &InstallSnapshotRequest<TypeConfig>| {
                rpc.vote.leader_id().node_id
            })?;
        self.reply(&self.raft.install_snapshot(rpc).await)
    }
}
