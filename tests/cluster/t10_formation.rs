//! Three `banyan core` processes form one cluster, as `banyan ctl status` shows; `--init`
//! is a no-op on restart; SIGTERM stops a node cleanly.

use std::process::Command;

use banyan_proto::v1::ReadConsistency;
use banyan_tests::{banyan_bin, customer, other_than, pinned, three_nodes, DEADLINE};

fn ctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(banyan_bin())
        .args(["ctl", "--endpoint", endpoint])
        .args(args)
        .output()
        .expect("run banyan ctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_three_processes_form_one_cluster() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let follower = other_than(&[1, 2, 3], leader);
    let endpoint = cluster.addr(follower).unwrap();

    let out = ctl(&endpoint, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{report:#}");
    assert_eq!(report["members"], 3);
    assert_eq!(report["voters"], 3);
    assert_eq!(report["leader"], leader);
    let leaders: Vec<_> = nodes.iter().filter(|n| n["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{report:#}");
    assert_eq!(leaders[0]["id"], leader);
    for n in nodes {
        assert_eq!(n["voter"], true);
        assert_eq!(n["leader"], leader, "every node agrees on the leader: {n}");
    }

    let out = ctl(&endpoint, &["status"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("leader") && table.contains("follower"),
        "{table}"
    );
    for id in [1, 2, 3] {
        assert!(table.contains(&cluster.addr(id).unwrap()), "{table}");
    }

    // A write, then a graceful stop and a restart with the same --init: the node rejoins
    // the same cluster with its data, and no second cluster forms.
    pinned(&cluster, leader)
        .upsert_customer(customer("c-10", "Before restart"), None)
        .await
        .expect("write");
    cluster
        .terminate(follower)
        .await
        .expect("SIGTERM stops the node cleanly");
    cluster.start(follower).expect("restart");
    let again = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let status = cluster.status(follower).await.unwrap();
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(status.leader_id, again);
    let read = pinned(&cluster, follower)
        .get_customer("c-10", ReadConsistency::Linearizable)
        .await
        .expect("read after restart");
    assert_eq!(read.name, "Before restart");
}
