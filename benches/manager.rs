//! Alert manager hot paths: silence lookup (index vs linear scan), inhibition check and index
//! rebuild, the notification-log decision, and rendering a large group's webhook body.
//!
//! Run: `cargo bench --bench manager -- --warm-up-time 1 --measurement-time 3`.
//!
//! Shapes:
//! - 10,000 active silences: 9,000 of `host="web{i}", alertname=~"Disk.*|HighLoad"` (indexed by
//!   their `host` equality matcher) and 1,000 regex-only `cluster=~"c{j}-.*",
//!   severity=~"warning|info"` (indexed by their literal prefix `c{j}-`).
//! - Alerts carry 7 labels (`alertname`, `cluster`, `host`, `instance`, `job`, `severity`,
//!   `team`).
//! - 10,000 firing alerts for the inhibitor (1,000 `HostDown` critical, 9,000 warnings over 2,000
//!   hosts and 20 clusters) and three rules (Alertmanager-style: host down mutes the host's
//!   warnings; a critical mutes warnings of the same alertname and cluster; `ClusterDown` mutes
//!   everything in its cluster).
//! - A webhook body (Alertmanager's version 4) of 90 firing alerts shaped like those of
//!   `alertd bench-alerts` (five labels, one annotation), the size of its groups.

use std::hint::black_box;

use alertd::manager::inhibit::{InhibitRuleConfig, Inhibitor};
use alertd::manager::labels::{LabelSet, fingerprint, label_set};
use alertd::manager::nflog::{Entry, Log, needs_update};
use alertd::manager::silence::{Silence, SilenceSpec, Silences};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const S: i64 = 1_000_000_000;
const NOW: i64 = 1_800_000_000 * S;

fn spec(matchers: Vec<String>) -> SilenceSpec {
    SilenceSpec {
        matchers,
        starts_at: NOW - 3600 * S,
        ends_at: NOW + 3600 * S,
        created_by: "bench".into(),
        comment: "bench".into(),
        recurrence: None,
        duration_ns: None,
        location: None,
        until_resolved: None,
    }
}

fn silences() -> Silences {
    let mut s = Silences::new();
    for i in 0..9_000 {
        let m = vec![
            format!("host=\"web{i}\""),
            "alertname=~\"Disk.*|HighLoad\"".to_string(),
        ];
        s.insert(Silence::new(format!("eq-{i}"), spec(m), 0).unwrap());
    }
    for j in 0..1_000 {
        let m = vec![
            format!("cluster=~\"c{j}-.*\""),
            "severity=~\"warning|info\"".to_string(),
        ];
        s.insert(Silence::new(format!("re-{j}"), spec(m), 0).unwrap());
    }
    s
}

fn alert(alertname: &str, host: &str, cluster: &str) -> LabelSet {
    let instance = format!("{host}:9100");
    label_set([
        ("alertname", alertname),
        ("cluster", cluster),
        ("host", host),
        ("instance", instance.as_str()),
        ("job", "node"),
        ("severity", "warning"),
        ("team", "db"),
    ])
}

fn bench_silences(c: &mut Criterion) {
    let sil = silences();
    let cases = [
        // Indexed silence `host="web1234"` mutes it.
        ("silenced_by_eq", alert("DiskFull", "web1234", "prod-eu")),
        // No silence for this host, and no regex-only silence has a prefix of its cluster.
        ("not_silenced", alert("DiskFull", "web99999", "prod-eu")),
        // Muted by the 501st regex-only silence (`cluster=~"c500-.*"`).
        ("silenced_by_regex", alert("DiskFull", "web99999", "c500-a")),
    ];
    let mut g = c.benchmark_group("silences_10k");
    for (name, labels) in &cases {
        let expect = sil.iter().find(|s| s.mutes(labels, NOW)).is_some();
        assert_eq!(sil.muted_by(labels, NOW).is_some(), expect, "{name}");
        g.bench_with_input(BenchmarkId::new("muted_by", name), labels, |b, l| {
            b.iter(|| black_box(sil.muted_by(black_box(l), NOW)))
        });
        g.bench_with_input(BenchmarkId::new("linear_scan", name), labels, |b, l| {
            b.iter(|| black_box(sil.iter().find(|s| s.mutes(black_box(l), NOW)).is_some()))
        });
    }
    g.finish();
}

fn inhibit_rules() -> Vec<InhibitRuleConfig> {
    let r = |s: &str, t: &str, e: &[&str]| InhibitRuleConfig {
        source_matchers: vec![s.to_string()],
        target_matchers: vec![t.to_string()],
        equal: e.iter().map(|x| x.to_string()).collect(),
    };
    vec![
        r(
            "alertname=\"HostDown\"",
            "severity=~\"warning|info\"",
            &["host"],
        ),
        r(
            "severity=\"critical\"",
            "severity=\"warning\"",
            &["alertname", "cluster"],
        ),
        r(
            "alertname=\"ClusterDown\"",
            "alertname!=\"ClusterDown\"",
            &["cluster"],
        ),
    ]
}

fn firing_10k() -> Vec<(u64, LabelSet)> {
    let names = ["DiskFull", "HighLoad", "MemoryLow", "NetErrors"];
    (0..10_000)
        .map(|i| {
            let host = format!("web{}", i % 2_000);
            let cluster = format!("c{}", i % 20);
            let mut l = if i < 1_000 {
                alert("HostDown", &host, &cluster)
            } else {
                alert(names[i % names.len()], &host, &cluster)
            };
            if i < 1_000 {
                l.insert("severity".into(), "critical".into());
            }
            // A distinct label per alert so every alert is distinct.
            l.insert("path".into(), format!("/d{i}"));
            (fingerprint(&l), l)
        })
        .collect()
}

fn bench_inhibit(c: &mut Criterion) {
    let firing = firing_10k();
    let mut inh = Inhibitor::new(&inhibit_rules()).unwrap();
    inh.update(firing.iter().map(|(f, l)| (*f, l)));
    // web5 has a HostDown source; web1500 does not (sources are web0..web999).
    let inhibited = alert("DiskFull", "web5", "c5");
    let free = alert("DiskFull", "web1500", "c0");
    assert!(inh.check(&inhibited).is_some());
    assert!(inh.check(&free).is_none());
    let mut g = c.benchmark_group("inhibit_10k_firing_3_rules");
    g.bench_function("check/inhibited", |b| {
        b.iter(|| black_box(inh.check_at(black_box(&inhibited), NOW)))
    });
    g.bench_function("check/not_inhibited", |b| {
        b.iter(|| black_box(inh.check_at(black_box(&free), NOW)))
    });
    // What the dispatcher does per alert change: one alert added (or its end moved), then
    // removed; here a HostDown source, which two of the three rules index.
    let (src_fp, src) = firing[7].clone();
    g.bench_function("upsert_remove/source_alert", |b| {
        b.iter(|| {
            inh.upsert(black_box(src_fp) ^ 1, black_box(&src), Some(NOW));
            inh.remove(black_box(src_fp) ^ 1, black_box(&src));
        })
    });
    let (w_fp, w) = firing[1_234].clone();
    g.bench_function("upsert/non_source_alert", |b| {
        b.iter(|| inh.upsert(black_box(w_fp), black_box(&w), Some(NOW)))
    });
    g.sample_size(20);
    g.bench_function("update/10k_alerts", |b| {
        b.iter(|| inh.update(black_box(&firing).iter().map(|(f, l)| (*f, l))))
    });
    g.finish();
}

fn bench_nflog(c: &mut Criterion) {
    let fps: Vec<u64> = {
        let mut v: Vec<u64> = (0..10u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        v.sort_unstable();
        v
    };
    let entry = Entry {
        firing: fps.clone(),
        resolved: Vec::new(),
        sent_at: NOW - 60 * S,
        expires_at: NOW + 3600 * S,
    };
    let mut added = fps.clone();
    added.push(u64::MAX);
    let repeat = 4 * 3600 * S;
    let mut g = c.benchmark_group("nflog_group_of_10");
    g.bench_function("needs_update/unchanged", |b| {
        b.iter(|| {
            black_box(needs_update(
                Some(black_box(&entry)),
                black_box(&fps),
                &[],
                true,
                repeat,
                NOW,
            ))
        })
    });
    g.bench_function("needs_update/new_alert", |b| {
        b.iter(|| {
            black_box(needs_update(
                Some(black_box(&entry)),
                black_box(&added),
                &[],
                true,
                repeat,
                NOW,
            ))
        })
    });
    // The dispatcher's `Log::get` (allocates the (receiver, group key) tuple) in a log of
    // 1,000 groups.
    let mut log = Log::default();
    for i in 0..1_000 {
        log.set(
            "hook".into(),
            format!("{{}}:{{group=\"g{i}\"}}"),
            entry.clone(),
        );
    }
    let key = "{}:{group=\"g500\"}".to_string();
    g.bench_function("log_get/1k_groups", |b| {
        b.iter(|| black_box(log.get(black_box("hook"), black_box(&key)).is_some()))
    });
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    use alertd::receivers::notification::{AlertStatus, Notification, NotifiedAlert};
    let starts = chrono::DateTime::from_timestamp_nanos(NOW + 123_456_789);
    let alerts: Vec<NotifiedAlert> = (0..90)
        .map(|i| {
            let labels = label_set([
                ("alertname", "BenchAlert"),
                ("bucket", format!("b{}", 1000 + i).as_str()),
                ("group", "g101"),
                ("instance", format!("i{}", 1101 + 1000 * i).as_str()),
                ("severity", "warning"),
            ]);
            NotifiedAlert {
                status: AlertStatus::Firing,
                fingerprint: fingerprint(&labels),
                labels,
                annotations: label_set([("summary", "alertd bench-alerts")]),
                starts_at: starts,
                ends_at: None,
                generator_url: "http://bench/graph".into(),
            }
        })
        .collect();
    let n = Notification {
        receiver: "bench".into(),
        group_key: "{}:{group=\"g101\"}".into(),
        group_labels: label_set([("group", "g101")]),
        alerts,
        truncated: 0,
        external_url: "http://localhost:9092".into(),
        reason: "first notification".into(),
    };
    let mut g = c.benchmark_group("render");
    g.bench_function("webhook_v4/90_alerts", |b| {
        b.iter(|| {
            black_box(alertd::receivers::webhook::alertmanager_v4_text(
                black_box(&n),
                &n.alerts,
                0,
            ))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_silences,
    bench_inhibit,
    bench_nflog,
    bench_render
);
criterion_main!(benches);
