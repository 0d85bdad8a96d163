//! `alertd bench-alerts`: end-to-end load on the alert manager of a running service. It creates
//! silences through `/api/v2/silences`, posts alerts to `/api/v2/alerts` in batches from a few
//! connections, receives the webhooks itself on `--hook`, and reports POST throughput,
//! notifications delivered per second, the time from an alert's POST to its first delivery,
//! and, with `--server-pid`, the server's CPU time and memory per alert.
//!
//! The service must route to the bench's webhook: `alertd bench-alerts --print-receivers`
//! prints the `receivers/alertd.toml` to start it with (see docs/benchmarks.md).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use super::CliError;
use crate::manager::labels::{LabelSet, fingerprint_hex};

/// Options of `alertd bench-alerts`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchAlertsArgs {
    /// The service, e.g. http://127.0.0.1:9092 (not needed with --print-receivers).
    #[arg(long)]
    pub url: Option<String>,
    /// Where the bench listens for the webhooks (the receivers file must point here).
    #[arg(long, default_value = "127.0.0.1:9099")]
    pub hook: SocketAddr,
    /// Print the receivers file (`receivers/alertd.toml`) for the service and exit.
    #[arg(long)]
    pub print_receivers: bool,
    /// Print the same routing as an Alertmanager configuration file (YAML) and exit, to
    /// measure Alertmanager with the same load side by side (see docs/benchmarks.md).
    #[arg(long)]
    pub print_alertmanager_config: bool,
    /// With --print-receivers or --print-alertmanager-config: add an inhibition rule (whose
    /// sources never fire), so the dispatcher maintains its inhibition index as in a typical
    /// configuration.
    #[arg(long)]
    pub inhibit_rule: bool,
    /// `group_wait` of the printed route, ms (reported latencies are shown minus it).
    #[arg(long, default_value_t = 1000)]
    pub group_wait_ms: u64,
    /// Number of alerts.
    #[arg(long, default_value_t = 10_000)]
    pub alerts: usize,
    /// Number of groups (`group="g0"`...; the route groups by `group`).
    #[arg(long, default_value_t = 1_000)]
    pub groups: usize,
    /// Number of silences created first; they mute 10% of the alerts.
    #[arg(long, default_value_t = 1_000)]
    pub silences: usize,
    /// Alerts per POST.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Concurrent connections posting.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Post the same alerts this many times (later passes re-post, as Prometheus does every
    /// evaluation; they must notify nothing new).
    #[arg(long, default_value_t = 1)]
    pub passes: usize,
    /// The server's pid, for its CPU time and memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// The printed receivers file.
pub fn receivers_file(args: &BenchAlertsArgs) -> String {
    let mut s = format!(
        r#"# receivers/alertd.toml for `alertd bench-alerts`
[route]
receiver = "bench"
group_by = ["group"]
group_wait = "{}ms"
group_interval = "1m"
repeat_interval = "4h"

[[receivers]]
name = "bench"
[receivers.webhook]
url = "http://{}/hook"
"#,
        args.group_wait_ms, args.hook
    );
    if args.inhibit_rule {
        s.push_str(
            r#"
[[inhibit_rules]]
source_matchers = ['alertname="BenchGroupDown"']
target_matchers = ['severity="warning"']
equal = ["group"]
"#,
        );
    }
    s
}

/// The printed Alertmanager configuration: the routing of [`receivers_file`] in
/// Alertmanager's YAML.
pub fn alertmanager_config(args: &BenchAlertsArgs) -> String {
    let mut s = format!(
        r#"# Alertmanager configuration for `alertd bench-alerts` (the same routing as
# `alertd bench-alerts --print-receivers`)
route:
  receiver: bench
  group_by: [group]
  group_wait: {}ms
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: bench
    webhook_configs:
      - url: http://{}/hook
"#,
        args.group_wait_ms, args.hook
    );
    if args.inhibit_rule {
        s.push_str(
            r#"inhibit_rules:
  - source_matchers: ['alertname="BenchGroupDown"']
    target_matchers: ['severity="warning"']
    equal: [group]
"#,
        );
    }
    s
}

struct Hook {
    start: Instant,
    /// Fingerprint (hex) → first arrival.
    first: Mutex<HashMap<String, Instant>>,
    silenced: HashSet<String>,
    notifications: AtomicU64,
    alerts_received: AtomicU64,
    silenced_delivered: AtomicU64,
    /// Arrival of each notification, ns since `start`.
    arrivals: Mutex<Vec<u64>>,
}

async fn on_hook(State(h): State<Arc<Hook>>, body: Bytes) -> &'static str {
    let now = Instant::now();
    h.notifications.fetch_add(1, Ordering::Relaxed);
    h.arrivals
        .lock()
        .unwrap()
        .push(now.duration_since(h.start).as_nanos() as u64);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return "bad";
    };
    let alerts = v["alerts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    h.alerts_received
        .fetch_add(alerts.len() as u64, Ordering::Relaxed);
    let mut first = h.first.lock().unwrap();
    for a in alerts {
        let Some(fp) = a["fingerprint"].as_str() else {
            continue;
        };
        if h.silenced.contains(fp) {
            h.silenced_delivered.fetch_add(1, Ordering::Relaxed);
        }
        first.entry(fp.to_string()).or_insert(now);
    }
    "ok"
}

fn labels(i: usize, args: &BenchAlertsArgs) -> LabelSet {
    let mut l = LabelSet::new();
    l.insert("alertname".into(), "BenchAlert".into());
    l.insert("group".into(), format!("g{}", i % args.groups.max(1)));
    l.insert("instance".into(), format!("i{i}"));
    l.insert("severity".into(), "warning".into());
    if args.silences > 0 {
        l.insert("bucket".into(), format!("b{}", i % (10 * args.silences)));
    }
    l
}

fn is_silenced(i: usize, args: &BenchAlertsArgs) -> bool {
    args.silences > 0 && i % (10 * args.silences) < args.silences
}

fn pct(v: &[f64], p: f64) -> f64 {
    v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Runs the bench.
pub fn run(args: &BenchAlertsArgs) -> Result<ExitCode, CliError> {
    if args.print_receivers {
        print!("{}", receivers_file(args));
        return Ok(ExitCode::SUCCESS);
    }
    if args.print_alertmanager_config {
        print!("{}", alertmanager_config(args));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = args.url.clone() else {
        return Err(CliError::Usage("--url is required".into()));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("runtime: {e}")))?;
    rt.block_on(run_async(args, url.trim_end_matches('/').to_string()))
}

async fn run_async(args: &BenchAlertsArgs, base: String) -> Result<ExitCode, CliError> {
    let usage = |e: String| CliError::Usage(e);
    let n = args.alerts;
    let all_labels: Vec<LabelSet> = (0..n).map(|i| labels(i, args)).collect();
    let fps: Vec<String> = all_labels.iter().map(fingerprint_hex).collect();
    let silenced: HashSet<String> = (0..n)
        .filter(|&i| is_silenced(i, args))
        .map(|i| fps[i].clone())
        .collect();
    let expected = n - silenced.len();

    let hook = Arc::new(Hook {
        start: Instant::now(),
        first: Mutex::new(HashMap::with_capacity(n)),
        silenced,
        notifications: AtomicU64::new(0),
        alerts_received: AtomicU64::new(0),
        silenced_delivered: AtomicU64::new(0),
        arrivals: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind(args.hook)
        .await
        .map_err(|e| usage(format!("--hook {}: {e}", args.hook)))?;
    let app = axum::Router::new()
        .route("/hook", post(on_hook))
        .with_state(hook.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| usage(e.to_string()))?;
    let u0 = args.server_pid.and_then(super::proc_usage);

    // Silences.
    let t = Instant::now();
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    let ends = starts + chrono::Duration::hours(2);
    for j in 0..args.silences {
        let body = json!({
            "matchers": [
                {"name": "bucket", "value": format!("b{j}"), "isRegex": false, "isEqual": true},
                {"name": "alertname", "value": "Bench.*", "isRegex": true, "isEqual": true},
            ],
            "startsAt": starts.to_rfc3339(),
            "endsAt": ends.to_rfc3339(),
            "createdBy": "alertd bench-alerts",
            "comment": "bench",
        });
        let r = client
            .post(format!("{base}/api/v2/silences"))
            .json(&body)
            .send()
            .await
            .map_err(|e| usage(format!("POST /api/v2/silences: {e}")))?;
        if !r.status().is_success() {
            return Err(usage(format!(
                "POST /api/v2/silences: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )));
        }
    }
    if args.silences > 0 {
        println!(
            "created {} silences in {:.2}s ({:.0}/s), muting {} of {n} alerts",
            args.silences,
            t.elapsed().as_secs_f64(),
            args.silences as f64 / t.elapsed().as_secs_f64(),
            hook.silenced.len()
        );
    }
    let u1 = args.server_pid.and_then(super::proc_usage);

    let batch = args.batch.max(1);
    let bodies: Arc<Vec<(usize, String)>> = Arc::new(
        all_labels
            .chunks(batch)
            .enumerate()
            .map(|(k, c)| {
                let v: Vec<Value> = c
                    .iter()
                    .map(|l| {
                        json!({
                            "labels": l,
                            "annotations": {"summary": "alertd bench-alerts"},
                            "generatorURL": "http://bench/graph",
                        })
                    })
                    .collect();
                (k * batch, serde_json::to_string(&v).unwrap_or_default())
            })
            .collect(),
    );
    let mut failed_total = 0;
    let mut prev = u1;
    for pass in 1..=args.passes.max(1) {
        let next = Arc::new(AtomicUsize::new(0));
        let retried = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let notif_before = hook.notifications.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.connections.max(1) {
            let (bodies, next, retried, failed, client) = (
                bodies.clone(),
                next.clone(),
                retried.clone(),
                failed.clone(),
                client.clone(),
            );
            let url = format!("{base}/api/v2/alerts");
            tasks.push(tokio::spawn(async move {
                // (first alert index of the batch, POST sent at, POST latency)
                let mut sent: Vec<(usize, Instant, Duration)> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((first, body)) = bodies.get(i) else {
                        break;
                    };
                    loop {
                        let t0 = Instant::now();
                        match client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => {
                                sent.push((*first, t0, t0.elapsed()));
                                break;
                            }
                            Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => {
                                retried.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                sent
            }));
        }
        let mut sent = Vec::new();
        for t in tasks {
            sent.extend(t.await.unwrap_or_default());
        }
        let posted_in = start.elapsed();
        let u_posted = args.server_pid.and_then(super::proc_usage);
        failed_total += failed.load(Ordering::Relaxed);
        let mut post_lat: Vec<f64> = sent.iter().map(|s| s.2.as_secs_f64() * 1e3).collect();
        post_lat.sort_by(f64::total_cmp);
        println!(
            "pass {pass}: posted {n} alerts in {} requests of {batch} over {} connections in {:.2}s: {:.0} alerts/s; POST latency p50 {:.1} ms, p99 {:.1} ms; {} retries after 503/429, {} failed",
            sent.len(),
            args.connections,
            posted_in.as_secs_f64(),
            n as f64 / posted_in.as_secs_f64(),
            pct(&post_lat, 0.5),
            pct(&post_lat, 0.99),
            retried.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        // Wait for every non-silenced alert (pass 1), or for group_wait + a margin (later passes,
        // which must notify nothing).
        let deadline = start + Duration::from_secs(args.timeout_secs);
        let settle = Duration::from_millis(args.group_wait_ms + 2000);
        loop {
            let delivered = hook.first.lock().unwrap().len();
            if pass == 1 && delivered >= expected {
                break;
            }
            if pass > 1 && start.elapsed() >= posted_in + settle {
                break;
            }
            if Instant::now() > deadline {
                println!("timed out: {delivered} of {expected} alerts delivered");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let done_in = start.elapsed();
        let u_done = args.server_pid.and_then(super::proc_usage);
        let notifications = hook.notifications.load(Ordering::Relaxed) - notif_before;
        if pass == 1 {
            // Latency: first delivery minus the POST of the alert's batch.
            let first = hook.first.lock().unwrap();
            let mut lat: Vec<f64> = Vec::with_capacity(n);
            for (b0, t0, _) in &sent {
                for fp in &fps[*b0..(*b0 + batch).min(n)] {
                    if let Some(t) = first.get(fp) {
                        lat.push(t.duration_since(*t0).as_secs_f64() * 1e3);
                    }
                }
            }
            lat.sort_by(f64::total_cmp);
            let arrivals = hook.arrivals.lock().unwrap();
            let span = match (arrivals.first(), arrivals.last()) {
                (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
                _ => f64::NAN,
            };
            let gw = args.group_wait_ms as f64;
            println!(
                "pass 1: {} unsilenced alerts delivered {:.2}s after the first POST, in {notifications} notifications ({} alerts in them); deliveries spread over {span:.2}s: {:.0} notifications/s",
                first.keys().filter(|f| !hook.silenced.contains(*f)).count(),
                done_in.as_secs_f64(),
                hook.alerts_received.load(Ordering::Relaxed),
                notifications as f64 / span,
            );
            println!(
                "pass 1: POST -> first delivery p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (group_wait {gw:.0} ms; minus group_wait: p50 {:.0} ms, p99 {:.0} ms)",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN),
                pct(&lat, 0.5) - gw,
                pct(&lat, 0.99) - gw,
            );
        } else {
            println!(
                "pass {pass}: re-post notified {notifications} times within {:.1}s (expected 0)",
                done_in.as_secs_f64()
            );
        }
        if let (Some(p), Some(a), Some(b)) = (prev, u_posted, u_done) {
            println!(
                "pass {pass}: server CPU {:.2}s while posting + {:.2}s until delivered = {:.1} µs per alert; RSS {:.1} MiB (was {:.1} MiB before the silences), peak {:.1} MiB",
                a.0 - p.0,
                b.0 - a.0,
                (b.0 - p.0) * 1e6 / n as f64,
                b.1 as f64 / 1048576.0,
                u0.map_or(f64::NAN, |u| u.1 as f64 / 1048576.0),
                b.2 as f64 / 1048576.0,
            );
        }
        prev = u_done;
    }
    let silenced_delivered = hook.silenced_delivered.load(Ordering::Relaxed);
    println!(
        "silenced alerts delivered: {silenced_delivered} (of {} silenced; must be 0)",
        hook.silenced.len()
    );
    if let (Some(a), Some(b), Some(c)) = (u0, u1, prev) {
        println!(
            "server: silences cost {:.2}s CPU, {:.1} MiB; alerts: {:.0} bytes RSS per alert (RSS after minus RSS after the silences, / {n}); total CPU {:.2}s, peak RSS {:.1} MiB",
            b.0 - a.0,
            (b.1 as f64 - a.1 as f64) / 1048576.0,
            (c.1 as f64 - b.1 as f64) / n as f64,
            c.0 - a.0,
            c.2 as f64 / 1048576.0,
        );
    }
    let ok = failed_total == 0
        && silenced_delivered == 0
        && hook.first.lock().unwrap().len() >= expected;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
