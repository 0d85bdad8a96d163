//! The write path on one core: request bodies of 5,000 Telegraf lines validated as the HTTP
//! handler does, then evaluated by the 20 rules of `benches/rules20`. Two ways of handing the
//! lines over are compared:
//!
//! - `reparse`: the handler parses every line to validate it and keeps the offsets of the lines
//!   a rule reads; the engine parses those again (the earlier design);
//! - `parse_once`: the handler keeps what it parsed ([`alertd::ingest::points::Points`]) and the
//!   engine reads it directly (the current design).
//!
//! A second group runs the engine threads' loop ([`Engine::process_points`]) on bodies already
//! validated, over a fleet of 2,000 hosts whose state is far larger than the CPU's caches,
//! with and without loading each line's state 16 lines ahead (and its series' entry 32 lines
//! ahead; `ahead_0` never does).
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 10`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use alertd::engine::{Engine, MeasurementFilter, TaskConfig};
use alertd::ingest::line_protocol::{Precision, parse_line, split_lines};
use alertd::ingest::points::LayoutIds;
use alertd::ingest::write::{SPARE_POINTS, WriteBatch, validate};
use alertd::rules::plan::TaskPlan;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod support;

fn rules20() -> Vec<Arc<TaskPlan>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rules20");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("benches/rules20")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tick"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Arc::new(alertd::rules::load_file(f).expect("bench rule loads")))
        .collect()
}

fn reparse(plans: &[Arc<TaskPlan>], bodies: &[Bytes]) -> usize {
    let mut engine = Engine::new(plans.to_vec(), &TaskConfig::default());
    let filter = engine.measurement_filter();
    let mut n = 0;
    for body in bodies {
        // Handler: validate every line, keep the offsets of the wanted ones.
        let Ok(text) = std::str::from_utf8(body) else {
            continue;
        };
        let mut wanted = Vec::new();
        for (line_no, line) in split_lines(text) {
            if let Ok(p) = parse_line(line, line_no)
                && filter.wants(p.measurement.as_str())
            {
                let start = line.as_ptr() as usize - text.as_ptr() as usize;
                wanted.push((start, start + line.len()));
            }
        }
        // Engine: parse the wanted lines again.
        for (s, e) in wanted {
            if let Ok(p) = parse_line(&text[s..e], 0) {
                let t = p.timestamp.unwrap_or(0);
                n += engine.process(Some("telegraf"), Some("autogen"), &p, t);
            }
        }
        engine.drain_events();
    }
    n
}

fn parse_once(plans: &[Arc<TaskPlan>], bodies: &[Bytes]) -> usize {
    let mut engine = Engine::new(plans.to_vec(), &TaskConfig::default());
    let filter = engine.measurement_filter();
    let mut layouts = LayoutIds::default();
    let mut n = 0;
    for body in bodies {
        let b = validated_body(&filter, body);
        layouts.start_batch(&b.lines);
        for p in b.lines.iter() {
            n += engine.process(Some(&b.db), Some(&b.rp), &layouts.point(p), p.time());
        }
        engine.drain_events();
        SPARE_POINTS.put(b.lines);
    }
    n
}

/// A body validated as the write handler does, ready for the engine threads.
fn validated_body(filter: &MeasurementFilter, body: &Bytes) -> WriteBatch {
    validate(
        body.clone(),
        "telegraf".into(),
        "autogen".into(),
        Precision::Nanoseconds,
        0,
        filter,
        "host",
    )
    .batch
}

/// Bodies validated as the write handler does.
fn validated(plans: &[Arc<TaskPlan>], bodies: &[Bytes]) -> Vec<WriteBatch> {
    let filter = Engine::new(plans.to_vec(), &TaskConfig::default()).measurement_filter();
    bodies.iter().map(|b| validated_body(&filter, b)).collect()
}

/// The engine threads' loop on validated batches: routes per measurement of the batch, then
/// every point through [`Engine::process_points`] with the given look-ahead.
fn engine_batches(plans: &[Arc<TaskPlan>], batches: &[WriteBatch], ahead: usize) -> u64 {
    let mut engine = Engine::new(plans.to_vec(), &TaskConfig::default());
    let mut layouts = LayoutIds::default();
    let mut n = 0;
    for b in batches {
        let mut routes = Vec::new();
        engine.batch_routes(Some(&b.db), Some(&b.rp), &b.lines, &mut routes);
        layouts.start_batch(&b.lines);
        n += engine.process_points(&b.lines, &routes, &layouts, ahead);
        engine.drain_events();
    }
    n
}

fn bench(c: &mut Criterion) {
    let text = support::telegraf_input();
    let lines: Vec<&str> = text.lines().collect();
    let bodies: Vec<Bytes> = lines
        .chunks(5000)
        .map(|c| Bytes::from(c.join("\n")))
        .collect();
    let plans = rules20();
    assert_eq!(reparse(&plans, &bodies), parse_once(&plans, &bodies));

    let mut g = c.benchmark_group("write_path_rules20");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(10);
    g.bench_function("reparse", |b| {
        b.iter(|| black_box(reparse(&plans, &bodies)))
    });
    g.bench_function("parse_once", |b| {
        b.iter(|| black_box(parse_once(&plans, &bodies)))
    });
    g.finish();

    let fleet = support::telegraf_fleet(2000, 180);
    let lines: Vec<&str> = fleet.lines().collect();
    let bodies: Vec<Bytes> = lines
        .chunks(5000)
        .map(|c| Bytes::from(c.join("\n")))
        .collect();
    let batches = validated(&plans, &bodies);
    assert_eq!(
        engine_batches(&plans, &batches, 0),
        engine_batches(&plans, &batches, 16)
    );
    let mut g = c.benchmark_group("engine_batches_rules20_2000_hosts");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(10);
    for ahead in [0, 16] {
        g.bench_function(format!("ahead_{ahead}"), |b| {
            b.iter(|| black_box(engine_batches(&plans, &batches, ahead)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
