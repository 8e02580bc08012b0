//! `banyan ctl add-learner | add-voter | remove-node`: change the core's Raft membership
//! through its leader, and print the membership that results.

use banyan_client::Client;
use banyan_proto::v1::MembershipResponse;
use clap::Subcommand;

use super::status_err;

/// The membership changes, flattened into `banyan ctl` (`banyan ctl add-voter`, not
/// `banyan ctl members add-voter`) as they always were.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a node as a learner (it receives the log but does not vote).
    AddLearner {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        addr: String,
    },
    /// Make a node a voter (adding it first if --addr is given and it is new).
    AddVoter {
        #[arg(long)]
        node_id: u64,
        #[arg(long, default_value = "")]
        addr: String,
    },
    /// Remove a voter or learner from the cluster.
    RemoveNode {
        #[arg(long)]
        node_id: u64,
    },
}

/// Makes one membership change and prints the voters and learners after it, so the
/// operator sees the change took.
pub async fn change(client: &Client, command: MemberCommand, json: bool) -> anyhow::Result<()> {
    let reply = match command {
        MemberCommand::AddLearner { node_id, addr } => client.add_learner(node_id, &addr).await,
        MemberCommand::AddVoter { node_id, addr } => client.add_voter(node_id, &addr).await,
        MemberCommand::RemoveNode { node_id } => client.remove_node(node_id).await,
    }
    .map_err(status_err)?;
    print_membership(&reply, json)
}

fn print_membership(reply: &MembershipResponse, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "voters": reply.voters,
                "learners": reply.learners,
                "log_index": reply.log_index,
            }))?
        );
    } else {
        println!(
            "voters: {:?}  learners: {:?}  (membership at log index {})",
            reply.voters, reply.learners, reply.log_index
        );
    }
    Ok(())
}
