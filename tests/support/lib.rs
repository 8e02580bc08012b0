//! Shared helpers for Banyan's cluster tests.
//!
//! Tests start real `banyan` processes through [`banyan_harness::LocalCluster`]; this
//! module finds the binary cargo built beside the test and holds small builders.

use std::path::PathBuf;
use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_harness::LocalCluster;
use banyan_proto::v1::{self as pb, Customer};

/// Long enough for an election or a catch-up on a loaded 2-core machine; a deadline, not
/// a sleep.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The `banyan` binary built with the tests (`BANYAN_BIN` overrides).
pub fn banyan_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BANYAN_BIN") {
        return PathBuf::from(path);
    }
    // Test binaries live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary under target/<profile>/deps");
    let bin = profile_dir.join(format!("banyan{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the cluster tests through cargo (they are banyan-cli's \
         integration tests, so cargo builds the binary), or set BANYAN_BIN",
        bin.display()
    );
    bin
}

/// An empty process cluster with `extra` flags on every node.
pub fn cluster(extra: &[&str]) -> LocalCluster {
    LocalCluster::new(banyan_bin(), extra).expect("cluster root")
}

/// A started 3-voter cluster (nodes 1, 2, 3) and its agreed leader.
pub async fn three_nodes(extra: &[&str]) -> (LocalCluster, u64) {
    let mut c = cluster(extra);
    c.start_voters(&[1, 2, 3]).expect("start voters");
    let leader = c
        .wait_for_leader(&[1, 2, 3], DEADLINE)
        .await
        .expect("leader elected");
    (c, leader)
}

/// A client of the nodes at `addrs` with the cluster's admin credentials.
pub fn client_of<S: AsRef<str>>(
    cluster: &LocalCluster,
    addrs: impl IntoIterator<Item = S>,
    policy: RetryPolicy,
) -> Client {
    Client::new(addrs, policy, &cluster.security()).expect("client")
}

/// A client that talks to node `id` only, never following the leader: its writes go
/// through that node (forwarded when it is a follower).
pub fn pinned(cluster: &LocalCluster, id: u64) -> Client {
    let policy = RetryPolicy {
        follow_leader: false,
        ..RetryPolicy::default()
    };
    cluster.node_client(id, policy).expect("client")
}

/// One client per running node, each starting at a different node and following the
/// leader from there.
pub fn spread_clients(cluster: &LocalCluster) -> Vec<Client> {
    let addrs: Vec<String> = cluster
        .running_ids()
        .iter()
        .map(|id| cluster.addr(*id).expect("addr"))
        .collect();
    (0..addrs.len())
        .map(|start| {
            let rotated: Vec<&String> =
                addrs.iter().cycle().skip(start).take(addrs.len()).collect();
            Client::new(rotated, RetryPolicy::default(), &cluster.security()).expect("client")
        })
        .collect()
}

/// A customer with only an id and a name: all most tests need to write and read back.
pub fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// Some node of `among` other than `not`.
pub fn other_than(among: &[u64], not: u64) -> u64 {
    *among.iter().find(|id| **id != not).expect("another node")
}

/// Asserts that `result` is a refusal with `code` whose message names `field`.
pub fn expect_refused(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    let status = result.expect_err("bad input must be refused");
    assert_eq!(status.code(), code, "{field}: {}", status.message());
    assert!(
        status.message().contains(field),
        "message {:?} should name {field}",
        status.message()
    );
}

/// A site as the core's status shows it, if the core answers and knows the site.
pub async fn site_status(client: &Client, site: &str) -> Option<pb::SiteStatus> {
    let status = client.status().await.ok()?;
    status.sites.into_iter().find(|s| s.site_id == site)
}

/// A contact as the leader has it now.
pub async fn contact_now(client: &Client, id: &str) -> pb::Contact {
    client
        .get_contact(pb::GetContactRequest {
            id: id.into(),
            consistency: pb::ReadConsistency::Linearizable.into(),
        })
        .await
        .expect("contact readable")
}

/// Creates or updates `queue` through `client`.
pub async fn put_queue(client: &Client, queue: pb::Queue) {
    client
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue),
            ..Default::default()
        })
        .await
        .expect("queue upserted");
}

/// Creates agents `(id, site)`, named by their id, with the default skills and capacity.
pub async fn put_agents(client: &Client, agents: &[(&str, &str)]) {
    for (id, site) in agents {
        let agent = pb::Agent {
            id: (*id).into(),
            name: (*id).into(),
            site: (*site).into(),
            ..Default::default()
        };
        client
            .upsert_agent(pb::UpsertAgentRequest {
                agent: Some(agent),
                ..Default::default()
            })
            .await
            .expect("agent upserted");
    }
}

/// How many agents a node serves from its own state: a branch routing alone serves its
/// site's agents only.
pub async fn agents_served(client: &Client) -> Option<usize> {
    let list = pb::ListAgentsRequest {
        consistency: pb::ReadConsistency::Local.into(),
        ..Default::default()
    };
    client.list_agents(list).await.ok().map(|r| r.agents.len())
}

/// `banyan ctl` as the cluster's admin (its client certificate from the cluster's CA).
pub fn ctl(cluster: &LocalCluster, endpoint: &str, args: &[&str]) -> std::process::Output {
    let certs = cluster.pki().expect("a secure cluster").path();
    std::process::Command::new(banyan_bin())
        .args(["ctl", "--endpoint", endpoint])
        .arg("--certs-dir")
        .arg(certs)
        .args(args)
        .output()
        .expect("run banyan ctl")
}
