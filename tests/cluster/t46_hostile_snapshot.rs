//! A snapshot that does not decode, sent to a follower under the leader's own vote and
//! certificate (a leader of a broken build, or a hostile holder of its key), is refused
//! before Raft acts on it. Handed on, openraft truncated and purged the follower's log up
//! to the snapshot before the state machine found it unreadable: the node stopped, and
//! restarted it had neither its log nor a state to replay.

use std::time::Duration;

use banyan_proto::v1::raft_transport_client::RaftTransportClient;
use banyan_proto::v1::RaftPayload;
use banyan_raft::{CommittedLeaderId, InstallSnapshotRequest, LogId, SnapshotMeta, Vote};
use banyan_tests::{customer, other_than, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t46_a_snapshot_that_does_not_decode_is_refused_before_raft_acts_on_it() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let client = cluster.client().unwrap();
    client
        .upsert_customer(customer("before-1", "Before"), None)
        .await
        .unwrap();
    let follower = other_than(&[1, 2, 3], leader);
    let status = cluster.status(leader).await.unwrap();

    let pki = cluster.pki().expect("a secure cluster");
    let as_leader = pki.node_security(leader).unwrap();
    let channel = banyan_client::channel(&as_leader, &cluster.addr(follower).unwrap()).unwrap();
    let request = InstallSnapshotRequest {
        vote: Vote::new_committed(status.term, leader),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(status.term, leader),
                status.last_log_index + 1_000,
            )),
            last_membership: Default::default(),
            snapshot_id: "garbage".into(),
        },
        offset: 0,
        data: vec![3, 0xff, 0xff, 0xff, 0xff, 0xff],
        done: true,
    };
    let mut call = tonic::Request::new(RaftPayload {
        data: banyan_raft::codec::encode(&request),
    });
    call.set_timeout(Duration::from_secs(10));
    let refused = RaftTransportClient::new(channel)
        .install_snapshot(call)
        .await
        .expect_err("a snapshot that does not decode is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("data"), "{refused:?}");

    // The follower stays up with its log, and keeps applying.
    client
        .upsert_customer(customer("after-1", "After"), None)
        .await
        .unwrap();
    let committed = cluster.status(leader).await.unwrap().committed_index;
    cluster
        .wait_applied(follower, committed, DEADLINE)
        .await
        .unwrap();
    assert!(cluster.is_running(follower));
    // And it restarts on that log.
    cluster.terminate(follower).await.unwrap();
    cluster.start(follower).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let committed = cluster.status(leader).await.unwrap().committed_index;
    cluster
        .wait_applied(follower, committed, DEADLINE)
        .await
        .unwrap();
}
