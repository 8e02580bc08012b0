//! Structured logs with `tracing`: readable text by default, JSON on request.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How much a command logs unless `RUST_LOG` says otherwise.
#[derive(Debug, Clone, Copy)]
pub enum Verbosity {
    /// Nodes: what they do, at info.
    Node,
    /// Commands whose output is their answer: warnings only.
    Quiet,
    /// The demo, whose nodes share its terminal: errors only, and none of the Raft
    /// library's complaints about the nodes `--chaos` stops on purpose.
    Narrated,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, verbosity: Verbosity) {
    let default = match verbosity {
        Verbosity::Node => "info,openraft=warn",
        Verbosity::Quiet => "warn,openraft=error",
        Verbosity::Narrated => "error,openraft=off",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal: a log file, a pipe or a container's log
    // collector gets plain text (and `NO_COLOR` turns them off everywhere).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
