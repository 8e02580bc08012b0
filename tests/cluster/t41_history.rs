//! Finished contacts leave the routing state after the retention window and are still
//! answered for from every node's history store: after they left, after a restart, and on
//! a node that joined later by snapshot. Each node writes them as contact detail records,
//! and `banyan ctl history export` prints the same records.

use banyan_harness::{wait_until, WriteLoad};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{ctl, other_than, pinned, spread_clients, three_nodes, DEADLINE};

const CUSTOMER: &str = "hist-1";

/// Whether node `id`'s own state answers for `contact` (a local read).
async fn answers_for(cluster: &banyan_harness::LocalCluster, id: u64, contact: &str) -> bool {
    let request = pb::GetContactRequest {
        id: contact.into(),
        consistency: ReadConsistency::Local.into(),
    };
    pinned(cluster, id)
        .get_contact(request)
        .await
        .is_ok_and(|c| c.id == contact && c.state == pb::ContactState::SelfServed as i32)
}

/// Every event node `id` serves from index 1 up to `upto`, as (index, ordinal, kind,
/// contact, time).
async fn events_upto(
    cluster: &banyan_harness::LocalCluster,
    id: u64,
    upto: u64,
) -> Vec<(u64, u32, i32, String, i64)> {
    let request = pb::WatchEventsRequest {
        from_index: 1,
        ..Default::default()
    };
    let mut stream = pinned(cluster, id).watch_events(request).await.unwrap();
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(DEADLINE, stream.message()).await;
        let event = next
            .expect("events keep coming")
            .unwrap()
            .expect("stream open");
        if event.index > upto {
            return out;
        }
        out.push((
            event.index,
            event.ordinal,
            event.kind,
            event.contact_id,
            event.at_ms,
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_finished_contacts_are_answered_for_after_they_left_memory_restarts_and_joins() {
    let cdr = tempfile::tempdir().unwrap();
    let cdr_dir = cdr.path().display().to_string();
    let (mut cluster, leader) = three_nodes(&[
        "--snapshot-every",
        "300",
        "--retain-finished",
        "1s",
        "--cdr-dir",
        &cdr_dir,
    ])
    .await;
    let client = cluster.client().unwrap();
    client
        .upsert_customer(
            pb::Customer {
                id: CUSTOMER.into(),
                name: "Ada".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let contact = client
            .create_contact(pb::CreateContactRequest {
                request_id: format!("hist-{n}"),
                channel: pb::Channel::Chat.into(),
                customer_id: CUSTOMER.into(),
                intent: "faq".into(),
                self_served: true,
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(contact.id);
    }

    // 1. They leave the routing state (ListContacts reads it) a second after finishing,
    // and GetContact still answers for each, on every node.
    wait_until(
        "the finished contacts to leave the routing state",
        DEADLINE,
        || async {
            let listed = client
                .list_contacts(pb::ListContactsRequest {
                    customer_id: CUSTOMER.into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            listed.contacts.is_empty().then_some(())
        },
    )
    .await
    .unwrap();
    for id in [1, 2, 3] {
        for contact in &ids {
            assert!(
                answers_for(&cluster, id, contact).await,
                "node {id}, {contact}"
            );
        }
    }
    let customer = client
        .get_customer(CUSTOMER, ReadConsistency::Linearizable)
        .await
        .unwrap();
    let mut in_history: Vec<String> = customer
        .history
        .iter()
        .map(|h| h.contact_id.clone())
        .collect();
    in_history.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(in_history, expected, "the customer's history");

    // ListContacts over a time range pages through them in the order they finished.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_contacts(pb::ListContactsRequest {
                customer_id: CUSTOMER.into(),
                finished_from_ms: 1,
                limit: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.contacts.len() <= 2);
        listed.extend(page.contacts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        listed, ids,
        "every finished contact once, in the order they finished"
    );
    let refused = client
        .list_contacts(pb::ListContactsRequest {
            finished_from_ms: 10,
            finished_to_ms: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("finished_to_ms"), "{refused:?}");

    // Every node wrote one detail record per finished contact, each matching GetContact;
    // `ctl history export` prints the same records.
    let records = |node: u64| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for file in std::fs::read_dir(cdr.path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(&format!("cdr-n{node}-")) && name.ends_with(".jsonl") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
            }
        }
        out
    };
    wait_until(
        "every node to write the detail records",
        DEADLINE,
        || async {
            [1, 2, 3]
                .iter()
                .all(|n| records(*n).len() >= ids.len())
                .then_some(())
        },
    )
    .await
    .unwrap();
    let written = records(leader);
    assert_eq!(
        written
            .iter()
            .map(|r| r["contact_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ids,
        "one row per finished contact, in the order they finished"
    );
    for record in &written {
        let id = record["contact_id"].as_str().unwrap();
        let contact = client
            .get_contact(pb::GetContactRequest {
                id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(record["customer_id"], CUSTOMER);
        assert_eq!(record["outcome"], "SELF_SERVED");
        assert_eq!(record["schema"], 1);
        assert_eq!(
            record["steps"].as_array().unwrap().len(),
            contact.timeline.len()
        );
        assert_eq!(
            record["finished_ms"].as_i64(),
            contact.timeline.last().map(|t| t.at_ms)
        );
    }
    let out = ctl(
        &cluster,
        &cluster.addr(leader).unwrap(),
        &["history", "export", "--from", "0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        exported, written,
        "ctl history export prints the files' records"
    );

    // 2. A follower restarted on its directory still answers.
    let follower = other_than(&[1, 2, 3], leader);
    cluster.kill(follower).unwrap();
    cluster.start(follower).unwrap();
    let leader_now = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let target = cluster.status(leader_now).await.unwrap().committed_index;
    cluster
        .wait_applied(follower, target, DEADLINE)
        .await
        .unwrap();
    for contact in &ids {
        assert!(
            answers_for(&cluster, follower, contact).await,
            "restarted, {contact}"
        );
    }
    // 3. A node that joins once the log before those contacts is purged (so a snapshot
    // seeds it) answers for them too.
    let load = WriteLoad::start(spread_clients(&cluster), 8, "hl");
    wait_until("the leader to purge its log", DEADLINE, || async {
        let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.ok()?;
        let status = cluster.status(leader).await.ok()?;
        (status.purged_index > target).then_some(())
    })
    .await
    .unwrap();
    let addr = cluster.start_new_node(4).unwrap();
    client.add_voter(4, &addr).await.expect("add node 4");
    drop(load.stop().await);
    let leader_now = cluster
        .wait_for_leader(&[1, 2, 3, 4], DEADLINE)
        .await
        .unwrap();
    let target = cluster.status(leader_now).await.unwrap().committed_index;
    cluster.wait_applied(4, target, DEADLINE).await.unwrap();
    assert!(
        cluster.log_tail(4, 500).contains("installed snapshot"),
        "node 4 was seeded by a snapshot:\n{}",
        cluster.log_tail(4, 50)
    );
    for contact in &ids {
        assert!(answers_for(&cluster, 4, contact).await, "joined, {contact}");
    }

    // 4. WatchEvents from index 1 delivers the same events, in order, on a node that never
    // restarted (all in its memory), on the follower restarted again now that it holds a
    // snapshot (its feed starts after it: the rest comes from its disk), and on node 4
    // (seeded by a snapshot that carried the sender's events).
    cluster.kill(follower).unwrap();
    cluster.start(follower).unwrap();
    cluster
        .wait_applied(follower, target, DEADLINE)
        .await
        .unwrap();
    // One more write marks the end: every node reaches an event past `target`.
    client
        .upsert_customer(
            pb::Customer {
                id: "hist-end".into(),
                name: "End".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let uninterrupted = other_than(&[1, 2, 3], follower);
    let expected = events_upto(&cluster, uninterrupted, target).await;
    assert!(expected.len() > 300, "{} events", expected.len());
    assert!(
        cluster.status(follower).await.unwrap().snapshot_index > 1,
        "the restarted follower loaded a snapshot"
    );
    for node in [follower, 4] {
        let got = events_upto(&cluster, node, target).await;
        assert!(
            got == expected,
            "node {node}: {} events, not the {} of node {uninterrupted}",
            got.len(),
            expected.len()
        );
    }
}
