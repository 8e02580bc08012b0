//! `banyan demo`: a 3-node core in this process on loopback, a few customers written
//! through every node, and a report of what happened.

use std::time::{Duration, Instant};

use banyan_client::{Client, RetryPolicy};
use banyan_core::RaftTimers;
use banyan_harness::InProcessCluster;
use banyan_proto::v1::{Customer, ReadConsistency, Tier};
use clap::Args;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Customers to write.
    #[arg(long, env = "BANYAN_CUSTOMERS", default_value_t = 30)]
    customers: u32,
}

const TIERS: [Tier; 3] = [Tier::Standard, Tier::Gold, Tier::Platinum];
const NAMES: [&str; 6] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Leslie"];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let ids = [1, 2, 3];
    let cluster = InProcessCluster::start(&ids, RaftTimers::default()).await?;
    println!(
        "Banyan demo: starting a 3-node core on loopback in {}",
        cluster.root().display()
    );
    for id in ids {
        println!("  node {id} at {}", cluster.addr(id).unwrap_or("?"));
    }
    let leader = cluster
        .wait_for_leader(&ids, Duration::from_secs(10))
        .await?;
    println!(
        "Leader elected: node {leader} after {:.0?}",
        started.elapsed()
    );

    // Write through every node in turn: followers forward to the leader.
    let write_started = Instant::now();
    for i in 0..args.customers {
        let via = ids[i as usize % ids.len()];
        let client = cluster.node_client(via, RetryPolicy::default())?;
        client
            .upsert_customer(
                Customer {
                    id: format!("cust-{i:04}"),
                    name: format!("{} {i}", NAMES[i as usize % NAMES.len()]),
                    phones: vec![format!("+1 555 {i:04}")],
                    emails: vec![format!("customer{i}@example.com")],
                    tier: TIERS[i as usize % TIERS.len()].into(),
                    language: "en".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .map_err(|s| anyhow::anyhow!("writing customer {i} via node {via}: {}", s.message()))?;
    }
    println!(
        "Wrote {} customers through nodes 1, 2 and 3 in turn in {:.0?} (followers forwarded to node {leader})",
        args.customers,
        write_started.elapsed()
    );

    // Every node holds every customer in its own replicated state once it has applied
    // what the leader committed.
    let committed = cluster
        .node(leader)
        .map_or(0, |node| node.committed_index());
    for id in ids {
        if let Some(node) = cluster.node(id) {
            let applied = node.applied().clone();
            tokio::time::timeout(Duration::from_secs(10), applied.wait_applied(committed))
                .await
                .map_err(|_| anyhow::anyhow!("node {id} did not catch up"))?;
        }
        let client = cluster.node_client(id, RetryPolicy::default())?;
        let local = client.all_customers(ReadConsistency::Local).await;
        let count = local.as_ref().map_or(0, Vec::len);
        println!("  node {id}: {count} customers in its local replica (applied through log index {committed})");
    }
    let client = cluster.client()?;
    let platinum = client
        .find_customers(banyan_proto::v1::FindCustomersRequest {
            tier: Tier::Platinum.into(),
            limit: 5,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("find: {}", s.message()))?;
    println!(
        "Linearizable lookup of platinum customers: {}",
        platinum
            .customers
            .iter()
            .map(|c| format!("{} ({})", c.id, c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_status(&client).await;
    cluster.shutdown().await;
    println!("Stopped all nodes cleanly after {:.1?}.", started.elapsed());
    Ok(())
}

async fn print_status(client: &Client) {
    match client.status().await {
        Ok(status) => println!(
            "Cluster: leader node {}, term {}, log {}, committed {}, applied {} ({} members)",
            status.leader_id,
            status.term,
            status.last_log_index,
            status.committed_index,
            status.applied_index,
            status.nodes.len()
        ),
        Err(e) => println!("Cluster status unavailable: {}", e.message()),
    }
}
