//! The command line: `alertd check`, `alertd test` and their shared errors.

pub mod check;
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
