//! `alertd record --url URL [--measurement M] [--duration D] -o FILE`: captures the points a
//! running service accepts, so a real incident becomes a test case for `alertd test --data`.
//! A file ending in `.srpl` keeps each point's database and retention policy; any other name gets
//! plain line protocol with nanosecond timestamps.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::CliError;

/// Options of `alertd record`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// The service, e.g. http://127.0.0.1:9092.
    #[arg(long)]
    pub url: String,
    /// Only points of this measurement.
    #[arg(long)]
    pub measurement: Option<String>,
    /// Only points written to this database.
    #[arg(long)]
    pub db: Option<String>,
    /// How long to record, e.g. 10m.
    #[arg(long, default_value = "1m")]
    pub duration: String,
    /// Output file (`.srpl` for Kapacitor's stream recording format, else line protocol).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Runs `alertd record`.
pub fn run(args: &RecordArgs) -> Result<ExitCode, CliError> {
    let ns = crate::rules::parser::parse_duration(&args.duration)
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--duration: '{}' is not a duration such as 10m",
                args.duration
            ))
        })?;
    let duration = Duration::from_nanos(ns as u64);
    let client = reqwest::blocking::Client::builder()
        .timeout(duration + Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut query = vec![("duration", args.duration.clone())];
    if let Some(m) = &args.measurement {
        query.push(("measurement", m.clone()));
    }
    if let Some(d) = &args.db {
        query.push(("db", d.clone()));
    }
    let url = format!("{}/api/v1/record", args.url.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .query(&query)
        .send()
        .map_err(|e| CliError::Usage(format!("cannot reach {url}: {e}")))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        return Err(CliError::Usage(format!("{url} answered {status}: {body}")));
    }
    let srpl = args.output.extension().is_some_and(|e| e == "srpl");
    let file = std::fs::File::create(&args.output).map_err(|source| CliError::Io {
        path: args.output.clone(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    let io = |source| CliError::Io {
        path: args.output.clone(),
        source,
    };
    eprintln!("recording from {} for {}...", args.url, args.duration);
    let mut lines = BufReader::new(resp).lines();
    let mut points = 0u64;
    // The stream ends with the duration (a cut connection ends it too).
    while let (Some(Ok(db)), Some(Ok(rp)), Some(Ok(point))) =
        (lines.next(), lines.next(), lines.next())
    {
        if srpl {
            writeln!(out, "{db}\n{rp}\n{point}").map_err(io)?;
        } else {
            writeln!(out, "{point}").map_err(io)?;
        }
        points += 1;
    }
    out.flush().map_err(io)?;
    eprintln!("recorded {points} points to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
