//! Kill -9 the leader under a write load: a new leader takes over, writes resume, and
//! every acknowledged write is present exactly once on every node afterwards.

use banyan_harness::{check_customers, WriteLoad};
use banyan_tests::{spread_clients, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_leader_killed_during_writes_loses_nothing() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let load = WriteLoad::start(spread_clients(&cluster), 24, "lk");
    load.wait_acknowledged(300, DEADLINE).await.unwrap();

    cluster.kill(leader).unwrap();
    let at_kill = load.acknowledged();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors, DEADLINE).await.unwrap();
    assert_ne!(new_leader, leader);
    load.wait_acknowledged(at_kill + 300, DEADLINE)
        .await
        .unwrap();
    let history = load.stop().await;

    cluster.start(leader).unwrap();
    let states = cluster.final_states(&[1, 2, 3], DEADLINE).await.unwrap();
    let report = check_customers(&history, &states, "lk-");
    assert!(report.is_ok(), "{report}");
    assert!(report.acknowledged >= 600, "{report}");
}
