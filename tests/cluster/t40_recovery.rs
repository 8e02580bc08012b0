//! A killed follower restarted on its data directory catches up from the log; a follower
//! whose directory is wiped rejoins under a new id and is brought up by a snapshot.

use banyan_harness::{check_customers, wait_until, WriteLoad};
use banyan_tests::{other_than, spread_clients, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_followers_recover_from_log_and_from_snapshot() {
    // Frequent snapshots, so the leader purges its log and a new node needs a snapshot.
    let (mut cluster, leader) = three_nodes(&["--snapshot-every", "300"]).await;
    let load = WriteLoad::start(spread_clients(&cluster), 8, "rc");
    load.wait_acknowledged(200, DEADLINE).await.unwrap();

    // 1. Kill -9 a follower, write on, restart it on the same directory.
    let follower = other_than(&[1, 2, 3], leader);
    cluster.kill(follower).unwrap();
    let at_kill = load.acknowledged();
    load.wait_acknowledged(at_kill + 500, DEADLINE)
        .await
        .unwrap();
    cluster.start(follower).unwrap();
    let leader_now = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let target = cluster.status(leader_now).await.unwrap().committed_index;
    cluster
        .wait_applied(follower, target, DEADLINE)
        .await
        .unwrap();

    // 2. Wipe another follower and bring it back as a new node (id 4).
    let leader_now = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    // Prefer a node other than the one just restarted; never the leader.
    let wiped = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != leader_now)
        .max_by_key(|id| *id != follower)
        .unwrap();
    cluster.kill(wiped).unwrap();
    cluster.wipe(wiped).unwrap();
    let client = cluster.client().unwrap();
    client
        .remove_node(wiped)
        .await
        .expect("remove the wiped node");
    cluster.forget(wiped).unwrap();
    let voters: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != wiped).collect();

    // The leader must have purged log behind a snapshot, so only a snapshot can seed node 4.
    wait_until("the leader to purge its log", DEADLINE, || async {
        let leader = cluster.wait_for_leader(&voters, DEADLINE).await.ok()?;
        let status = cluster.status(leader).await.ok()?;
        (status.purged_index > 0).then_some(())
    })
    .await
    .unwrap();
    let addr = cluster.start_new_node(4).unwrap();
    client
        .add_voter(4, &addr)
        .await
        .expect("add node 4 as a voter");
    let members = [voters[0], voters[1], 4];
    load.wait_acknowledged(load.acknowledged() + 200, DEADLINE)
        .await
        .unwrap();
    let history = load.stop().await;

    let states = cluster.final_states(&members, DEADLINE).await.unwrap();
    let report = check_customers(&history, &states, "rc-");
    assert!(report.is_ok(), "{report}");
    let status = cluster.status(4).await.unwrap();
    assert!(
        status.snapshot_index > 0,
        "node 4 holds a snapshot: {status:?}"
    );
    assert!(
        cluster.log_tail(4, 500).contains("installed snapshot"),
        "node 4 was seeded by a snapshot:\n{}",
        cluster.log_tail(4, 50)
    );
    assert_eq!(status.nodes.iter().filter(|n| n.voter).count(), 3);
}
