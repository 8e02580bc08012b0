//! A voter whose clock runs ahead of its peers' past the budget is refused by them: it may
//! neither lead nor vote (the leader stamps every command with its clock). The leader
//! measures every member's clock on each round trip and shows the offset; the cluster
//! keeps its quorum and elects a node with a good clock.

use std::path::Path;
use std::time::Duration;

use banyan_harness::wait_until;
use banyan_tests::{customer, other_than, three_nodes, DEADLINE};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t44_a_voter_whose_clock_runs_ahead_is_shown_and_never_leads() {
    if !Path::new(LIBFAKETIME).is_file() {
        assert!(
            std::env::var_os("BANYAN_REQUIRE_FAKETIME").is_none(),
            "a skewed voter needs libfaketime (apt-get install faketime)"
        );
        eprintln!("SKIPPED: a skewed voter needs libfaketime (apt-get install faketime)");
        return;
    }
    let (mut cluster, leader) = three_nodes(&[]).await;
    let skewed = other_than(&[1, 2, 3], leader);
    let good = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != skewed)
        .unwrap();
    cluster
        .set_clock_ahead(skewed, Some(Duration::from_secs(2)))
        .unwrap();
    cluster.terminate(skewed).await.unwrap();
    cluster.start(skewed).unwrap();

    // The leader measures it, and says it is past the budget.
    let offset = wait_until(
        "the leader to measure the skewed clock",
        DEADLINE,
        || async {
            let status = cluster.status(leader).await.ok()?;
            let node = status.nodes.iter().find(|n| n.id == skewed)?;
            (node.clock_offset_known && node.clock_past_budget).then_some(node.clock_offset_ms)
        },
    )
    .await
    .unwrap();
    assert!((1_500..2_500).contains(&offset), "{offset} ms");
    let status = cluster.status(leader).await.unwrap();
    let fine = status.nodes.iter().find(|n| n.id == good).unwrap();
    assert!(
        fine.clock_offset_known && !fine.clock_past_budget,
        "{fine:?}"
    );
    // It follows: a leader whose clock looks behind is not refused.
    let committed = status.committed_index;
    cluster
        .wait_applied(skewed, committed, DEADLINE)
        .await
        .unwrap();

    // The leader dies while the node with the good clock is frozen, so the skewed one
    // campaigns first; thawed, the good one refuses its vote requests and is elected.
    let term = cluster.status(skewed).await.unwrap().term;
    cluster.pause(good).unwrap();
    cluster.kill(leader).unwrap();
    wait_until("the skewed node to campaign", DEADLINE, || async {
        (cluster.status(skewed).await.ok()?.term > term + 1).then_some(())
    })
    .await
    .unwrap();
    cluster.resume(good).unwrap();
    let new_leader = cluster
        .wait_for_leader(&[good, skewed], DEADLINE)
        .await
        .unwrap();
    assert_eq!(new_leader, good, "the node with the good clock leads");
    let client = cluster.client().unwrap();
    client
        .upsert_customer(customer("after-1", "After"), None)
        .await
        .expect("the cluster writes on two voters");
    wait_until("the refusal logged", DEADLINE, || async {
        cluster
            .log_tail(good, 400)
            .contains("ms ahead of this node's")
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        cluster
            .wait_for_leader(&[good, skewed], DEADLINE)
            .await
            .unwrap(),
        good
    );
}
