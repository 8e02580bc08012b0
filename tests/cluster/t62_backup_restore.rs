//! The backup and restore of docs/operations.md, rehearsed: the data directory of a
//! stopped, caught-up follower is a backup; after the whole core is lost, that backup in
//! every member's data directory brings the cluster back with every write acknowledged
//! before it, without the writes acknowledged after it, and taking writes again.

use std::path::Path;

use banyan_harness::{check_customers, WriteLoad};
use banyan_proto::v1::ReadConsistency;
use banyan_tests::{customer, other_than, spread_clients, three_nodes, DEADLINE};

/// Copies the directory tree `from` into `to` (created), as an operator's `cp -a` would.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_a_followers_data_directory_restores_a_lost_core() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let before = WriteLoad::start(spread_clients(&cluster), 8, "before");
    before.wait_acknowledged(200, DEADLINE).await.unwrap();
    let before = before.stop().await;

    // Back up: a follower that has applied everything the leader committed, stopped
    // gracefully, its data directory copied, then started again.
    let follower = other_than(&[1, 2, 3], leader);
    let committed = cluster.status(leader).await.unwrap().committed_index;
    cluster
        .wait_applied(follower, committed, DEADLINE)
        .await
        .unwrap();
    cluster.terminate(follower).await.unwrap();
    let backup = tempfile::tempdir().unwrap();
    copy_tree(cluster.data_dir(follower).unwrap(), backup.path()).unwrap();
    cluster.start(follower).unwrap();
    cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();

    // Writes after the backup, acknowledged; then every member and its data are lost.
    let after = WriteLoad::start(spread_clients(&cluster), 8, "after");
    after.wait_acknowledged(50, DEADLINE).await.unwrap();
    let after = after.stop().await;
    assert!(after.acknowledged().count() >= 50);
    for id in [1, 2, 3] {
        cluster.kill(id).unwrap();
        cluster.wipe(id).unwrap();
    }

    // Restore: the backup into every member's data directory, each started as before.
    for id in [1, 2, 3] {
        copy_tree(backup.path(), cluster.data_dir(id).unwrap()).unwrap();
        cluster.start(id).unwrap();
    }
    cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let states = cluster.final_states(&[1, 2, 3], DEADLINE).await.unwrap();
    let report = check_customers(&before, &states, "before-");
    assert!(report.is_ok(), "{report}");
    assert!(report.acknowledged >= 200);
    for state in &states {
        let later: Vec<&str> = state
            .customers
            .iter()
            .map(|c| c.id.as_str())
            .filter(|id| id.starts_with("after-"))
            .collect();
        assert!(
            later.is_empty(),
            "node {} has writes from after the backup: {later:?}",
            state.node
        );
    }

    // The restored core takes writes again.
    let client = cluster.client().unwrap();
    client
        .upsert_customer(customer("restored-1", "Restored"), None)
        .await
        .expect("a write after the restore");
    let read = client
        .get_customer("restored-1", ReadConsistency::Linearizable)
        .await
        .expect("read back");
    assert_eq!(read.name, "Restored");
}
