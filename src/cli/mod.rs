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
