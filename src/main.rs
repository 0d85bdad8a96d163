//! The `alertd` binary: command-line parsing and dispatch.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use alertd::cli;

/// mimalloc instead of the system allocator: the alert manager and the HTTP layer allocate many
/// small strings (labels, JSON) per alert, and with glibc's malloc they cost about a third of the
/// server's CPU and a 16-byte header each, and freed memory stays in per-thread arenas (see
/// docs/benchmarks.md, "Alert manager").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the service (with no --config: listen on 127.0.0.1:9092, database ./data/alertd.db,
    /// rules from ./rules, receivers from ./receivers).
    Run {
        /// Configuration file (TOML); see docs/configuration.md.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate rule files (directories are searched for *.tick); exit 1 on any error.
    Check {
        /// Files or directories (default: ./rules).
        paths: Vec<PathBuf>,
    },
    /// Replay a recording through a rule and print its alert events.
    Test(cli::test::TestArgs),
    /// Capture the points a running service accepts, for `alertd test --data`.
    Record(cli::record::RecordArgs),
    /// Load generator: replay line protocol over HTTP like a fleet of agents.
    Bench(cli::bench::BenchArgs),
    /// Load generator for the alert manager: silences and alerts over the Alertmanager v2 API,
    /// webhooks received by the bench itself.
    BenchAlerts(cli::bench_alerts::BenchAlertsArgs),
    /// Load generator for passive checks: NSCA results from many connections.
    BenchChecks(cli::bench_checks::BenchChecksArgs),
    /// The host registry of a running service: list, or retire a host removed on purpose.
    Host(cli::host::HostArgs),
}

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas, and then
/// every first touch of a 2 MiB page zeroes and keeps all of it: in the 100k-alert bench the
/// process started at 29 MiB instead of 16 and grew ~15% more, with no CPU gained.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this
    // process; it reads or writes no memory of ours. A kernel without it returns an error, which
    // changes nothing.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}

fn main() -> anyhow::Result<ExitCode> {
    no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALERTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_level())),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => alertd::config::Config::load(path)?,
                None => alertd::config::Config::default(),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(alertd::service::run(cfg, config))?;
            ExitCode::SUCCESS
        }
        Command::Check { paths } => cli::check::run(&paths)?,
        Command::Test(args) => cli::test::run(&args)?,
        Command::Record(args) => cli::record::run(&args)?,
        Command::Bench(args) => cli::bench::run(&args)?,
        Command::BenchAlerts(args) => cli::bench_alerts::run(&args)?,
        Command::Host(args) => cli::host::run(&args)?,
        Command::BenchChecks(args) => cli::bench_checks::run(&args)?,
    };
    Ok(code)
}

/// `alertd run` logs at info; the offline tools only warn.
fn default_log_level() -> &'static str {
    if std::env::args().nth(1).as_deref() == Some("run") {
        "info"
    } else {
        "warn"
    }
}
