//! Bad input on every RPC so far gets a clear status naming the field, on the leader and
//! on a follower alike, and changes nothing.

use std::collections::HashMap;

use banyan_client::Client;
use banyan_proto::v1::{Customer, FindCustomersRequest, ReadConsistency};
use banyan_tests::{customer, expect_refused, other_than, pinned, three_nodes};
use tonic::Code;

async fn bad_customer_writes(client: &Client) {
    let base = || customer("c-bad", "Valid Name");
    let cases: Vec<(Customer, &str)> = vec![
        (
            Customer {
                id: String::new(),
                ..base()
            },
            "customer.id",
        ),
        (
            Customer {
                id: "x".repeat(200),
                ..base()
            },
            "customer.id",
        ),
        (
            Customer {
                id: "has space".into(),
                ..base()
            },
            "customer.id",
        ),
        (
            Customer {
                name: String::new(),
                ..base()
            },
            "customer.name",
        ),
        (
            Customer {
                name: "n".repeat(300),
                ..base()
            },
            "customer.name",
        ),
        (Customer { tier: 99, ..base() }, "customer.tier"),
        (
            Customer {
                emails: vec!["not-an-email".into()],
                ..base()
            },
            "customer.emails[0]",
        ),
        (
            Customer {
                phones: vec!["call me".into()],
                ..base()
            },
            "customer.phones[0]",
        ),
        (
            Customer {
                language: "l".repeat(100),
                ..base()
            },
            "customer.language",
        ),
        (
            Customer {
                attributes: (0..65)
                    .map(|i| (format!("k{i}"), "v".into()))
                    .collect::<HashMap<_, _>>(),
                ..base()
            },
            "customer.attributes",
        ),
        (
            Customer {
                attributes: HashMap::from([("k".into(), "v".repeat(2000))]),
                ..base()
            },
            "customer.attributes[k]",
        ),
    ];
    for (bad, field) in cases {
        expect_refused(
            client.upsert_customer(bad, None).await,
            Code::InvalidArgument,
            field,
        );
    }
    expect_refused(
        client
            .upsert_customer(base(), Some("bad key!".into()))
            .await,
        Code::InvalidArgument,
        "request_id",
    );
}

async fn bad_reads(client: &Client) {
    expect_refused(
        client.get_customer("", ReadConsistency::Linearizable).await,
        Code::InvalidArgument,
        "id",
    );
    expect_refused(
        client
            .get_customer("nobody", ReadConsistency::Linearizable)
            .await,
        Code::NotFound,
        "id",
    );
    expect_refused(
        client.get_customer("nobody", ReadConsistency::Local).await,
        Code::NotFound,
        "id",
    );
    let find = |f: FindCustomersRequest| client.find_customers(f);
    expect_refused(
        find(FindCustomersRequest {
            limit: 5000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "limit",
    );
    expect_refused(
        find(FindCustomersRequest {
            page_token: "no spaces".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
    expect_refused(
        find(FindCustomersRequest {
            consistency: 9,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "consistency",
    );
    expect_refused(
        find(FindCustomersRequest {
            tier: 7,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "tier",
    );
    expect_refused(
        find(FindCustomersRequest {
            phone: "1".repeat(100),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "phone",
    );
}

async fn bad_membership(client: &Client, voter: u64) {
    expect_refused(
        client.add_voter(0, "127.0.0.1:1").await,
        Code::InvalidArgument,
        "node_id",
    );
    expect_refused(client.add_voter(42, "").await, Code::NotFound, "node_id");
    expect_refused(
        client.add_voter(42, "no-port").await,
        Code::InvalidArgument,
        "addr",
    );
    expect_refused(
        client.add_learner(42, "").await,
        Code::InvalidArgument,
        "addr",
    );
    expect_refused(
        client.add_learner(0, "127.0.0.1:1").await,
        Code::InvalidArgument,
        "node_id",
    );
    expect_refused(
        client.add_learner(voter, "127.0.0.1:1").await,
        Code::FailedPrecondition,
        "node_id",
    );
    expect_refused(client.remove_node(42).await, Code::NotFound, "node_id");
    expect_refused(
        client.remove_node(0).await,
        Code::InvalidArgument,
        "node_id",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_bad_input_is_refused_with_the_field_named_and_changes_nothing() {
    let (cluster, leader) = three_nodes(&[]).await;
    let follower = other_than(&[1, 2, 3], leader);
    let original = pinned(&cluster, leader)
        .upsert_customer(customer("c-ok", "Ada"), Some("first-write".into()))
        .await
        .unwrap();
    let before = cluster.status(leader).await.unwrap();

    for id in [leader, follower] {
        let client = pinned(&cluster, id);
        bad_customer_writes(&client).await;
        bad_reads(&client).await;
        bad_membership(&client, leader).await;
        // An idempotency key reused with a different payload is refused.
        expect_refused(
            client
                .upsert_customer(customer("c-ok", "Eve"), Some("first-write".into()))
                .await,
            Code::FailedPrecondition,
            "request_id",
        );
        // The same key and payload is a retry: answered with the first result.
        let retry = client
            .upsert_customer(customer("c-ok", "Ada"), Some("first-write".into()))
            .await
            .unwrap();
        assert_eq!(retry.version, original.version);
    }

    let client = pinned(&cluster, leader);
    let all = client
        .all_customers(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the valid customer exists: {all:?}");
    assert_eq!(all[0].name, "Ada");
    assert_eq!(all[0].version, 1);
    let members = |s: &banyan_proto::v1::ClusterStatus| {
        s.nodes
            .iter()
            .map(|n| (n.id, n.addr.clone(), n.voter))
            .collect::<Vec<_>>()
    };
    let after = cluster.status(leader).await.unwrap();
    assert_eq!(members(&after), members(&before), "membership unchanged");
}
