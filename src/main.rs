//! The `rightsizer` binary: parse the command line, start logging, run.

use std::io::IsTerminal;

use clap::Parser;
use rightsizer::config::{Cli, LogFormat};
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    // On a worker rather than the main thread: the command's futures and the HTTP
    // connections they wait on then wake each other within one worker's queue instead of
    // across threads (futex and eventfd calls were a quarter of a remote-read backfill's CPU).
    let run = tokio::spawn(rightsizer::cli::run(cli));
    match run
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
