//! Rules engine throughput: Telegraf-shaped points through every shipped rule, and through the
//! disk rule alone. Lines are parsed once up front, so this measures routing, grouping,
//! windows, aggregates and alert evaluation, not parsing (see `line_protocol`).
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use alertd::engine::{Engine, TaskConfig};
use alertd::ingest::line_protocol::{ParsedLine, parse_lines};
use alertd::rules::plan::TaskPlan;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod support;

fn shipped_rules() -> Vec<Arc<TaskPlan>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("rules/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tick"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Arc::new(alertd::rules::load_file(f).expect("shipped rule loads")))
        .collect()
}

fn run(plans: &[Arc<TaskPlan>], lines: &[ParsedLine<'_>]) -> usize {
    let mut engine = Engine::new(plans.to_vec(), &TaskConfig::default());
    let mut events = 0;
    for (i, l) in lines.iter().enumerate() {
        engine.process(None, None, l, l.timestamp.unwrap_or(0));
        if i % 4096 == 0 {
            events += engine.drain_events().len();
        }
    }
    engine.flush();
    events + engine.drain_events().len()
}

fn bench(c: &mut Criterion) {
    let text = support::telegraf_input();
    let lines: Vec<ParsedLine<'_>> = parse_lines(&text)
        .map(|(_, r)| r.expect("generated input parses"))
        .collect();
    let all = shipped_rules();
    let disk: Vec<_> = all.iter().filter(|p| p.name == "disk").cloned().collect();

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(10);
    g.bench_function("all_shipped_rules", |b| {
        b.iter(|| black_box(run(&all, &lines)))
    });
    g.bench_function("disk_rule", |b| b.iter(|| black_box(run(&disk, &lines))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
