//! The server side of Banyan's Raft transport: decodes peers' RPCs and hands them to the
//! local Raft.

use banyan_proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use banyan_proto::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::codec;
use crate::network::MAX_MESSAGE_BYTES;
use crate::types::Raft;

/// Serves `banyan.v1.RaftTransport` for one node.
#[derive(Clone)]
pub struct RaftTransportService {
    raft: Raft,
}

impl RaftTransportService {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }

    /// The tonic service, with message limits raised for append batches and snapshots.
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn decode_request<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    codec::decode(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("data: undecodable Raft message: {e}")))
}

fn encode_reply<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        data: codec::encode(result),
    }))
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode_request(request)?;
        encode_reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode_request(request)?;
        encode_reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode_request(request)?;
        encode_reply(&self.raft.install_snapshot(rpc).await)
    }
}
