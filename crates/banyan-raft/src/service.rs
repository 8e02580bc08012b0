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

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
};
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
    /// The snapshot being received, by id: its chunks so far, checked whole before the
    /// last chunk reaches Raft.
    receiving: Arc<Mutex<Receiving>>,
}

/// A snapshot's id and the chunks of it received so far, in order; and the last
/// snapshot refused whole, whose chunks are refused at once (the sender gives up on it
/// after its retries instead of sending it again and again).
#[derive(Default)]
struct Receiving {
    current: Option<(String, Vec<u8>)>,
    refused: Option<String>,
}

/// What to do with a snapshot chunk.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// Hand it to Raft.
    Pass,
    /// It does not follow the chunks received (this node restarted mid-transfer, or one
    /// went missing): tell the sender to start again from offset 0.
    Mismatch,
    /// The last chunk, and the whole does not decode.
    Undecodable(String),
}

/// Adds a chunk to the snapshot being received and, at the last one, checks the whole.
fn receive_chunk(state: &mut Receiving, id: &str, offset: u64, data: &[u8], done: bool) -> Chunk {
    if state.refused.as_deref() == Some(id) {
        return Chunk::Undecodable(format!("snapshot {id} was refused already"));
    }
    let receiving = &mut state.current;
    if offset == 0 {
        *receiving = Some((id.to_owned(), Vec::new()));
    }
    match receiving.as_mut() {
        // A chunk sent again (its answer was lost) replaces what it covered.
        Some((receiving_id, bytes)) if receiving_id == id && offset <= bytes.len() as u64 => {
            bytes.truncate(offset as usize);
            bytes.extend_from_slice(data);
        }
        _ => {
            *receiving = None;
            return Chunk::Mismatch;
        }
    }
    if !done {
        return Chunk::Pass;
    }
    let (_, whole) = receiving.take().unwrap_or_default();
    match codec::decode_snapshot(&whole) {
        Ok(_) => Chunk::Pass,
        Err(e) => {
            state.refused = Some(id.to_owned());
            Chunk::Undecodable(e.to_string())
        }
    }
}

/// A peer refused again within this long is not logged again.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl RaftTransportService {
    /// Serves the transport for `raft`, refusing calls not meant for `identity`'s cluster and data
    /// directory.
    pub fn new(raft: Raft, identity: Identity) -> Self {
        Self {
            raft,
            identity,
            warned: Arc::default(),
            receiving: Arc::default(),
        }
    }

    /// Keeps a copy of a snapshot's chunks and checks the whole when the last arrives.
    /// openraft acts on a finished snapshot (it truncates and purges the log up to it)
    /// before the state machine reads it, so one that does not decode must be refused
    /// here: passed on, it would leave the node with neither its log nor a state.
    /// `Err(reply)`: answer that instead of handing the chunk to Raft.
    fn check_snapshot_chunk(
        &self,
        rpc: &InstallSnapshotRequest<TypeConfig>,
    ) -> Result<(), Result<Response<RaftPayload>, Status>> {
        let id = &rpc.meta.snapshot_id;
        let mut receiving = self.receiving.lock().unwrap_or_else(|p| p.into_inner());
        match receive_chunk(&mut receiving, id, rpc.offset, &rpc.data, rpc.done) {
            Chunk::Pass => Ok(()),
            Chunk::Mismatch => {
                let mismatch: Result<
                    InstallSnapshotResponse<NodeId>,
                    RaftError<NodeId, InstallSnapshotError>,
                > = Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
                    SnapshotMismatch {
                        expect: (id.clone(), 0).into(),
                        got: (id.clone(), rpc.offset).into(),
                    },
                )));
                Err(self.reply(&mismatch))
            }
            Chunk::Undecodable(e) => {
                tracing::warn!(snapshot = %id, error = %e, "refused a snapshot that does not decode");
                Err(Err(Status::invalid_argument(format!(
                    "data: snapshot {id} does not decode: {e}"
                ))))
            }
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
        if let Err(answer) = self.check_snapshot_chunk(&rpc) {
            return answer;
        }
        self.reply(&self.raft.install_snapshot(rpc).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_are_checked_whole_and_out_of_order_ones_restart_the_transfer() {
        let whole = codec::encode_snapshot(
            &banyan_domain::State::default(),
            &Default::default(),
            &Default::default(),
        );
        let (a, b) = whole.split_at(whole.len() / 2);
        let mut receiving = Receiving::default();
        assert_eq!(
            receive_chunk(&mut receiving, "s1", 0, a, false),
            Chunk::Pass
        );
        // The same chunk again (its answer was lost): it replaces itself.
        assert_eq!(
            receive_chunk(&mut receiving, "s1", 0, a, false),
            Chunk::Pass
        );
        let at = a.len() as u64;
        assert_eq!(
            receive_chunk(&mut receiving, "s1", at, b, true),
            Chunk::Pass
        );
        // A chunk past what was received, or of another snapshot: start again.
        assert_eq!(
            receive_chunk(&mut receiving, "s1", at, b, true),
            Chunk::Mismatch
        );
        receive_chunk(&mut receiving, "s2", 0, a, false);
        assert_eq!(
            receive_chunk(&mut receiving, "s3", at, b, true),
            Chunk::Mismatch
        );
        // Chunks that do not decode as a whole are refused at the last one.
        receive_chunk(&mut receiving, "s4", 0, a, false);
        let garbage = [0xffu8; 7];
        assert!(matches!(
            receive_chunk(&mut receiving, "s4", at, &garbage, true),
            Chunk::Undecodable(_)
        ));
        assert!(receiving.current.is_none());
        // Sent again, it is refused at its first chunk.
        assert!(matches!(
            receive_chunk(&mut receiving, "s4", 0, a, false),
            Chunk::Undecodable(_)
        ));
    }
}
