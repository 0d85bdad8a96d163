//! Line protocol parser throughput on Telegraf-shaped input.
//!
//! Input: see `support.rs` (generated Telegraf-shaped data, or `ALERTD_BENCH_LP`).
//!
//! Run: `cargo bench --bench line_protocol -- --warm-up-time 1 --measurement-time 5`.
//! `parse_lines/bytes` reports MB/s, `parse_lines/lines` lines/s (one core).
//! `parse_lines_general` runs the same lines with an escaped tag value and a quoted
//! string field added, which the fast path does not take.

use std::hint::black_box;

use alertd::ingest::line_protocol::{parse_lines, split_lines};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod support;

fn bench(c: &mut Criterion) {
    let text = support::telegraf_input();
    let lines = split_lines(&text).count() as u64;
    // Every line must parse, or the numbers mean nothing.
    let bad = parse_lines(&text).filter(|(_, r)| r.is_err()).count();
    assert_eq!(bad, 0, "bench input has lines that do not parse");
    eprintln!(
        "input: {} bytes, {lines} lines, {:.1} bytes/line",
        text.len(),
        text.len() as f64 / lines as f64
    );

    let mut group = c.benchmark_group("parse_lines");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            for item in parse_lines(black_box(&text)) {
                black_box(&item);
            }
        })
    });
    group.throughput(Throughput::Elements(lines));
    group.bench_function("lines", |b| {
        b.iter(|| {
            for item in parse_lines(black_box(&text)) {
                black_box(&item);
            }
        })
    });
    group.finish();

    // Every line gets an escaped space in a tag value and a string field, so it goes
    // through the general parser.
    let general: String = split_lines(&text)
        .map(|(_, line)| {
            let line = line.replacen("host=", "host=rack\\ 1/", 1);
            let ts = line.rfind(' ').expect("timestamp");
            format!("{},note=\"up 3 days, 14:41\"{}\n", &line[..ts], &line[ts..])
        })
        .collect();
    assert_eq!(
        parse_lines(&general).filter(|(_, r)| r.is_err()).count(),
        0,
        "general-path input has lines that do not parse"
    );
    let mut group = c.benchmark_group("parse_lines_general");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines));
    group.bench_function("lines", |b| {
        b.iter(|| {
            for item in parse_lines(black_box(&general)) {
                black_box(&item);
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("split_lines");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            for item in split_lines(black_box(&text)) {
                black_box(&item);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
