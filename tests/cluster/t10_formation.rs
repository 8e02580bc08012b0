//! Three `banyan core` processes form one cluster, as `banyan ctl status` shows; `--init`
//! is a no-op on restart; SIGTERM stops a node cleanly.

use banyan_harness::{http_get, wait_until};
use banyan_proto::v1::ReadConsistency;
use banyan_tests::{cluster, ctl, customer, other_than, pinned, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_three_processes_form_one_cluster() {
    let mut cluster = cluster(&[]);
    cluster.enable_http();
    cluster.start_voters(&[1, 2, 3]).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let follower = other_than(&[1, 2, 3], leader);
    let endpoint = cluster.addr(follower).unwrap();

    let out = ctl(&cluster, &endpoint, &["status", "--json"]);
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

    let out = ctl(&cluster, &endpoint, &["status"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("leader") && table.contains("follower"),
        "{table}"
    );
    for id in [1, 2, 3] {
        assert!(table.contains(&cluster.addr(id).unwrap()), "{table}");
    }

    // Regression: a node writing its log to a file (not a terminal) wrote ANSI colour
    // codes into it.
    for id in [1, 2, 3] {
        let log = cluster.log_tail(id, 1_000);
        assert!(log.contains("INFO"), "node {id} logged: {log}");
        assert!(
            !log.contains('\u{1b}'),
            "node {id}'s log file holds terminal colour codes: {log}"
        );
    }

    // Every member is healthy and ready once it knows the leader.
    for id in [1, 2, 3] {
        let http = cluster.http_addr(id).unwrap();
        assert_eq!(http_get(&http, "/healthz").await.unwrap().0, 200);
        let ready = wait_until("readiness", DEADLINE, || async {
            let (code, body) = http_get(&http, "/readyz").await.ok()?;
            (code == 200).then_some(body)
        })
        .await
        .unwrap();
        assert!(
            ready.contains(&format!("leader is node {leader}")),
            "{ready}"
        );
    }
    // A node outside any cluster is alive but not ready.
    cluster.start_new_node(9).unwrap();
    let lone = cluster.http_addr(9).unwrap();
    let (code, body) = wait_until("the lone node's HTTP port", DEADLINE, || async {
        http_get(&lone, "/readyz").await.ok()
    })
    .await
    .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not a member"), "{body}");
    assert_eq!(http_get(&lone, "/healthz").await.unwrap().0, 200);
    cluster.forget(9).unwrap();

    // Customers through the command line: upsert on a follower, read back as JSON.
    let out = ctl(
        &cluster,
        &endpoint,
        &[
            "customers",
            "upsert",
            "--id",
            "c-cli",
            "--name",
            "Grace Hopper",
            "--tier",
            "gold",
            "--phone",
            "+1 555 0199",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(
        &cluster,
        &endpoint,
        &["--json", "customers", "find", "--phone", "+15550199"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON customers");
    assert_eq!(found[0]["id"], "c-cli", "{found:#}");
    assert_eq!(found[0]["tier"], "TIER_GOLD");
    let out = ctl(&cluster, &endpoint, &["customers", "get", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));

    // The contact center through the command line: a queue, an agent, a contact, its
    // queue's figures and the event stream.
    let run = |args: &[&str]| {
        let out = ctl(&cluster, &endpoint, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "queues",
        "upsert",
        "--id",
        "sales",
        "--name",
        "Sales",
        "--skill",
        "french=3",
        "--strategy",
        "round-robin",
    ]);
    run(&[
        "agents", "upsert", "--id", "ada", "--name", "Ada", "--site", "hq", "--skill", "french=5",
    ]);
    let created: serde_json::Value = serde_json::from_slice(&run(&[
        "--json",
        "contacts",
        "create",
        "--queue",
        "sales",
        "--channel",
        "chat",
        "--intent",
        "quote",
    ]))
    .expect("JSON contact");
    let id = created[0]["id"].as_str().expect("contact id").to_owned();
    assert_eq!(created[0]["state"], "QUEUED", "{created:#}");
    let listed: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "contacts", "list", "--queue", "sales"])).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let stats: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "queues", "stats", "sales"])).unwrap();
    assert_eq!(stats["waiting"], 1, "{stats:#}");
    let agents: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "agents", "list"])).unwrap();
    assert_eq!(agents[0]["state"], "OFFLINE", "{agents:#}");
    let abandoned: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "contacts", "abandon", &id])).unwrap();
    assert_eq!(abandoned[0]["state"], "ABANDONED");
    let events = String::from_utf8(run(&["events", "--contact", &id])).unwrap();
    assert!(
        events.contains("CONTACT_CREATED") && events.contains("CONTACT_ABANDONED"),
        "{events}"
    );
    let table = String::from_utf8(run(&["queues", "list"])).unwrap();
    assert!(
        table.contains("ROUND_ROBIN") && table.contains("french≥3"),
        "{table}"
    );
    let out = ctl(&cluster, &endpoint, &["contacts", "complete", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FailedPrecondition"));

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
