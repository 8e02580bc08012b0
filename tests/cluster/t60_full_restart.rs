//! All three nodes killed with SIGKILL and restarted: every acknowledged write is back.

use banyan_harness::{check_customers, WriteLoad};
use banyan_proto::v1::ReadConsistency;
use banyan_tests::{spread_clients, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_whole_cluster_restart_keeps_acknowledged_writes() {
    let (mut cluster, _) = three_nodes(&[]).await;
    let load = WriteLoad::start(spread_clients(&cluster), 16, "fr");
    load.wait_acknowledged(400, DEADLINE).await.unwrap();
    // Kill while writes are in flight, then collect what the clients were told.
    for id in [1, 2, 3] {
        cluster.kill(id).unwrap();
    }
    let history = load.stop().await;

    for id in [1, 2, 3] {
        cluster.start(id).unwrap();
    }
    let states = cluster.final_states(&[1, 2, 3], DEADLINE).await.unwrap();
    let report = check_customers(&history, &states, "fr-");
    assert!(report.is_ok(), "{report}");
    assert!(report.acknowledged >= 400);

    let any = history
        .acknowledged()
        .last()
        .expect("an acknowledged write");
    let read = cluster
        .client()
        .unwrap()
        .get_customer(&any.customer_id, ReadConsistency::Linearizable)
        .await
        .expect("linearizable read after restart");
    assert_eq!(read.version, 1);
}
