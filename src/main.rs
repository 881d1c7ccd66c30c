//! The `rightsizer` binary: parse the command line, start logging, run.

use std::io::IsTerminal;

use clap::Parser;
use rightsizer::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RIGHTSIZER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    // `serve` answers requests while it collects: it gets worker threads. A one-off command
    // runs on this thread alone: its futures and the HTTP connections they wait on then wake
    // each other without crossing threads (futex and eventfd calls were a quarter of a
    // remote-read backfill's CPU). Summaries are still built on the blocking pool, beside
    // the reads.
    let mut runtime = match cli.command {
        Command::Serve { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .expect("the Tokio runtime starts");
    match runtime.block_on(rightsizer::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
