//! `alertd bench-checks`: load on the passive-check intake of a running service. In `nsca`
//! mode it opens `--connections` NSCA connections (as `send_nsca` does: read the IV, send
//! packets); in `nrdp-xml` and `nrdp-json` modes it POSTs NRDP `submitcheck` forms of
//! `--per-post` results each (as `send_nrdp.py` does, with more results per request) over
//! `--connections` keep-alive HTTP connections, retrying a request answered 503 (the check
//! queue is full) after a short pause. Either way it sends `--results` check results over
//! `--hosts` hosts and `--services` services each (a tenth of them in a problem state, changing
//! every pass), waits until the service has applied them all (`alertd_check_results_total` on
//! `/metrics`), and reports results per second and, with `--server-pid`, the server's CPU time
//! per result.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::CliError;
use crate::checks::nsca::{self, NscaPacket};

/// How results are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    /// NSCA packets on the NSCA port.
    Nsca,
    /// NRDP `submitcheck` with `XMLDATA`, to `POST /nrdp/`.
    NrdpXml,
    /// NRDP `submitcheck` with `JSONDATA`, to `POST /nrdp/`.
    NrdpJson,
}

/// Options of `alertd bench-checks`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchChecksArgs {
    /// The service's HTTP address, for /metrics and NRDP, e.g. http://127.0.0.1:9092.
    #[arg(long)]
    pub url: String,
    /// The intake to load.
    #[arg(long, value_enum, default_value_t = BenchMode::Nsca)]
    pub mode: BenchMode,
    /// Results per NRDP request.
    #[arg(long, default_value_t = 100)]
    pub per_post: usize,
    /// The NRDP `token` field (a token with the write scope when the service has tokens).
    #[arg(long, default_value = "bench")]
    pub nrdp_token: String,
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

/// Result `i` of the load: (host, service, code, output).
fn result(args: &BenchChecksArgs, i: usize) -> (String, String, i16, String) {
    let per_host = args.services.max(1);
    let check = i % (args.hosts.max(1) * per_host);
    let pass = i / (args.hosts.max(1) * per_host);
    // A tenth of the checks are in a problem state, which flips every pass.
    let code = if check.is_multiple_of(10) && pass.is_multiple_of(2) {
        2
    } else {
        0
    };
    (
        format!("host{:05}", check / per_host),
        format!("svc{:03}", check % per_host),
        code,
        format!(
            "SVC {} - value {i}|value={};80;90;0;100",
            if code == 0 { "OK" } else { "CRITICAL" },
            i % 100
        ),
    )
}

/// The `XMLDATA` or `JSONDATA` of results `range`.
fn nrdp_data(args: &BenchChecksArgs, range: std::ops::Range<usize>) -> String {
    if args.mode == BenchMode::NrdpJson {
        let items: Vec<serde_json::Value> = range
            .map(|i| {
                let (host, service, code, output) = result(args, i);
                serde_json::json!({
                    "checkresult": {"type": "service"},
                    "hostname": host, "servicename": service, "state": code, "output": output,
                })
            })
            .collect();
        return serde_json::json!({ "checkresults": items }).to_string();
    }
    let mut xml = String::from("<?xml version='1.0'?>\n<checkresults>\n");
    for i in range {
        let (host, service, code, output) = result(args, i);
        let _ = std::fmt::Write::write_fmt(
            &mut xml,
            format_args!(
                "<checkresult type='service'><hostname>{host}</hostname>\
                 <servicename>{service}</servicename><state>{code}</state>\
                 <output>{output}</output></checkresult>\n"
            ),
        );
    }
    xml.push_str("</checkresults>\n");
    xml
}

/// One connection's share over NRDP: `n` results starting at `first`, `--per-post` a request.
/// Returns how many requests were answered 503 and sent again.
fn send_nrdp(args: &BenchChecksArgs, first: usize, n: usize) -> Result<u64, CliError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
    let url = format!("{}/nrdp/", args.url.trim_end_matches('/'));
    let field = if args.mode == BenchMode::NrdpJson {
        "JSONDATA"
    } else {
        "XMLDATA"
    };
    let per = args.per_post.max(1);
    let mut refused = 0u64;
    let mut at = first;
    while at < first + n {
        let end = (at + per).min(first + n);
        let data = nrdp_data(args, at..end);
        let body = serde_urlencoded::to_string([
            ("token", args.nrdp_token.as_str()),
            ("cmd", "submitcheck"),
            (field, data.as_str()),
        ])
        .map_err(|e| CliError::Usage(format!("form: {e}")))?;
        loop {
            let r = client
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .map_err(|e| CliError::Usage(format!("{url}: {e}")))?;
            let status = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            if status == 503 {
                refused += 1;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if status != 200 || !text.contains("processed") {
                return Err(CliError::Usage(format!(
                    "{url} answered {status}: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
            break;
        }
        at = end;
    }
    Ok(refused)
}

/// One connection's share: `n` results starting at `first`.
fn send(args: &BenchChecksArgs, first: usize, n: usize) -> Result<(), std::io::Error> {
    let mut s = TcpStream::connect(&args.nsca)?;
    let mut init = [0u8; nsca::INIT_PACKET_SIZE];
    s.read_exact(&mut init)?;
    let mut iv = [0u8; nsca::IV_SIZE];
    iv.copy_from_slice(&init[..nsca::IV_SIZE]);
    let ts = u32::from_be_bytes([init[128], init[129], init[130], init[131]]);
    let mut buf = Vec::with_capacity(64 * nsca::PACKET_SIZE);
    for i in first..first + n {
        let (host, service, return_code, output) = result(args, i);
        let p = NscaPacket {
            timestamp: ts,
            return_code,
            host,
            service,
            output,
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
        handles.push(std::thread::spawn(move || match a.mode {
            BenchMode::Nsca => send(&a, first, n)
                .map(|()| 0)
                .map_err(|e| CliError::Usage(format!("{}: {e}", a.nsca))),
            BenchMode::NrdpXml | BenchMode::NrdpJson => send_nrdp(&a, first, n),
        }));
    }
    let mut refused = 0;
    for h in handles {
        refused += h
            .join()
            .map_err(|_| CliError::Usage("a sender thread panicked".into()))??;
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
    let how = match args.mode {
        BenchMode::Nsca => "nsca".to_string(),
        BenchMode::NrdpXml | BenchMode::NrdpJson => format!(
            "{} ({} a request, {refused} requests answered 503 and resent)",
            if args.mode == BenchMode::NrdpXml {
                "nrdp-xml"
            } else {
                "nrdp-json"
            },
            args.per_post.max(1)
        ),
    };
    println!(
        "{how}  results: {}  connections: {conns}  sent in {:.2} s  applied after {:.2} s  ({:.0} results/s)",
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
