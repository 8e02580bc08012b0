//! Imports a faulty or hostile branch could send, against a running secure cluster: one
//! with a priority at the end of `i64` (it used to panic `apply` on every replica), one
//! that would silence the site for good, and one beyond the
//! message limit. Each is refused with its field named, no node restarts, the status says
//! why the site's import was refused, and the site's real import then lands exactly once,
//! however often it is sent.

use std::collections::BTreeMap;
use std::time::Duration;

use banyan_env::wall_clock_ms;

use banyan_domain::contact::{Contact, Transition};
use banyan_domain::{Action, BranchImport, Channel, Command, ContactState};
use banyan_proto::v1 as pb;
use banyan_proto::v1::command_forwarding_client::CommandForwardingClient;
use banyan_tests::{contact_now, put_queue, site_status, three_nodes};
use tonic::Code;

/// A call the emea branch took in alone, still waiting in queue `q`.
fn taken_alone(id: &str, at_ms: i64) -> Contact {
    Contact {
        id: id.into(),
        request_id: Some(format!("call-{id}")),
        channel: Channel::Voice,
        customer_id: String::new(),
        queue_id: "q".into(),
        intent: "billing".into(),
        base_priority: 5,
        priority: 5,
        attributes: BTreeMap::new(),
        origin_site: "emea".into(),
        owner: "emea".into(),
        state: ContactState::Queued,
        enqueued_ms: at_ms,
        queue_entered_ms: at_ms,
        step: 0,
        offer: None,
        decision: None,
        agent_id: String::new(),
        passed_by: String::new(),
        connected_ms: None,
        wrap_until_ms: None,
        ended_ms: None,
        disposition: String::new(),
        notes: String::new(),
        transferred_from: String::new(),
        transferred_to: String::new(),
        timeline: vec![Transition {
            at_ms,
            state: ContactState::Queued,
            detail: "q".into(),
            by: None,
        }],
    }
}

fn import(upto_seq: u64, contacts: Vec<Contact>) -> BranchImport {
    BranchImport {
        site: "emea".into(),
        upto_seq,
        created: contacts.iter().map(|c| c.id.clone()).collect(),
        contacts,
        agents: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_hostile_replayed_and_giant_imports_break_nothing() {
    let (cluster, leader) = three_nodes(&[]).await;
    let client = cluster.client().unwrap();
    put_queue(
        &client,
        pb::Queue {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        },
    )
    .await;
    let pki = cluster.pki().expect("a secure cluster");
    pki.branch(101, "emea").unwrap();
    let emea = pki.node_security(101).unwrap();
    let leader_addr = cluster.addr(leader).unwrap();
    let send = |action: Action, request_id: &str| {
        let security = emea.clone();
        let addr = leader_addr.clone();
        let command = Command::with_request_id(action, Some(request_id.to_owned()));
        async move {
            let mut request = tonic::Request::new(pb::RaftPayload {
                data: banyan_raft::codec::encode(&command),
            });
            request.set_timeout(Duration::from_secs(10));
            CommandForwardingClient::new(banyan_client::channel(&security, &addr).unwrap())
                .propose(request)
                .await
                .map(drop)
        }
    };
    let refused = |result: Result<(), tonic::Status>, code: Code, field: &str| {
        let status = result.expect_err("a hostile import must be refused");
        assert_eq!(status.code(), code, "{field}: {status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    };
    // The site exists: its branch renewed its lease once.
    banyan_client::Client::new([&leader_addr], banyan_client::RetryPolicy::default(), &emea)
        .unwrap()
        .renew_lease(pb::RenewLeaseRequest {
            site_id: "emea".into(),
            node_id: 101,
            sent_at_ms: wall_clock_ms(),
            ttl_ms: 60_000,
            ..Default::default()
        })
        .await
        .expect("the emea branch renews its lease");
    let at = wall_clock_ms() - 5_000;
    let real = taken_alone("emea-7", at);

    // A branch of another cluster (its replica names another cluster id): its import and
    // its renewals are refused, naming the header. The cluster is named once its first
    // leader registered it.
    banyan_harness::wait_until("the cluster named", banyan_tests::DEADLINE, || async {
        let status = client.status().await.ok()?;
        (!status.cluster_id.is_empty()).then_some(())
    })
    .await
    .unwrap();
    let foreign = "0123456789abcdef0123456789abcdef";
    let mut request = tonic::Request::new(pb::RaftPayload {
        data: banyan_raft::codec::encode(&Command::with_request_id(
            Action::ImportBranch(import(3, vec![real.clone()])),
            Some("foreign-1".into()),
        )),
    });
    request
        .metadata_mut()
        .insert(banyan_proto::CLUSTER_ID_HEADER, foreign.parse().unwrap());
    let status = CommandForwardingClient::new(banyan_client::channel(&emea, &leader_addr).unwrap())
        .propose(request)
        .await
        .expect_err("a branch of another cluster is refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(banyan_proto::CLUSTER_ID_HEADER),
        "{status:?}"
    );
    let mut renewal = tonic::Request::new(pb::RenewLeaseRequest {
        site_id: "emea".into(),
        node_id: 101,
        sent_at_ms: wall_clock_ms(),
        ttl_ms: 60_000,
        ..Default::default()
    });
    renewal
        .metadata_mut()
        .insert(banyan_proto::CLUSTER_ID_HEADER, foreign.parse().unwrap());
    let status = pb::cluster_client::ClusterClient::new(
        banyan_client::channel(&emea, &leader_addr).unwrap(),
    )
    .renew_lease(renewal)
    .await
    .expect_err("its renewal too");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // Hostile: a priority that overflowed the ranking inside apply.
    let mut hostile = real.clone();
    hostile.priority = i64::MAX;
    hostile.base_priority = i64::MAX;
    refused(
        send(Action::ImportBranch(import(3, vec![hostile])), "hostile-1").await,
        Code::InvalidArgument,
        "base_priority",
    );
    // Silencing: recorded as reconciled, it would skip every later import of the site.
    refused(
        send(
            Action::ImportBranch(import(u64::MAX, vec![real.clone()])),
            "hostile-2",
        )
        .await,
        Code::InvalidArgument,
        "upto_seq",
    );
    // Giant: past the message limit.
    let mut huge = real.clone();
    huge.notes = "n".repeat(64 << 20);
    let too_big = send(Action::ImportBranch(import(3, vec![huge])), "hostile-4").await;
    let status = too_big.expect_err("a 64 MiB import");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );

    // The status says why the site's last import was refused.
    let site = site_status(&client, "emea").await.expect("site emea");
    assert!(
        site.import_refused.contains("refused") && site.import_refused.contains("upto_seq"),
        "{site:?}"
    );

    // No node went down, and none restarted.
    for id in [1, 2, 3] {
        assert!(cluster.is_running(id), "node {id} stopped");
    }
    let leader_now = cluster
        .wait_for_leader(&[1, 2, 3], banyan_tests::DEADLINE)
        .await
        .unwrap();
    assert_eq!(leader_now, leader, "the leader stayed");

    // The real import lands; sent again (a lost answer) and again under another request
    // id (a restarted branch), it changes nothing.
    send(
        Action::ImportBranch(import(3, vec![real.clone()])),
        "reconcile/emea/101/3",
    )
    .await
    .expect("the real import");
    send(
        Action::ImportBranch(import(3, vec![real.clone()])),
        "reconcile/emea/101/3",
    )
    .await
    .expect("the same import again");
    send(
        Action::ImportBranch(import(3, vec![real])),
        "reconcile/emea/102/3",
    )
    .await
    .expect("the same journal again");
    let contact = contact_now(&client, "emea-7").await;
    assert_eq!(contact.enqueued_ms, at, "the call keeps its place");
    let listed = client
        .list_contacts(pb::ListContactsRequest {
            queue_id: "q".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let copies = listed.contacts.iter().filter(|c| c.id == "emea-7").count();
    assert_eq!(copies, 1, "{listed:?}");
    let site = site_status(&client, "emea").await.expect("site emea");
    assert!(site.import_refused.is_empty(), "{site:?}");

    // Regression: an import of some 5 MB (4,000 calls with notes) first hit the
    // forwarding service's 4 MiB message limit and was resent for ever; past that, one
    // entry too large to reach the followers within a heartbeat stalled replication, and
    // every write after it; then it was refused, so a site whose outage left that much
    // could never hand it over. It is proposed in parts, one entry each, and applied once
    // its last part is in; the core keeps its leader; resent, it changes nothing.
    let calls = |n: usize, from: usize| -> Vec<Contact> {
        (from..from + n)
            .map(|i| {
                let mut c = taken_alone(&format!("emea-big-{i}"), at);
                c.notes = "n".repeat(1_200);
                c
            })
            .collect()
    };
    let big = || Action::ImportBranch(import(4, calls(4_000, 0)));
    // As the branch does: a call whose commit was not confirmed in time is sent again
    // under the same request id, and continues after the parts already in.
    let started = std::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match send(big(), "reconcile/emea/101/4").await {
            Ok(()) => break,
            Err(status) if status.code() == Code::DeadlineExceeded && attempts < 20 => {}
            Err(status) => panic!("an import of some 5 MB lands in parts: {status:?}"),
        }
    }
    eprintln!(
        "the 5 MB import landed after {attempts} call(s), {:?}",
        started.elapsed()
    );
    send(big(), "reconcile/emea/101/4")
        .await
        .expect("the same import again");
    let still = cluster
        .wait_for_leader(&[1, 2, 3], banyan_tests::DEADLINE)
        .await
        .unwrap();
    assert_eq!(still, leader, "the leader stayed");
    let committed = cluster.status(leader).await.unwrap().committed_index;
    for id in [1, 2, 3] {
        cluster
            .wait_applied(id, committed, banyan_tests::DEADLINE)
            .await
            .unwrap();
        let own = cluster
            .node_client(id, banyan_client::RetryPolicy::default())
            .unwrap();
        for n in [0, 1_999, 3_999] {
            let contact = own
                .get_contact(pb::GetContactRequest {
                    id: format!("emea-big-{n}"),
                    consistency: pb::ReadConsistency::Local.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("node {id} has emea-big-{n}: {e}"));
            assert_eq!(contact.notes.len(), 1_200);
        }
    }
    let site = site_status(&client, "emea").await.expect("site emea");
    assert!(site.import_refused.is_empty(), "{site:?}");
    for id in [1, 2, 3] {
        assert!(cluster.is_running(id), "node {id} stopped");
    }
}
