//! The `alertd` binary: command-line parsing and dispatch.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use alertd::cli;

#[derive(Parser)]
#[command(
    name = "alertd",
    version,
    about = "Alerting engine: TICKscript-like rules over pushed metrics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate rule files (directories are searched for *.tick); exit 1 on any error.
    Check {
        /// Files or directories (default: ./rules).
        paths: Vec<PathBuf>,
    },
    /// Replay a recording through a rule and print its alert events.
    Test(cli::test::TestArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALERTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { paths } => cli::check::run(&paths)?,
        Command::Test(args) => cli::test::run(&args)?,
    };
    Ok(code)
}
