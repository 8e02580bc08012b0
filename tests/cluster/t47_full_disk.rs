//! A node whose Raft stops with a fatal error (here: its disk is full, so it cannot make
//! an entry durable) exits non-zero, so its orchestrator restarts it or shows why, instead
//! of answering UNAVAILABLE for ever while looking alive. The others keep the quorum.
//! Needs `unshare` and `mount` (root, as in CI's container); without them it says so and
//! passes.

use banyan_tests::{customer, other_than, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t47_a_node_whose_disk_fills_up_exits_non_zero() {
    let mountable = std::process::Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs /mnt",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mountable {
        eprintln!("SKIPPED: a full-disk node needs unshare and mount (root)");
        return;
    }
    let (mut cluster, leader) = three_nodes(&[]).await;
    let small = other_than(&[1, 2, 3], leader);
    cluster.terminate(small).await.unwrap();
    cluster.set_disk_size(small, Some(8 << 20)).unwrap();
    cluster.start(small).unwrap();
    let committed = cluster.status(leader).await.unwrap().committed_index;
    cluster
        .wait_applied(small, committed, DEADLINE)
        .await
        .unwrap();

    // 64 KB a write, until the small disk is full and the node says its Raft stopped.
    let client = cluster.client().unwrap();
    let mut written = 0;
    while !cluster.log_tail(small, 100).contains("fatal error") {
        let mut big = customer(&format!("big-{written}"), "Big");
        for key in 0..64 {
            big.attributes.insert(format!("k{key}"), "v".repeat(1_000));
        }
        client
            .upsert_customer(big, None)
            .await
            .expect("the others keep the quorum");
        written += 1;
        assert!(written < 1_000, "8 MiB never filled");
    }
    let exit = cluster
        .wait_exited(small, DEADLINE)
        .await
        .expect("the node exits instead of answering UNAVAILABLE for ever");
    assert!(!exit.success(), "non-zero: {exit}");
    let log = cluster.log_tail(small, 400);
    assert!(log.contains("fatal"), "it says why:\n{log}");
    // The others serve on.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != small).collect();
    cluster.wait_for_leader(&others, DEADLINE).await.unwrap();
    client
        .upsert_customer(customer("after-1", "After"), None)
        .await
        .expect("the others keep the quorum");
}
