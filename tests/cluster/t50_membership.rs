//! Grow the core from 3 to 5 voters and shrink it back to 3 (removing the leader among
//! others) under a write load, without losing a write.

use std::collections::BTreeSet;

use banyan_harness::{check_customers, WriteLoad};
use banyan_proto::v1::ClusterStatus;
use banyan_tests::{spread_clients, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_grow_to_five_and_shrink_to_three_under_load() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let load = WriteLoad::start(spread_clients(&cluster), 8, "mb");
    load.wait_acknowledged(100, DEADLINE).await.unwrap();

    let client = cluster.client().unwrap();
    for id in [4, 5] {
        let addr = cluster.start_new_node(id).unwrap();
        client.add_voter(id, &addr).await.expect("add voter");
    }
    let status = cluster.status(leader).await.unwrap();
    let voter_ids = voters(&status);
    assert_eq!(voter_ids, BTreeSet::from([1, 2, 3, 4, 5]));
    let grown = load.acknowledged();
    load.wait_acknowledged(grown + 100, DEADLINE).await.unwrap();

    // Shrink: remove the current leader and node 5.
    let current = cluster
        .wait_for_leader(&[1, 2, 3, 4, 5], DEADLINE)
        .await
        .unwrap();
    for id in [current, 5] {
        client.remove_node(id).await.expect("remove node");
    }
    let remaining: Vec<u64> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|id| *id != current && *id != 5)
        .collect();
    let new_leader = cluster.wait_for_leader(&remaining, DEADLINE).await.unwrap();
    let status = cluster.status(new_leader).await.unwrap();
    let voter_ids = voters(&status);
    assert_eq!(voter_ids, remaining.iter().copied().collect());
    assert_eq!(
        status.nodes.len(),
        3,
        "removed nodes are gone, not learners"
    );
    let shrunk = load.acknowledged();
    load.wait_acknowledged(shrunk + 100, DEADLINE)
        .await
        .unwrap();
    let history = load.stop().await;
    for id in [current, 5] {
        cluster.forget(id).unwrap();
    }

    let states = cluster.final_states(&remaining, DEADLINE).await.unwrap();
    let report = check_customers(&history, &states, "mb-");
    assert!(report.is_ok(), "{report}");
}

/// The voters named in a status reply.
fn voters(status: &ClusterStatus) -> BTreeSet<u64> {
    status
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.id)
        .collect()
}
