//! `alertd test RULE.tick --data REC`: replays a recording through one rule on the recording's
//! own clock and prints every alert event; with `--expect`, compares them with an expected-events
//! file and exits 1 with a readable diff on a mismatch. No notification is sent.
//!
//! Every core parses chunks of the recording while this thread runs the engine over them in
//! recording order.

use serde_json::Value as Json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use super::CliError;
use crate::engine::{AlertEvent, Engine, TaskConfig, TaskStats};
use crate::ingest::line_protocol::{LineError, ParsedLine, Precision};
use crate::ingest::recording::Recording;
use crate::rules;
use crate::rules::ast::format_go_duration;

/// Output format of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per event.
    Text,
    /// One JSON object per line, with Kapacitor's alert-data field names.
    Json,
}

/// Options of `alertd test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The rule to run.
    pub rule: PathBuf,
    /// The recording: line protocol (`.lp`, any name) or Kapacitor `.srpl`, optionally gzipped.
    #[arg(long)]
    pub data: PathBuf,
    /// Expected events (JSON lines); exit 1 with a diff when the events differ.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// How to print events.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Timestamp precision of the recording: ns, us, ms, s.
    #[arg(long, default_value = "ns")]
    pub precision: String,
    /// Database the recording's points belong to (default: whatever the rule reads).
    #[arg(long)]
    pub db: Option<String>,
    /// Retention policy the recording's points belong to (default: whatever the rule reads).
    #[arg(long)]
    pub rp: Option<String>,
    /// Do not emit the windows still open when the recording ends.
    #[arg(long)]
    pub no_flush: bool,
    /// Drop groups idle for longer than this (event time), e.g. 15m.
    #[arg(long, default_value = "15m")]
    pub group_expiry: String,
    /// Print no summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Result of replaying a recording.
pub struct Replay {
    /// Events in the order produced.
    pub events: Vec<AlertEvent>,
    /// Counters of the rule.
    pub stats: TaskStats,
    /// Entries read from the recording.
    pub points_read: u64,
    /// Malformed lines (first 100 kept): line, column, reason.
    pub line_errors: Vec<(usize, usize, String)>,
    /// Total malformed lines.
    pub line_error_count: u64,
    /// Windows emitted by the end-of-recording flush.
    pub flushed_events: usize,
    /// Wall time of the replay.
    pub elapsed: std::time::Duration,
}

/// Parses chunks on this thread's partner while the engine runs here.
pub fn replay(
    plan: Arc<rules::plan::TaskPlan>,
    rec: &Recording,
    precision: Precision,
    db: Option<&str>,
    rp: Option<&str>,
    flush: bool,
    cfg: &TaskConfig,
) -> Replay {
    let start = Instant::now();
    let mut engine = Engine::new(vec![plan], cfg);
    let mut events = Vec::new();
    let mut points_read = 0u64;
    let mut line_errors = Vec::new();
    let mut line_error_count = 0u64;
    type Parsed<'a> = Vec<(
        usize,
        Option<&'a str>,
        Option<&'a str>,
        Result<ParsedLine<'a>, LineError>,
    )>;
    let chunks = rec.chunks(1 << 20);
    // Every core parses chunks (worker w takes chunks w, w+n, ...); the engine consumes them
    // in recording order on this thread.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let wanted = engine.measurement_filter();
    let wanted = &wanted;
    std::thread::scope(|s| {
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<(u64, Parsed<'_>)>(2);
            receivers.push(rx);
            let mine: Vec<_> = chunks.iter().skip(w).step_by(workers).copied().collect();
            s.spawn(move || {
                for c in mine {
                    // Lines no rule reads are parsed (to report malformed ones) but not sent on.
                    let mut read = 0u64;
                    let parsed: Parsed<'_> = c
                        .entries()
                        .inspect(|_| read += 1)
                        .filter(|e| {
                            e.point
                                .as_ref()
                                .map_or(true, |p| wanted.wants(p.measurement.as_str()))
                        })
                        .map(|e| (e.line, e.db, e.rp, e.point))
                        .collect();
                    if tx.send((read, parsed)).is_err() {
                        return;
                    }
                }
            });
        }
        for i in 0..chunks.len() {
            let Ok((read, batch)) = receivers[i % workers].recv() else {
                break;
            };
            points_read += read;
            for (line_no, edb, erp, point) in batch {
                match point {
                    Ok(p) => {
                        let Some(ts) = p.timestamp else {
                            line_error_count += 1;
                            if line_errors.len() < 100 {
                                line_errors.push((
                                    line_no,
                                    1,
                                    "no timestamp (a recording needs one on every point)"
                                        .to_string(),
                                ));
                            }
                            continue;
                        };
                        let Some(t) = precision.to_nanos(ts) else {
                            line_error_count += 1;
                            if line_errors.len() < 100 {
                                line_errors.push((
                                    line_no,
                                    1,
                                    format!(
                                        "timestamp {ts} is out of range at precision {precision}"
                                    ),
                                ));
                            }
                            continue;
                        };
                        engine.process(db.or(edb), rp.or(erp), &p, t);
                    }
                    Err(e) => {
                        line_error_count += 1;
                        if line_errors.len() < 100 {
                            line_errors.push((e.line, e.column, e.kind.to_string()));
                        }
                    }
                }
            }
            events.append(&mut engine.drain_events());
        }
    });
    let before_flush = events.len();
    if flush {
        engine.flush();
        events.append(&mut engine.drain_events());
    }
    let stats = engine
        .tasks()
        .first()
        .map(|t| t.stats().clone())
        .unwrap_or_default();
    Replay {
        flushed_events: events.len() - before_flush,
        events,
        stats,
        points_read,
        line_errors,
        line_error_count,
        elapsed: start.elapsed(),
    }
}

/// Runs `alertd test`.
pub fn run(args: &TestArgs) -> Result<ExitCode, CliError> {
    let plan = match rules::load_file(&args.rule) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let precision: Precision =
        args.precision
            .parse()
            .map_err(|e: crate::ingest::line_protocol::PrecisionError| {
                CliError::Usage(e.to_string())
            })?;
    let expiry = rules::parser::parse_duration(&args.group_expiry)
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--group-expiry: '{}' is not a duration such as 15m",
                args.group_expiry
            ))
        })?;
    let rec = Recording::open(&args.data).map_err(CliError::Recording)?;
    let cfg = TaskConfig {
        group_expiry: expiry,
    };
    let r = replay(
        plan,
        &rec,
        precision,
        args.db.as_deref(),
        args.rp.as_deref(),
        !args.no_flush,
        &cfg,
    );

    for (line, col, msg) in &r.line_errors {
        eprintln!("{}:{line}:{col}: {msg}", args.data.display());
    }
    if r.line_error_count > r.line_errors.len() as u64 {
        eprintln!(
            "{}: {} more malformed lines not shown",
            args.data.display(),
            r.line_error_count - r.line_errors.len() as u64
        );
    }

    let mut out = String::new();
    for (i, ev) in r.events.iter().enumerate() {
        if args.format == Format::Text
            && r.flushed_events > 0
            && i == r.events.len() - r.flushed_events
        {
            out.push_str("# end of recording: open windows flushed\n");
        }
        match args.format {
            Format::Json => {
                out.push_str(&ev.to_json().to_string());
                out.push('\n');
            }
            Format::Text => {
                out.push_str(&text_line(ev));
                out.push('\n');
            }
        }
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`alertd test ... | head`) is not an error worth reporting.
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }

    let mut code = ExitCode::SUCCESS;
    if let Some(exp) = &args.expect {
        let text = std::fs::read_to_string(exp).map_err(|source| CliError::Io {
            path: exp.clone(),
            source,
        })?;
        match compare(&text, &r.events) {
            Ok(()) => {
                if !args.quiet {
                    eprintln!("expect: {} events match {}", r.events.len(), exp.display());
                }
            }
            Err(diff) => {
                eprintln!("expect: events differ from {}:\n{diff}", exp.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    if !args.quiet {
        eprintln!("{}", summary(&r));
    }
    Ok(code)
}

/// One readable line per event.
pub fn text_line(ev: &AlertEvent) -> String {
    let mut s = format!(
        "{} {:<8} {}: {}",
        rules::format_rfc3339(ev.time),
        ev.level.as_str(),
        ev.id,
        ev.message
    );
    if ev.previous_level != ev.level || ev.duration > 0 {
        s.push_str(&format!(
            " (was {}, for {})",
            ev.previous_level.as_str(),
            format_go_duration(ev.duration)
        ));
    }
    for h in &ev.spec.handlers {
        s.push_str(&format!(" ->{}", h.kind));
    }
    s
}

fn summary(r: &Replay) -> String {
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        r.points_read as f64 / secs
    } else {
        0.0
    };
    let s = &r.stats;
    let mut line = format!(
        "points read {}, matched {}, events OK {} INFO {} WARNING {} CRITICAL {}, malformed lines {}",
        r.points_read,
        s.points_matched,
        s.events[0],
        s.events[1],
        s.events[2],
        s.events[3],
        r.line_error_count
    );
    let errs = s.missing_field + s.type_error + s.template_error;
    if errs > 0 {
        line.push_str(&format!(
            ", rule errors {} (missing field {}, type {}, template {}; first: {})",
            errs,
            s.missing_field,
            s.type_error,
            s.template_error,
            s.first_error.as_deref().unwrap_or("")
        ));
    }
    if r.flushed_events > 0 {
        line.push_str(&format!(
            ", {} from windows flushed at the end",
            r.flushed_events
        ));
    }
    line.push_str(&format!(", took {:.3}s ({:.0} points/s)", secs, rate));
    line
}

/// Compares expected JSON lines with the events: `time`, `id`, `level`, `previousLevel` always,
/// and every other field an expected line gives.
pub fn compare(expected: &str, events: &[AlertEvent]) -> Result<(), String> {
    let mut want = Vec::new();
    for (i, line) in expected.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Json = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not valid JSON: {e}", i + 1))?;
        if !v.is_object() {
            return Err(format!("line {}: expected a JSON object per line", i + 1));
        }
        want.push((i + 1, v));
    }
    let got: Vec<Json> = events.iter().map(AlertEvent::to_json).collect();
    let mut diff = String::new();
    for (n, (line, w)) in want.iter().enumerate() {
        let Some(g) = got.get(n) else {
            diff.push_str(&format!(
                "event {} (expected line {line}) is missing: {}\n",
                n + 1,
                w
            ));
            continue;
        };
        let mut problems = Vec::new();
        for key in ["time", "id", "level", "previousLevel"] {
            if w.get(key) != g.get(key) {
                problems.push(format!(
                    "{key}: expected {}, got {}",
                    show(w.get(key)),
                    show(g.get(key))
                ));
            }
        }
        if let Some(obj) = w.as_object() {
            for (k, wv) in obj {
                if ["time", "id", "level", "previousLevel"].contains(&k.as_str()) {
                    continue;
                }
                if !json_matches(wv, g.get(k)) {
                    problems.push(format!("{k}: expected {}, got {}", wv, show(g.get(k))));
                }
            }
        }
        if !problems.is_empty() {
            diff.push_str(&format!("event {} (expected line {line}):\n", n + 1));
            for p in problems {
                diff.push_str(&format!("  {p}\n"));
            }
        }
    }
    for (n, g) in got.iter().enumerate().skip(want.len()) {
        diff.push_str(&format!(
            "event {} was not expected: {} {} {}\n",
            n + 1,
            show(g.get("time")),
            show(g.get("level")),
            show(g.get("id"))
        ));
    }
    if diff.is_empty() {
        Ok(())
    } else {
        diff.push_str(&format!(
            "expected {} events, got {}",
            want.len(),
            got.len()
        ));
        Err(diff)
    }
}

/// Numbers compare by value (so `10` matches `10.0`); other values exactly.
fn json_matches(want: &Json, got: Option<&Json>) -> bool {
    match (want, got) {
        (Json::Number(a), Some(Json::Number(b))) => a.as_f64() == b.as_f64(),
        (Json::Array(a), Some(Json::Array(b))) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_matches(x, Some(y)))
        }
        (Json::Object(a), Some(Json::Object(b))) => {
            a.iter().all(|(k, v)| json_matches(v, b.get(k)))
        }
        (w, g) => Some(w) == g,
    }
}

fn show(v: Option<&Json>) -> String {
    v.map_or_else(|| "nothing".to_string(), |v| v.to_string())
}
