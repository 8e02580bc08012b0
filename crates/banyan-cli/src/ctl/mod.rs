//! `banyan ctl`: operate a running cluster from the command line, one file per resource
//! (`status`, `members`, `sites`, `customers`, `queues`, `agents`, `contacts`, `history`,
//! `events`, `audit`); this one parses the flags they all take, connects, hands each subcommand to
//! its resource, and holds what several of them use: argument parsers, enum names, the
//! table and JSON printers, and the event stream.

mod agents;
mod audit;
mod contacts;
mod customers;
mod events;
mod history;
mod members;
mod queues;
mod sites;
mod status;

use std::time::Duration;

use banyan_client::{Client, RetryPolicy, Security};
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::{self as pb, ReadConsistency};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::trust_args::TrustArgs;

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Node(s) to talk to: host:port, or a comma-separated list.
    #[arg(long, env = "BANYAN_ENDPOINT", value_delimiter = ',', required = true)]
    endpoint: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Give up after this long (retries included).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    trust: TrustArgs,
    /// Present `client.USER.crt` from --certs-dir.
    #[arg(long, env = "BANYAN_USER", default_value = "admin")]
    user: String,
    /// Present this bearer token instead of a client certificate.
    #[arg(long, env = "BANYAN_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Every member's role, term, leader, log, commit, applied and replication lag.
    Status,
    // add-learner, add-voter, remove-node: top-level subcommands of `banyan ctl`.
    #[command(flatten)]
    Members(members::MemberCommand),
    /// Sites: release a site's lease.
    #[command(subcommand)]
    Sites(sites::SiteCommand),
    /// Customers: upsert, get, find.
    #[command(subcommand)]
    Customers(customers::CustomerCommand),
    /// Queues: list, upsert, stats.
    #[command(subcommand)]
    Queues(queues::QueueCommand),
    /// Agents: list, upsert.
    #[command(subcommand)]
    Agents(agents::AgentCommand),
    /// Contacts: create, get, list, complete, abandon, transfer.
    #[command(subcommand)]
    Contacts(contacts::ContactCommand),
    /// History: export finished contacts as contact detail records (JSON lines).
    #[command(subcommand)]
    History(history::HistoryCommand),
    /// The event stream of the node at the first endpoint, in log order.
    Events(events::EventsArgs),
    /// Who did what and when: the events the node retains with the principal that caused
    /// each, for one contact, queue, agent or principal (`admin:ops`, `agent:ada`, ...).
    Audit(audit::AuditFilter),
}

/// Connects as `--user` (or with `--token`) and runs one subcommand; a refusal comes back
/// as an error naming its gRPC code, and so a non-zero exit.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let policy = RetryPolicy {
        attempt_timeout: args.timeout.min(Duration::from_secs(6)),
        total_timeout: args.timeout,
        pause: Duration::from_millis(100),
        max_attempts: 0,
        follow_leader: true,
        connect_timeout: None,
    };
    let security = args.trust.client(&args.user, args.token.as_deref())?;
    let client = Client::new(&args.endpoint, policy, &security)?;
    match args.command {
        CtlCommand::Status => status::status(&client, args.timeout, args.json).await?,
        CtlCommand::Members(command) => members::change(&client, command, args.json).await?,
        CtlCommand::Sites(command) => sites::sites(&client, command, args.json).await?,
        CtlCommand::Customers(command) => customers::customers(&client, command, args.json)
            .await
            .map_err(status_err)?,
        CtlCommand::Queues(command) => queues::queues(&client, command, args.json)
            .await
            .map_err(status_err)?,
        CtlCommand::Agents(command) => agents::agents(&client, command, args.json)
            .await
            .map_err(status_err)?,
        CtlCommand::Contacts(command) => contacts::contacts(&client, command, args.json)
            .await
            .map_err(status_err)?,
        CtlCommand::History(command) => history::history(&client, command)
            .await
            .map_err(status_err)?,
        CtlCommand::Events(events) => {
            events::events(&security, &args.endpoint[0], events, args.json).await?
        }
        CtlCommand::Audit(filter) => {
            audit::audit(&security, &args.endpoint[0], filter, args.json).await?
        }
    }
    Ok(())
}

/// A refusal as the operator reads it: the gRPC code and the server's message.
fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn consistency(local: bool) -> ReadConsistency {
    if local {
        ReadConsistency::Local
    } else {
        ReadConsistency::Linearizable
    }
}

/// A channel as the command line spells it: queues take channels, contacts arrive on one.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelArg {
    Voice,
    Chat,
    Email,
    Callback,
}

impl From<ChannelArg> for pb::Channel {
    fn from(c: ChannelArg) -> Self {
        match c {
            ChannelArg::Voice => pb::Channel::Voice,
            ChannelArg::Chat => pb::Channel::Chat,
            ChannelArg::Email => pb::Channel::Email,
            ChannelArg::Callback => pb::Channel::Callback,
        }
    }
}

fn parse_skill(s: &str) -> Result<(String, u32), String> {
    let (name, level) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=level, got {s:?}"))?;
    let level = level
        .parse()
        .map_err(|_| format!("level of {name} must be a number, got {level:?}"))?;
    Ok((name.to_owned(), level))
}

/// An enum field's proto name without its prefix (`CONTACT_STATE_QUEUED` → `QUEUED`).
fn name<E: TryFrom<i32>>(value: i32, as_str: fn(&E) -> &'static str, prefix: &str) -> String {
    E::try_from(value)
        .map(|e| as_str(&e).trim_start_matches(prefix).to_owned())
        .unwrap_or_else(|_| value.to_string())
}

fn state_name(v: i32) -> String {
    name(v, pb::ContactState::as_str_name, "CONTACT_STATE_")
}

fn channel_name(v: i32) -> String {
    name(v, pb::Channel::as_str_name, "CHANNEL_")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Opens the event stream of the node at `endpoint`.
async fn watch(
    security: &Security,
    endpoint: &str,
    request: pb::WatchEventsRequest,
) -> anyhow::Result<tonic::Streaming<pb::Event>> {
    let channel = banyan_client::channel(security, endpoint)?;
    let mut request = tonic::Request::new(request);
    banyan_client::authorize(security, &mut request);
    Ok(ContactCenterClient::new(channel)
        .watch_events(request)
        .await
        .map_err(status_err)?
        .into_inner())
}
