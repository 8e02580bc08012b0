//! A branch whose journal of work done alone holds a record it cannot read stops at start,
//! loudly and non-zero, instead of skipping it: an acknowledged autonomous write must
//! never vanish quietly.

use banyan_harness::wait_until;
use banyan_proto::v1 as pb;
use banyan_tests::{three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t89_a_branch_with_an_unreadable_journal_entry_stops_instead_of_skipping_it() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    cluster.start_branch(101, "emea", &[]).unwrap();
    wait_until(
        "the branch joined and holds its lease",
        DEADLINE,
        || async {
            let status = cluster.status(leader).await.ok()?;
            let learner = status.nodes.iter().any(|n| n.id == 101 && !n.voter);
            let leased = status
                .sites
                .iter()
                .any(|s| s.site_id == "emea" && s.mode == pb::SiteMode::Leased as i32);
            (learner && leased).then_some(())
        },
    )
    .await
    .unwrap();
    cluster.terminate(101).await.unwrap();

    // A journal entry that no longer decodes (a damaged disk, another build's format).
    cluster
        .append_record(101, "journal", b"\x03not a command")
        .unwrap();
    cluster.start(101).unwrap();
    let exit = cluster
        .wait_exited(101, DEADLINE)
        .await
        .expect("the branch stops instead of serving without the entry");
    assert!(!exit.success(), "non-zero: {exit}");
    let log = cluster.log_tail(101, 200);
    assert!(
        log.contains("journal entry") && log.contains("cannot be read"),
        "it names the entry:\n{log}"
    );

    // The core is untouched.
    for id in [1, 2, 3] {
        assert!(cluster.is_running(id), "node {id}");
    }
}
