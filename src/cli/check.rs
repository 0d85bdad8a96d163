//! `alertd check [PATH...]`: validates rule files, service configuration files and receivers
//! files (`*.toml` with `route`, `receivers`, ... at the top), printing
//! each problem as `file:line:col: message` with the line and a caret.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use crate::rules;

/// Collects the `.tick` files named by `paths` (directories are searched recursively, sorted).
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(CliError::Io {
                path: p.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "tick") {
            out.push(p);
        }
    }
    Ok(())
}

/// Runs the check; prints problems to stderr and a summary line.
pub fn run(paths: &[PathBuf]) -> Result<ExitCode, CliError> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        paths.to_vec()
    };
    // A `.toml` file is a configuration for `alertd run --config`; anything else holds rules.
    let (configs, rule_paths): (Vec<PathBuf>, Vec<PathBuf>) = paths
        .into_iter()
        .partition(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"));
    let files = rule_files(&rule_paths)?;
    let mut errors = 0;
    for f in &configs {
        let result = if is_receivers_file(f) {
            // Checked with the rest of its directory: a route may name receivers of another file.
            let dir = f.parent().unwrap_or(Path::new("."));
            crate::receivers::config::load_dir(dir)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            crate::config::Config::load(f)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            errors += 1;
            eprintln!("{e}");
        }
    }
    for f in &files {
        if let Err(e) = rules::load_file(f) {
            errors += 1;
            eprintln!("{e}");
        }
    }
    let what = match (files.len(), configs.len()) {
        (_, 0) => format!("{} rule file{}", files.len(), plural(files.len())),
        (0, c) => format!("{c} config file{}", plural(c)),
        (r, c) => format!(
            "{r} rule file{} and {c} config file{}",
            plural(r),
            plural(c)
        ),
    };
    if errors == 0 {
        eprintln!("checked {what}: all valid");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("checked {what}: {errors} with errors");
        Ok(ExitCode::FAILURE)
    }
}

/// A receivers-directory file has `route`, `receivers`, `inhibit_rules` or `time_intervals`
/// at its top level; any other `.toml` is a service configuration.
fn is_receivers_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    ["route", "receivers", "inhibit_rules", "time_intervals"]
        .iter()
        .any(|k| table.contains_key(*k))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
