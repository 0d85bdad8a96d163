//! `alertd bench`: a load generator that replays line protocol over HTTP the way a fleet of
//! agents writes it: batches of 1,000–5,000 lines from several connections at once. It reports
//! accepted points per second, write latency percentiles, and, given the server's pid, the
//! server's CPU time and peak memory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::CliError;

/// Options of `alertd bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The service, e.g. http://127.0.0.1:9092.
    #[arg(long)]
    pub url: String,
    /// Line protocol to send (e.g. made by gen_telegraf.py), nanosecond timestamps.
    #[arg(long)]
    pub data: PathBuf,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Database to write to.
    #[arg(long, default_value = "telegraf")]
    pub db: String,
    /// Send the data this many times.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// The server's pid, to report its CPU time and peak memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Pace the writes at this many points per second (default: as fast as accepted).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// Runs the load.
pub fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let text = std::fs::read_to_string(&args.data).map_err(|source| CliError::Io {
        path: args.data.clone(),
        source,
    })?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let batch = args.batch.max(1);
    // Each body is built once and shared by every request that sends it (no copy per send).
    let bodies: Arc<Vec<(bytes::Bytes, u64)>> = Arc::new(
        lines
            .chunks(batch)
            .map(|c| (bytes::Bytes::from(c.join("\n")), c.len() as u64))
            .collect(),
    );
    let total_requests = bodies.len() * args.repeat.max(1);
    eprintln!(
        "sending {} lines in {} requests of up to {batch} lines over {} connections{}",
        lines.len() * args.repeat.max(1),
        total_requests,
        args.connections,
        if args.repeat > 1 {
            format!(" ({} passes)", args.repeat)
        } else {
            String::new()
        }
    );
    let url = format!(
        "{}/write?db={}&precision=ns",
        args.url.trim_end_matches('/'),
        args.db
    );
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let before = args.server_pid.and_then(super::proc_usage);
    let start = Instant::now();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (bodies, next, accepted, retried, failed, url) = (
                bodies.clone(),
                next.clone(),
                accepted.clone(),
                retried.clone(),
                failed.clone(),
                url.clone(),
            );
            let rate = args.rate;
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .ok()?;
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total_requests {
                        break;
                    }
                    let (body, n) = &bodies[i % bodies.len()];
                    if let Some(rate) = rate.filter(|r| *r > 0.0) {
                        // Request i is due when i batches' worth of points has been sent at `rate`.
                        let due = start + Duration::from_secs_f64(i as f64 * batch as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    loop {
                        let t0 = Instant::now();
                        match client.post(&url).body(body.clone()).send() {
                            Ok(r) if r.status().as_u16() == 204 => {
                                latencies.push(t0.elapsed());
                                accepted.fetch_add(*n, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 503 => {
                                // Back-pressure: wait as told, then send the same batch again.
                                retried.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                Some(latencies)
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = workers
        .into_iter()
        .filter_map(|w| w.join().ok().flatten())
        .flatten()
        .collect();
    let sent = start.elapsed();
    // Accepted is not yet evaluated: wait until the engine has worked through its queue.
    let metrics_url = format!("{}/metrics", args.url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::new();
    loop {
        let depth = client
            .get(&metrics_url)
            .send()
            .and_then(|r| r.text())
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("alertd_ingest_queue_depth "))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            });
        if depth.is_none_or(|d| d == 0.0) || start.elapsed() > sent + Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let points = accepted.load(Ordering::Relaxed);
    println!(
        "accepted {points} points in {:.2}s, all evaluated after {:.2}s: {:.0} points/s evaluated; write latency p50 {:.1} ms, p99 {:.1} ms; {} retries after 429, {} failed requests",
        sent.as_secs_f64(),
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        retried.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    if let Some(lat) = client
        .get(&metrics_url)
        .send()
        .and_then(|r| r.text())
        .ok()
        .and_then(|m| latency_quantiles(&m))
    {
        println!(
            "alert latency (write received -> event stored, from alertd_alert_latency_seconds): p50 <= {:.0} ms, p99 <= {:.0} ms over {} events",
            lat.0 * 1000.0,
            lat.1 * 1000.0,
            lat.2
        );
    }
    if let (Some(pid), Some((cpu0, _, _))) = (args.server_pid, before)
        && let Some((cpu1, _, peak)) = super::proc_usage(pid)
    {
        println!(
            "server: {:.2} s CPU ({:.0}% of one core over the run), {:.0} ns CPU per point, peak RSS {:.0} MiB",
            cpu1 - cpu0,
            (cpu1 - cpu0) / elapsed.as_secs_f64() * 100.0,
            (cpu1 - cpu0) * 1e9 / points.max(1) as f64,
            peak as f64 / 1048576.0
        );
    }
    Ok(if failed.load(Ordering::Relaxed) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Upper bounds of the p50 and p99 buckets of `alertd_alert_latency_seconds`, and the count.
fn latency_quantiles(metrics: &str) -> Option<(f64, f64, u64)> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("alertd_alert_latency_seconds_bucket{le=\""))
    {
        let le = l.split('"').nth(1)?;
        let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        buckets.push((bound, count));
    }
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let q = |p: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= total * p)
            .map_or(f64::INFINITY, |(b, _)| *b)
    };
    Some((q(0.5), q(0.99), total as u64))
}
