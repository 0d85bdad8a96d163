//! `alertd host list|retire`: the host registry of a running service, from the command line.
//! Retiring a host tells alertd it was removed on purpose (a scale-down): its alerts resolve
//! with a `retired` annotation and its checks stop, instead of paging as a crash would.

use std::process::ExitCode;
use std::time::Duration;

use super::CliError;

/// Options of `alertd host`.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: HostAction,
    /// The service, e.g. http://127.0.0.1:9092.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9092")]
    pub url: String,
    /// A token with the `admin` scope (retire) or `read` (list); also read from ALERTD_TOKEN.
    #[arg(long, global = true, env = "ALERTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `alertd host` actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HostAction {
    /// List known hosts with last-seen time and sources.
    List,
    /// Retire a host: resolve its alerts, stop its checks, forget it.
    Retire {
        /// The host name.
        name: String,
    },
}

/// Runs `alertd host`.
pub fn run(args: &HostArgs) -> Result<ExitCode, CliError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
    let base = args.url.trim_end_matches('/');
    let req = match &args.action {
        HostAction::List => client.get(format!("{base}/api/v1/hosts?limit=1000")),
        HostAction::Retire { name } => {
            let path: String = name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            client.delete(format!("{base}/api/v1/hosts/{path}"))
        }
    };
    let req = match &args.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req
        .send()
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.url)))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        eprintln!(
            "alertd answered {status}: {}",
            body["error"].as_str().unwrap_or("(no message)")
        );
        return Ok(ExitCode::FAILURE);
    }
    match &args.action {
        HostAction::List => {
            for h in body["items"].as_array().into_iter().flatten() {
                println!(
                    "{}\tlast seen {}\t{}",
                    h["name"].as_str().unwrap_or(""),
                    h["last_seen"].as_str().unwrap_or(""),
                    h["sources"]
                        .as_array()
                        .map(|s| s
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default()
                );
            }
        }
        HostAction::Retire { name } => println!(
            "retired {name}: {} alerts resolved, {} checks stopped, {} rule groups freed",
            body["alerts_resolved"], body["checks_forgotten"], body["groups_dropped"]
        ),
    }
    Ok(ExitCode::SUCCESS)
}
