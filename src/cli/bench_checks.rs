//! `alertd bench-checks`: load on the passive-check intake of a running service. It opens
//! `--connections` NSCA connections (as `send_nsca` does: read the IV, send packets), sends
//! `--results` check results over `--hosts` hosts and `--services` services each (a tenth of
//! them in a problem state, changing every pass), waits until the service has applied them all
//! (`alertd_check_results_total` on `/metrics`), and reports results per second and, with
//! `--server-pid`, the server's CPU time per result.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::CliError;
use crate::checks::nsca::{self, NscaPacket};

/// Options of `alertd bench-checks`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchChecksArgs {
    /// The service's HTTP address, for /metrics, e.g. http://127.0.0.1:9092.
    #[arg(long)]
    pub url: String,
    /// The service's NSCA address.
    #[arg(long, default_value = "127.0.0.1:5667")]
    pub nsca: String,
    /// `encryption_method` of the service: 0 or 1.
    #[arg(long, default_value_t = 1)]
    pub encryption: u8,
    /// Password for encryption 1.
    #[arg(long, default_value = "")]
    pub password: String,
    /// Results to send in all.
    #[arg(long, default_value_t = 100_000)]
    pub results: usize,
    /// Hosts.
    #[arg(long, default_value_t = 500)]
    pub hosts: usize,
    /// Services per host.
    #[arg(long, default_value_t = 20)]
    pub services: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The server's pid, for its CPU time and memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A bearer token with the read scope, for /metrics.
    #[arg(long, env = "ALERTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

fn applied(client: &reqwest::blocking::Client, args: &BenchChecksArgs) -> Result<f64, CliError> {
    let mut req = client.get(format!("{}/metrics", args.url.trim_end_matches('/')));
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let text = req
        .send()
        .and_then(|r| r.text())
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.url)))?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("alertd_check_results_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

/// One connection's share: `n` results starting at `first`.
fn send(args: &BenchChecksArgs, first: usize, n: usize) -> Result<(), std::io::Error> {
    let mut s = TcpStream::connect(&args.nsca)?;
    let mut init = [0u8; nsca::INIT_PACKET_SIZE];
    s.read_exact(&mut init)?;
    let mut iv = [0u8; nsca::IV_SIZE];
    iv.copy_from_slice(&init[..nsca::IV_SIZE]);
    let ts = u32::from_be_bytes([init[128], init[129], init[130], init[131]]);
    let per_host = args.services.max(1);
    let mut buf = Vec::with_capacity(64 * nsca::PACKET_SIZE);
    for i in first..first + n {
        let check = i % (args.hosts.max(1) * per_host);
        let pass = i / (args.hosts.max(1) * per_host);
        // A tenth of the checks are in a problem state, which flips every pass.
        let code = if check.is_multiple_of(10) && pass.is_multiple_of(2) {
            2
        } else {
            0
        };
        let p = NscaPacket {
            timestamp: ts,
            return_code: code,
            host: format!("host{:05}", check / per_host),
            service: format!("svc{:03}", check % per_host),
            output: format!(
                "SVC {} - value {i}|value={};80;90;0;100",
                if code == 0 { "OK" } else { "CRITICAL" },
                i % 100
            ),
        };
        buf.extend_from_slice(&nsca::encode_packet(
            &p,
            false,
            args.encryption,
            &iv,
            args.password.as_bytes(),
        ));
        if buf.len() >= 64 * nsca::PACKET_SIZE {
            s.write_all(&buf)?;
            buf.clear();
        }
    }
    s.write_all(&buf)?;
    s.flush()?;
    Ok(())
}

/// Runs the load.
pub fn run(args: &BenchChecksArgs) -> Result<ExitCode, CliError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
    let before = applied(&client, args)?;
    let cpu0 = args.server_pid.and_then(super::proc_usage);
    let start = Instant::now();
    let conns = args.connections.max(1);
    let share = args.results.div_ceil(conns);
    let mut handles = Vec::new();
    for c in 0..conns {
        let first = c * share;
        let n = share.min(args.results.saturating_sub(first));
        let a = args.clone();
        handles.push(std::thread::spawn(move || send(&a, first, n)));
    }
    for h in handles {
        h.join()
            .map_err(|_| CliError::Usage("a sender thread panicked".into()))?
            .map_err(|e| CliError::Usage(format!("{}: {e}", args.nsca)))?;
    }
    let sent = start.elapsed();
    let want = before + args.results as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while applied(&client, args)? < want {
        if Instant::now() > deadline {
            eprintln!("gave up: not every result was applied within 300 s");
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = start.elapsed();
    println!(
        "results: {}  connections: {conns}  sent in {:.2} s  applied after {:.2} s  ({:.0} results/s)",
        args.results,
        sent.as_secs_f64(),
        done.as_secs_f64(),
        args.results as f64 / done.as_secs_f64()
    );
    if let (Some(pid), Some((c0, _, _))) = (args.server_pid, cpu0)
        && let Some((c1, rss, _)) = super::proc_usage(pid)
    {
        println!(
            "server CPU: {:.2} s ({:.1} us per result)  RSS: {:.0} MiB",
            c1 - c0,
            (c1 - c0) * 1e6 / args.results as f64,
            rss as f64 / 1048576.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
