//! Banyan's gRPC contract, generated at build time from `proto/banyan/v1`.
//!
//! Everything outside this crate speaks to the wire through these types; conversion to
//! domain types happens once, at each service edge.

/// Package `banyan.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("banyan.v1");
}

/// Encoded file descriptors of `banyan.v1`, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("banyan_descriptor");

/// The metadata header naming the cluster a caller belongs to: every Raft call and every
/// call of a branch to the core carries it, and a node of another cluster is refused.
pub const CLUSTER_ID_HEADER: &str = "banyan-cluster-id";
