//! 1,000 concurrent upserts through followers and the leader all become readable from
//! every node.

use banyan_harness::{check_customers, History, Operation, Outcome};
use banyan_proto::v1::ReadConsistency;
use banyan_tests::{customer, pinned, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_concurrent_writes_through_every_node_reach_every_node() {
    let (cluster, _leader) = three_nodes(&[]).await;
    let clients: Vec<_> = [1, 2, 3].map(|id| pinned(&cluster, id)).into();

    let writes = (0..1000).map(|i| {
        let client = clients[i % 3].clone();
        async move {
            let id = format!("w-{i}");
            let result = client
                .upsert_customer(customer(&id, &format!("Customer {i}")), None)
                .await;
            (id, result)
        }
    });
    let results = futures::future::join_all(writes).await;
    let mut history = History::default();
    for (id, result) in &results {
        assert!(
            result.is_ok(),
            "write {id} failed: {:?}",
            result.as_ref().err()
        );
        history.operations.push(Operation {
            customer_id: id.clone(),
            outcome: Outcome::of(result),
            invoked: Default::default(),
            completed: Default::default(),
        });
    }

    let states = cluster.final_states(&[1, 2, 3], DEADLINE).await.unwrap();
    // Concurrent commands share log entries: 1,000 writes took fewer than 1,000 entries.
    let status = cluster.status(1).await.unwrap();
    assert!(
        status.last_log_index < 1000,
        "1,000 concurrent writes used {} log entries; the proposer should batch them",
        status.last_log_index
    );
    for state in &states {
        assert_eq!(state.customers.len(), 1000, "node {}", state.node);
    }
    let report = check_customers(&history, &states, "w-");
    assert!(report.is_ok(), "{report}");

    // Linearizable reads through a follower see the writes too.
    for id in [1, 2, 3] {
        let c = clients[id - 1]
            .get_customer("w-999", ReadConsistency::Linearizable)
            .await
            .expect("linearizable read");
        assert_eq!(c.name, "Customer 999");
    }
}
