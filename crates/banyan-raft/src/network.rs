//! The client side of Banyan's Raft transport: openraft RPCs as gRPC calls to peers.
//!
//! One tonic channel per peer address is created lazily and cached for the life of the
//! node, shared by every replication stream to that peer. A peer that cannot be reached
//! answers [`RPCError::Unreachable`], which makes openraft back off instead of retrying in
//! a tight loop. [`LinkControl`] lets tests cut and heal single links inside one process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use banyan_proto::v1::raft_transport_client::RaftTransportClient;
use banyan_proto::v1::RaftPayload;
use banyan_trust::Security;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::codec;
use crate::identity::Identity;
use crate::types::{Node, NodeId, TypeConfig};

/// Largest gRPC message between nodes: append batches and 1 MiB snapshot chunks fit with
/// room to spare (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Which directed links between nodes are cut. Shared by every node of an in-process
/// cluster; a real deployment uses an empty one.
#[derive(Clone, Default, Debug)]
pub struct LinkControl {
    cut: Arc<RwLock<HashSet<(NodeId, NodeId)>>>,
}

impl LinkControl {
    /// Cuts traffic both ways between `a` and `b`.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut cut = self.cut.write().unwrap_or_else(|p| p.into_inner());
        cut.insert((a, b));
        cut.insert((b, a));
    }

    /// Restores traffic both ways between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        let mut cut = self.cut.write().unwrap_or_else(|p| p.into_inner());
        cut.remove(&(a, b));
        cut.remove(&(b, a));
    }

    /// Cuts every link between `node` and the `others`.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        for other in others {
            self.cut(node, other);
        }
    }

    /// Restores every link: the end of a partition drill.
    pub fn heal_all(&self) {
        self.cut.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether traffic from `from` to `to` is cut; the transport answers such calls as unreachable.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(from, to))
    }
}

/// Builds a lazily connected channel to a Banyan node at `addr` (`host:port`). Pings close
/// a connection whose path went silent within a few seconds, so replication to a peer
/// behind a healed cut resumes on a fresh connection instead of TCP's retransmission
/// backoff.
/// With a secure `security` it speaks TLS and presents this node's certificate.
pub fn channel_to(security: &Security, addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(security
        .endpoint(addr)?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Creates one [`PeerNetwork`] per replication target, all sharing a channel cache.
#[derive(Clone)]
pub struct NetworkFactory {
    id: NodeId,
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    links: LinkControl,
    /// TLS with this node's certificate (peers refuse Raft traffic from anyone else).
    security: Security,
    /// The cluster and data directory every call names.
    identity: Identity,
}

impl NetworkFactory {
    /// The transport's client side for this node: `links` for cuts in tests, `security` for TLS,
    /// and `identity` named on every call.
    pub fn new(links: LinkControl, security: Security, identity: Identity) -> Self {
        Self {
            id: identity.node_id(),
            channels: Arc::default(),
            links,
            security,
            identity,
        }
    }

    /// The cached channel to `target`, replaced when its address changed.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_addr, channel)) = channels.get(&target) {
            if cached_addr == addr {
                return Ok(channel.clone());
            }
        }
        let channel = channel_to(&self.security, addr)?;
        channels.insert(target, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        let client = match self.channel(target, &node.addr) {
            Ok(channel) => Ok(RaftTransportClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)),
            Err(e) => Err(format!(
                "bad address {:?} for node {target}: {e}",
                node.addr
            )),
        };
        PeerNetwork {
            from: self.id,
            target,
            client,
            links: self.links.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// The transport to one peer.
pub struct PeerNetwork {
    from: NodeId,
    target: NodeId,
    /// `Err` when the peer's address is unusable; every call then reports it unreachable.
    client: Result<RaftTransportClient<Channel>, String>,
    links: LinkControl,
    identity: Identity,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerNetwork {
    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, request: &Req) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.links.is_cut(self.from, self.target) {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "link cut");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let client = match &mut self.client {
            Ok(client) => client,
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(reason.clone()),
                )))
            }
        };
        let mut payload = tonic::Request::new(RaftPayload {
            data: codec::encode(request),
        });
        if self
            .identity
            .outgoing(self.target, payload.metadata_mut())
            .is_none()
        {
            let e = std::io::Error::other("this node's identity is not settled yet");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let sent_ms = crate::identity::wall_clock_ms();
        let reply = match rpc {
            Rpc::Append => client.append_entries(payload).await,
            Rpc::Vote => client.vote(payload).await,
            Rpc::Snapshot => client.install_snapshot(payload).await,
        };
        let reply = reply.map_err(|status| {
            self.identity.refused(self.target, &status);
            status_to_rpc_error(&status)
        })?;
        if let Some(incarnation) = reply
            .metadata()
            .get(crate::identity::INCARNATION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            // An answer from another data directory than the one registered for the
            // target (a wiped node of an older build, which checks no headers) counts
            // for nothing: not as a vote, not as an acknowledged entry.
            if let Some(registered) = self.identity.registered(self.target) {
                if registered != incarnation {
                    let e = std::io::Error::other(format!(
                        "node {} answered from data directory {incarnation}, not the registered {registered}",
                        self.target
                    ));
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
            }
            self.identity.saw(self.target, incarnation);
        }
        if let Some(theirs) = reply
            .metadata()
            .get(crate::identity::CLOCK_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            let back_ms = crate::identity::wall_clock_ms();
            self.identity
                .saw_clock(self.target, sent_ms, back_ms, theirs);
        }
        let result: Result<Resp, RaftError<NodeId, E>> = codec::decode(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Transport failures: a peer that is down or refusing connections is `Unreachable`
/// (openraft backs off); anything else is a network error worth retrying at once.
fn status_to_rpc_error<E: std::error::Error>(
    status: &tonic::Status,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    match status.code() {
        // A peer that refuses this node's identity is as good as unreachable: back off.
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::FailedPrecondition => {
            RPCError::Unreachable(Unreachable::new(status))
        }
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Append, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc).await
    }

    fn backoff(&self) -> Backoff {
        // A down peer is retried a few times a second: fast enough to notice its return,
        // slow enough not to spin.
        Backoff::new(std::iter::repeat(Duration::from_millis(250)))
    }
}
