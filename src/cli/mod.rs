//! The command line tools: `alertd check`, `alertd test`, `alertd record`, `alertd bench`,
//! `alertd bench-alerts`, `alertd host`, and their errors.

pub mod bench;
pub mod bench_alerts;
pub mod bench_checks;
pub mod check;
pub mod host;
pub mod record;
pub mod test;

use std::path::PathBuf;

/// Errors of the command-line tools (rule problems are printed as diagnostics, not returned).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A recording could not be opened.
    #[error(transparent)]
    Recording(#[from] crate::ingest::recording::RecordingError),
    /// A bad option value.
    #[error("{0}")]
    Usage(String),
}

/// CPU seconds (user + system), current RSS and peak RSS (bytes) of a process, from Linux's
/// `/proc`; the load generators report the server's cost per point, alert or result with it.
pub(crate) fn proc_usage(pid: u32) -> Option<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((ticks / 100.0, kb("VmRSS:")? * 1024, kb("VmHWM:")? * 1024))
}
