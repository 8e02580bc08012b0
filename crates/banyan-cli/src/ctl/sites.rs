//! `banyan ctl sites`: what an operator does by hand to a site's lease, the core's grant
//! that lets one branch node route the site.

use banyan_client::Client;
use clap::Subcommand;

use super::status_err;

/// `banyan ctl sites`: a lease is released by hand only when its branch node is gone.
#[derive(Subcommand, Debug)]
pub enum SiteCommand {
    /// Release a site's lease: it lapses now (the core stops routing to the site's agents)
    /// and any branch node of the site may take it. For a branch replaced under a new
    /// node id; release only a lease whose branch node is gone.
    Release {
        /// The site.
        site: String,
    },
}

/// Runs one site subcommand.
pub async fn sites(client: &Client, command: SiteCommand, json: bool) -> anyhow::Result<()> {
    match command {
        SiteCommand::Release { site } => {
            let reply = client.release_lease(&site).await.map_err(status_err)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "site": reply.site_id, "released": true })
                );
            } else {
                println!(
                    "site {}: lease released; the next renewal of any of its branch nodes takes it",
                    reply.site_id
                );
            }
        }
    }
    Ok(())
}
