//! `banyan ctl history`: finished contacts from a node's history store, as contact detail
//! records (the JSON lines `--cdr-dir` writes), for a data warehouse or a spreadsheet.

use banyan_client::Client;
use banyan_proto::v1 as pb;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Print the contact detail record of every contact that finished in [--from, --to),
    /// one JSON object per line, oldest first.
    Export {
        /// Start of the range: RFC 3339 (`2026-12-01T00:00:00Z`) or ms since the Unix epoch.
        #[arg(long, value_parser = instant_ms)]
        from: i64,
        /// End of the range (exclusive), as --from; open-ended when absent.
        #[arg(long, value_parser = instant_ms)]
        to: Option<i64>,
    },
}

/// An instant as ms since the Unix epoch, from RFC 3339 or a number of ms.
fn instant_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is neither ms since the epoch nor RFC 3339: {e}"))?;
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?;
    i64::try_from(since.as_millis()).map_err(|_| format!("{s:?} is too far ahead"))
}

pub async fn history(client: &Client, command: HistoryCommand) -> Result<(), tonic::Status> {
    let HistoryCommand::Export { from, to } = command;
    let mut page_token = String::new();
    loop {
        let page = client
            .export_history(pb::ExportHistoryRequest {
                finished_from_ms: from,
                finished_to_ms: to.unwrap_or(0),
                limit: 1000,
                page_token,
            })
            .await?;
        for record in page.records {
            println!("{record}");
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use super::instant_ms;

    #[test]
    fn instants_are_read_as_ms_or_rfc3339() {
        assert_eq!(instant_ms("1796175000000"), Ok(1_796_175_000_000));
        assert_eq!(instant_ms("1970-01-01T00:00:01Z"), Ok(1_000));
        assert!(instant_ms("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
