//! A voter whose data directory is wiped and that is restarted with its old id and command
//! line (`--init` included) is refused by its peers and stops, saying why; the cluster
//! keeps its quorum and every acknowledged write, and the runbook's rejoin under a new id
//! brings the machine back.

use banyan_harness::{check_customers, wait_until, WriteLoad};
use banyan_tests::{other_than, spread_clients, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_a_wiped_voter_is_refused_under_its_old_id_and_rejoins_under_a_new_one() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let load = WriteLoad::start(spread_clients(&cluster), 4, "wv");
    load.wait_acknowledged(100, DEADLINE).await.unwrap();

    // Every member is registered on its data directory, under one cluster id.
    let registered = wait_until("every voter registered", DEADLINE, || async {
        let status = cluster.status(leader).await.ok()?;
        let all = status.nodes.iter().all(|n| !n.incarnation.is_empty());
        (all && !status.cluster_id.is_empty()).then_some(status)
    })
    .await
    .unwrap();
    let wiped = other_than(&[1, 2, 3], leader);
    let old_dir = registered
        .nodes
        .iter()
        .find(|n| n.id == wiped)
        .map(|n| n.incarnation.clone())
        .unwrap();

    cluster.kill(wiped).unwrap();
    cluster.wipe(wiped).unwrap();
    cluster.start(wiped).unwrap();
    let exit = cluster
        .wait_exited(wiped, DEADLINE)
        .await
        .expect("the wiped voter stops instead of rejoining under its old id");
    assert!(!exit.success(), "it exits non-zero: {exit}");
    let log = cluster.log_tail(wiped, 400);
    assert!(
        log.contains("wiped or replaced") && log.contains("new id"),
        "it says why and what to do:\n{log}"
    );

    // The other two keep the quorum and every acknowledged write.
    let at_refusal = load.acknowledged();
    load.wait_acknowledged(at_refusal + 100, DEADLINE)
        .await
        .unwrap();
    let status = cluster.status(leader).await.unwrap();
    let still = status.nodes.iter().find(|n| n.id == wiped).unwrap();
    assert_eq!(
        still.incarnation, old_dir,
        "the register kept the old directory"
    );

    // The runbook: remove the old id, start the machine under a new id on an empty
    // directory without --init, add it as a voter.
    let client = cluster.client().unwrap();
    client.remove_node(wiped).await.expect("remove the old id");
    cluster.forget(wiped).unwrap();
    let addr = cluster.start_new_node(4).unwrap();
    client.add_voter(4, &addr).await.expect("add node 4");
    let members: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != wiped)
        .chain([4])
        .collect();
    load.wait_acknowledged(load.acknowledged() + 100, DEADLINE)
        .await
        .unwrap();
    let history = load.stop().await;
    let states = cluster.final_states(&members, DEADLINE).await.unwrap();
    let report = check_customers(&history, &states, "wv-");
    assert!(report.is_ok(), "{report}");

    let leader = cluster.wait_for_leader(&members, DEADLINE).await.unwrap();
    let status = wait_until("node 4 registered", DEADLINE, || async {
        let status = cluster.status(leader).await.ok()?;
        let four = status.nodes.iter().find(|n| n.id == 4)?;
        (!four.incarnation.is_empty()).then_some(status)
    })
    .await
    .unwrap();
    assert_eq!(
        status.cluster_id, registered.cluster_id,
        "one cluster id all along"
    );
    assert!(
        status.nodes.iter().all(|n| n.id != wiped),
        "the old id is gone"
    );
    for id in &members {
        let own = cluster.status(*id).await.unwrap();
        assert_eq!(own.cluster_id, registered.cluster_id, "node {id}");
    }
}
