//! `banyan ctl customers`: the customer records routing reads (tier, language,
//! attributes), created, read and searched from the command line.

use std::collections::BTreeMap;

use banyan_client::Client;
use banyan_proto::v1::{Customer, FindCustomersRequest, Tier};
use clap::{Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use super::{consistency, parse_attr};

/// `banyan ctl customers` subcommands.
#[derive(Subcommand, Debug)]
pub enum CustomerCommand {
    /// Create or update a customer.
    Upsert {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long = "phone")]
        phones: Vec<String>,
        #[arg(long = "email")]
        emails: Vec<String>,
        #[arg(long, value_enum, default_value = "standard")]
        tier: TierArg,
        #[arg(long, default_value = "")]
        language: String,
        /// key=value, repeatable.
        #[arg(long = "attr", value_parser = parse_attr)]
        attributes: Vec<(String, String)>,
        /// Idempotency key; generated when absent.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show one customer.
    Get {
        id: String,
        /// Read the answering node's state instead of confirming with the leader.
        #[arg(long)]
        local: bool,
    },
    /// Find customers by phone, email, name prefix or tier.
    Find {
        #[arg(long, default_value = "")]
        phone: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        name_prefix: String,
        #[arg(long, value_enum)]
        tier: Option<TierArg>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value = "")]
        page_token: String,
        #[arg(long)]
        local: bool,
    },
}

/// A customer's service tier, as the command line spells it; routing ranks by it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TierArg {
    Standard,
    Gold,
    Platinum,
}

impl From<TierArg> for Tier {
    fn from(t: TierArg) -> Self {
        match t {
            TierArg::Standard => Tier::Standard,
            TierArg::Gold => Tier::Gold,
            TierArg::Platinum => Tier::Platinum,
        }
    }
}

/// Runs one customer subcommand and prints the customers it returns.
pub async fn customers(
    client: &Client,
    command: CustomerCommand,
    json: bool,
) -> Result<(), tonic::Status> {
    let customers = match command {
        CustomerCommand::Upsert {
            id,
            name,
            phones,
            emails,
            tier,
            language,
            attributes,
            request_id,
        } => {
            let customer = Customer {
                id,
                name,
                phones,
                emails,
                tier: Tier::from(tier).into(),
                language,
                attributes: attributes.into_iter().collect(),
                ..Default::default()
            };
            vec![client.upsert_customer(customer, request_id).await?]
        }
        CustomerCommand::Get { id, local } => {
            vec![client.get_customer(&id, consistency(local)).await?]
        }
        CustomerCommand::Find {
            phone,
            email,
            name_prefix,
            tier,
            limit,
            page_token,
            local,
        } => {
            let reply = client
                .find_customers(FindCustomersRequest {
                    phone,
                    email,
                    name_prefix,
                    tier: tier.map_or(0, |t| Tier::from(t).into()),
                    limit,
                    page_token,
                    consistency: consistency(local).into(),
                })
                .await?;
            if !reply.next_page_token.is_empty() && !json {
                eprintln!("more results: --page-token {}", reply.next_page_token);
            }
            reply.customers
        }
    };
    print_customers(&customers, json);
    Ok(())
}

fn customer_json(c: &Customer) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "phones": c.phones,
        "emails": c.emails,
        "tier": Tier::try_from(c.tier).map_or("unknown", |t| t.as_str_name()),
        "language": c.language,
        "attributes": c.attributes.iter().collect::<BTreeMap<_, _>>(),
        "version": c.version,
        "created_at_ms": c.created_at_ms,
        "updated_at_ms": c.updated_at_ms,
    })
}

fn print_customers(customers: &[Customer], json: bool) {
    if json {
        let all: Vec<_> = customers.iter().map(customer_json).collect();
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["id", "name", "tier", "phones", "emails", "version"]);
    for c in customers {
        table.add_row([
            c.id.clone(),
            c.name.clone(),
            Tier::try_from(c.tier)
                .map_or("?", |t| t.as_str_name())
                .trim_start_matches("TIER_")
                .to_owned(),
            c.phones.join(", "),
            c.emails.join(", "),
            c.version.to_string(),
        ]);
    }
    println!("{table}");
}
