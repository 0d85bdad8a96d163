//! `alertd run` driven like agents drive it: the real binary on port 0 with a temporary data
//! directory, spoken to over HTTP.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Receiver, Server, metric, metric_sum, workdir};

const CPU_RULE: &str = r#"
stream
    |from()
        .database('telegraf')
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .id('cpu/{{ index .Tags "host" }}')
        .crit(lambda: "usage" > 90)
        .stateChangesOnly()
"#;

#[test]
fn telegraf_style_writes_reach_the_rules_and_are_stored() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "");
    // What Telegraf does at start-up.
    assert_eq!(s.client.get(s.url("/ping")).send().unwrap().status(), 204);
    let r = s
        .client
        .post(s.url("/query"))
        .form(&[("q", "CREATE DATABASE \"telegraf\"")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain and gzip bodies, seconds precision.
    let (code, _) = s.write(
        "/write?db=telegraf&rp=autogen&precision=s",
        "cpu,host=a usage=50 1767225600\ncpu,host=a usage=95 1767225610\n",
    );
    assert_eq!(code, 204);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"cpu,host=a usage=20 1767225620\n").unwrap();
    let r = s
        .client
        .post(s.url("/write?db=telegraf&precision=s"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let events = s.wait_events("CRITICAL then OK", |e| e.len() >= 2);
    assert_eq!(events[0]["level"], "CRITICAL");
    assert_eq!(events[0]["id"], "cpu/a");
    assert_eq!(events[0]["time"], "2026-01-01T00:00:10Z");
    assert_eq!(events[1]["level"], "OK");
    assert_eq!(events[1]["previousLevel"], "CRITICAL");
    // Another database is not read by the rule.
    let (code, _) = s.write(
        "/write?db=other&precision=s",
        "cpu,host=b usage=99 1767225630\n",
    );
    assert_eq!(code, 204);
    let m = s.metrics();
    assert_eq!(
        metric(&m, "alertd_points_received_total{endpoint=\"write\"}"),
        4.0
    );
    assert_eq!(
        metric(
            &m,
            "alertd_http_requests_total{endpoint=\"write\",code=\"204\"}"
        ),
        3.0
    );
    assert!(m.contains("alertd_process_resident_memory_bytes"), "{m}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        &s.metrics(),
        "alertd_rule_events_total{rule=\"cpu\",level=\"CRITICAL\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "rule counters never published");
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = s.metrics();
    assert_eq!(metric(&m, "alertd_rule_points_total{rule=\"cpu\"}"), 3.0);
    assert!(metric(&m, "alertd_events_stored_total") >= 2.0);
}

#[test]
fn influxdb_v2_writes_use_the_bucket_as_database() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "");
    let r = s
        .client
        .post(s.url("/api/v2/write?org=ops&bucket=telegraf/autogen&precision=ms"))
        .header("Authorization", "Token anything")
        .body("cpu,host=v2 usage=99 1767225600000\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let events = s.wait_events("the v2 point", |e| !e.is_empty());
    assert_eq!(events[0]["id"], "cpu/v2");
    let (code, body) = s.write("/api/v2/write?org=ops", "cpu usage=1\n");
    assert_eq!(code, 400);
    assert!(
        body.contains("missing required parameter 'bucket'"),
        "{body}"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_valid_lines_are_kept() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "[ingest]\nmax_body_bytes = 65536\n");
    // Partial write: the valid lines are processed, the answer names each bad line.
    let (code, body) = s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=p usage=95 1767225600\ncpu,host=p usage=9x5 1767225601\ncpu,host=p\n",
    );
    assert_eq!(code, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rejected"], 2);
    assert_eq!(v["lines"][0]["line"], 2);
    assert_eq!(
        v["lines"][0]["message"],
        "invalid field value for field 'usage': '9x5'"
    );
    assert_eq!(v["lines"][1]["line"], 3);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("partial write: 2 of 3 points rejected")
    );
    s.wait_events("the valid point of a partial write", |e| {
        e.iter().any(|e| e["id"] == "cpu/p")
    });
    // Empty body.
    assert_eq!(s.write("/write?db=telegraf", "").0, 204);
    // Over the limit, plain and as a gzip bomb.
    assert_eq!(s.write("/write?db=telegraf", vec![b'a'; 70_000]).0, 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'a'; 10_000_000]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() < 65536,
        "the compressed bomb fits under the limit: {}",
        bomb.len()
    );
    let r = s
        .client
        .post(s.url("/write?db=telegraf"))
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    // Broken gzip, unknown encoding, wrong precision, missing db.
    let r = s
        .client
        .post(s.url("/write?db=telegraf"))
        .header("Content-Encoding", "gzip")
        .body("nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("invalid gzip body"));
    let r = s
        .client
        .post(s.url("/write?db=telegraf"))
        .header("Content-Encoding", "br")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .contains("unsupported Content-Encoding 'br'")
    );
    let (code, body) = s.write("/write?db=telegraf&precision=fortnight", "cpu usage=1\n");
    assert_eq!(code, 400);
    assert!(body.contains("\"field\":\"precision\""), "{body}");
    let (code, body) = s.write("/write", "cpu usage=1\n");
    assert_eq!(code, 400);
    assert!(body.contains("missing required parameter 'db'"), "{body}");
    // Still healthy after all that.
    assert_eq!(
        s.client.get(s.url("/-/healthy")).send().unwrap().status(),
        200
    );
}

#[test]
fn reload_keeps_unchanged_rules_and_the_old_version_of_a_broken_one() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    // Three engine threads, so the rules are spread over shards.
    let s = Server::start(&dir, "[rules]\nengine_threads = 3\n");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=r usage=95 1767225600\n",
    );
    s.wait_events("CRITICAL before reload", |e| e.len() == 1);

    // Add a rule and reload: the unchanged cpu rule keeps its state (no second CRITICAL).
    std::fs::write(
        dir.join("rules/mem.tick"),
        "stream|from().measurement('mem')|alert().id('mem').crit(lambda: \"used\" > 90)",
    )
    .unwrap();
    let r = s.client.post(s.url("/-/reload")).send().unwrap();
    assert_eq!(r.status(), 200);
    let rules = s.json("/api/v1/rules");
    let names: Vec<&str> = rules["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "mem"]);
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=r usage=96 1767225610\nmem used=95 1767225610\n",
    );
    let events = s.wait_events("mem CRITICAL", |e| e.iter().any(|e| e["id"] == "mem"));
    assert_eq!(
        events.iter().filter(|e| e["id"] == "cpu/r").count(),
        1,
        "{events:?}"
    );

    // Break the cpu rule: the reload fails, the old version keeps running, the error is visible.
    std::fs::write(dir.join("rules/cpu.tick"), "stream|from()|windw()").unwrap();
    let r = s.client.post(s.url("/-/reload")).send().unwrap();
    assert_eq!(r.status(), 500);
    let rules = s.json("/api/v1/rules");
    let cpu = &rules["items"][0];
    assert_eq!(cpu["status"], "error");
    assert_eq!(cpu["running"], true);
    assert!(
        cpu["error"]
            .as_str()
            .unwrap()
            .contains("unknown node 'windw'"),
        "{cpu}"
    );
    assert_eq!(
        metric(&s.metrics(), "alertd_rule_load_error{rule=\"cpu\"}"),
        1.0
    );
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=r usage=10 1767225620\n",
    );
    s.wait_events("the old cpu rule's recovery", |e| {
        e.iter().any(|e| e["id"] == "cpu/r" && e["level"] == "OK")
    });
}

#[test]
fn alert_levels_survive_kill_9() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "[rules]\nengine_threads = 3\n");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=k usage=95 1767225600\n",
    );
    s.wait_events("CRITICAL", |e| e.len() == 1);
    s.kill9();

    let s = Server::start(&dir, "");
    let stored = s.json("/api/v1/rules/cpu");
    assert_eq!(stored["alerts"][0]["level"], "CRITICAL");
    // Still critical: nothing new fires.
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=k usage=97 1767225610\ncpu,host=other usage=1 1767225611\n",
    );
    // The recovery after the restart is a recovery.
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=k usage=10 1767225620\n",
    );
    let events = s.wait_events("the recovery", |e| e.len() >= 2);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["level"], "OK");
    assert_eq!(events[1]["previousLevel"], "CRITICAL");
    assert_eq!(events[1]["duration"], 20_000_000_000i64);
}

#[test]
fn unknown_config_keys_are_errors_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("alertd.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\n[ingest]\nmax_body = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:1: unknown field `max_body`", cfg.display())),
        "{err}"
    );
}

#[test]
fn prometheus_remote_write_becomes_points() {
    use alertd::ingest::prom_remote::{Label, STALE_NAN_BITS, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let rule = r#"
stream
    |from()
        .database('prometheus')
        .measurement('node_load1')
        .groupBy('instance')
    |alert()
        .id('load/{{ index .Tags "instance" }}')
        .crit(lambda: "value" > 4.0)
"#;
    let (_tmp, dir) = workdir(&[("load.tick", rule)]);
    let s = Server::start(&dir, "");
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "node_load1".into(),
                },
                Label {
                    name: "instance".into(),
                    value: "web1:9100".into(),
                },
                Label {
                    name: "job".into(),
                    value: "node".into(),
                },
            ],
            samples: vec![
                Sample {
                    value: f64::from_bits(STALE_NAN_BITS),
                    timestamp: 1767225590000,
                },
                Sample {
                    value: 7.5,
                    timestamp: 1767225600000,
                },
            ],
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    for path in ["/api/v1/prom/write", "/api/v1/write"] {
        let r = s
            .client
            .post(s.url(path))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
    }
    let events = s.wait_events("the remote-write alert", |e| !e.is_empty());
    assert_eq!(events[0]["id"], "load/web1:9100");
    assert_eq!(events[0]["time"], "2026-01-01T00:00:00Z");
    assert_eq!(events[0]["data"]["series"][0]["tags"]["job"], "node");
    // The stale marker is not a point: one point per request.
    assert_eq!(
        metric(
            &s.metrics(),
            "alertd_points_received_total{endpoint=\"prom_write\"}"
        ),
        2.0
    );
    let (code, body) = s.write("/api/v1/prom/write", "not snappy");
    assert_eq!(code, 400);
    assert!(body.contains("invalid snappy body"), "{body}");
}

#[test]
fn alertd_record_captures_what_the_service_accepts() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "");
    let out = dir.join("cpu.lp");
    let srpl = dir.join("all.srpl");
    let rec = |args: &[&str], file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_alertd"))
            .arg("record")
            .args(["--url", &s.base, "--duration", "3s", "-o"])
            .arg(file)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let cpu_only = rec(&["--measurement", "cpu"], &out);
    let everything = rec(&[], &srpl);
    // Wait until both recorders are connected, then write like an agent (seconds precision).
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&s.metrics(), "alertd_recorders") < 2.0 {
        assert!(Instant::now() < deadline, "recorders never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.write("/write?db=telegraf&precision=s", "cpu,host=r usage=95 1767225600\nmem,host=r used=1 1767225600\ncpu,host=r usage=9x 1767225601\n");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=r usage=10 1767225610\n",
    );
    for child in [cpu_only, everything] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let recorded = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        recorded,
        "cpu,host=r usage=95 1767225600000000000\ncpu,host=r usage=10 1767225610000000000\n"
    );
    let all = std::fs::read_to_string(&srpl).unwrap();
    assert_eq!(all.lines().count(), 9, "{all}");
    assert!(
        all.starts_with("telegraf\nautogen\ncpu,host=r usage=95 1767225600000000000\n"),
        "{all}"
    );
    // The recording is a test case.
    let t = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .arg("test")
        .arg(dir.join("rules/cpu.tick"))
        .arg("--data")
        .arg(&srpl)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&t.stdout);
    assert!(
        stdout.contains("CRITICAL cpu/r") && stdout.contains("OK       cpu/r"),
        "{stdout}"
    );
}

#[test]
fn wall_clock_deadman_and_window_close_for_silent_hosts() {
    let deadman = r#"
stream
    |from()
        .measurement('heartbeat')
        .groupBy('host')
    |deadman(0.0, 1s)
        .id('dead/{{ index .Tags "host" }}')
        .stateChangesOnly()
"#;
    let window = r#"
stream
    |from()
        .measurement('requests')
        .groupBy('host')
    |window()
        .period(2s)
        .every(2s)
    |count('n')
    |alert()
        .id('requests/{{ index .Tags "host" }}')
        .info(lambda: "count" > 0)
"#;
    let (_tmp, dir) = workdir(&[("deadman.tick", deadman), ("window.tick", window)]);
    let s = Server::start(&dir, "[rules]\ngrace = \"500ms\"\n");
    // One heartbeat, then silence; three requests in one window, then silence. No timestamps:
    // the points get the time they arrive.
    assert_eq!(
        s.write("/write?db=telegraf", "heartbeat,host=once up=1i\n")
            .0,
        204
    );
    assert_eq!(
        s.write(
            "/write?db=telegraf",
            "requests,host=quiet n=1i\nrequests,host=quiet n=1i\nrequests,host=quiet n=1i\n"
        )
        .0,
        204
    );
    let events = s.wait_events("the deadman and the wall-clock window", |e| {
        e.iter().any(|e| e["id"] == "dead/once") && e.iter().any(|e| e["id"] == "requests/quiet")
    });
    let dead = events.iter().find(|e| e["id"] == "dead/once").unwrap();
    assert_eq!(dead["level"], "CRITICAL");
    let window = events.iter().find(|e| e["id"] == "requests/quiet").unwrap();
    assert_eq!(window["level"], "INFO");
    assert_eq!(window["data"]["series"][0]["values"][0][1], 3, "{window}");
}

/// Eight writers sending 25 bodies of 5,000 lines each at once; (status, Retry-After) of
/// every write. `/-/healthy` is asked while they write and must answer.
fn flood(s: &Server) -> Vec<(u16, Option<String>)> {
    let body: String = (0..5000)
        .map(|i| {
            format!(
                "cpu,host=h{} usage={} {}\n",
                i % 50,
                i % 100,
                1767225600000000000i64 + i
            )
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = Vec::new();
                    for _ in 0..25 {
                        let r = s
                            .client
                            .post(s.url("/write?db=telegraf"))
                            .body(body.clone())
                            .send()
                            .unwrap();
                        let retry = r
                            .headers()
                            .get("Retry-After")
                            .map(|v| v.to_str().unwrap().to_string());
                        seen.push((r.status().as_u16(), retry));
                    }
                    seen
                })
            })
            .collect();
        let healthy = s.client.get(s.url("/-/healthy")).send().unwrap().status();
        assert_eq!(healthy, 200, "health must answer while writes are refused");
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn overload_gets_429_with_retry_after_and_health_stays_up() {
    // A tiny queue: one batch at a time, and no waiting for room. Many writers at once must
    // see back-pressure.
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(
        &dir,
        "[ingest]\nqueue_batches = 1\nretry_after_secs = 3\nqueue_wait = \"0s\"\n",
    );
    let statuses = flood(&s);
    let refused: Vec<_> = statuses.iter().filter(|(c, _)| *c == 429).collect();
    assert!(
        !refused.is_empty(),
        "no 429 among {} writes",
        statuses.len()
    );
    assert!(refused.iter().all(|(_, r)| r.as_deref() == Some("3")));
    assert!(
        statuses.iter().all(|(c, _)| *c == 204 || *c == 429),
        "{statuses:?}"
    );
    assert!(metric(&s.metrics(), "alertd_ingest_queue_full_total") >= refused.len() as f64);
    // A refused write is not counted: the client sends it again.
    let ok = statuses.iter().filter(|(c, _)| *c == 204).count() as f64;
    assert_eq!(
        metric(
            &s.metrics(),
            "alertd_points_received_total{endpoint=\"write\"}"
        ),
        ok * 5000.0
    );
}

#[test]
fn a_write_waits_for_room_in_a_full_queue_instead_of_being_refused() {
    // The same flood into the same one-batch queue, but writes may wait for room: each is
    // held until the batch before it is evaluated, and every one is accepted the first time.
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "[ingest]\nqueue_batches = 1\nqueue_wait = \"10s\"\n");
    let statuses = flood(&s);
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|(c, _)| *c == 204), "{statuses:?}");
    // Every point was evaluated: the rule saw all 1,000,000.
    let want = 200.0 * 5000.0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen = metric(&s.metrics(), "alertd_rule_points_total{rule=\"cpu\"}");
        if seen >= want {
            assert_eq!(seen, want);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seen} of {want} points evaluated"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sighup_reloads_rules() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "");
    std::fs::write(
        dir.join("rules/mem.tick"),
        "stream|from().measurement('mem')|alert().id('mem').crit(lambda: \"used\" > 90)",
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rules = s.json("/api/v1/rules");
        if rules["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "mem" && r["status"] == "running")
        {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {rules}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python `influxdb` client (what many scripts and agents use), installed by `scripts/test`.
#[test]
fn python_influxdb_client_writes_points() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "");
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let script = r#"
import sys
from influxdb import InfluxDBClient
client = InfluxDBClient(host="127.0.0.1", port=int(sys.argv[1]), database="telegraf")
client.create_database("telegraf")
ok = client.write_points([
    {"measurement": "cpu", "tags": {"host": "py"}, "time": "2026-01-01T00:00:00Z", "fields": {"usage": 97.5}},
    {"measurement": "cpu", "tags": {"host": "py"}, "time": "2026-01-01T00:00:10Z", "fields": {"usage": 12.0}},
], time_precision="s")
assert ok, "write_points failed"
print("written")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&port)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client failed (scripts/test installs it with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = s.wait_events("the python client's points", |e| e.len() >= 2);
    assert_eq!(events[0]["id"], "cpu/py");
    assert_eq!(events[0]["level"], "CRITICAL");
    assert_eq!(events[0]["time"], "2026-01-01T00:00:00Z");
    assert_eq!(events[1]["level"], "OK");
}

#[test]
fn a_changed_rule_keeps_its_alert_levels_even_on_another_engine_thread() {
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    let s = Server::start(&dir, "[rules]\nengine_threads = 4\n");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=m usage=95 1767225600\n",
    );
    s.wait_events("CRITICAL", |e| e.len() == 1);
    // Now read another measurement: the rule may land on another shard; its level comes along.
    std::fs::write(
        dir.join("rules/cpu.tick"),
        CPU_RULE.replace("measurement('cpu')", "measurement('cpu2')"),
    )
    .unwrap();
    assert_eq!(
        s.client.post(s.url("/-/reload")).send().unwrap().status(),
        200
    );
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu2,host=m usage=96 1767225610\ncpu2,host=m usage=10 1767225620\n",
    );
    let events = s.wait_events("the recovery on the new measurement", |e| e.len() >= 2);
    assert_eq!(
        events.len(),
        2,
        "still CRITICAL must not fire again: {events:?}"
    );
    assert_eq!(events[1]["level"], "OK");
    assert_eq!(events[1]["previousLevel"], "CRITICAL");
}

#[test]
fn tick_post_and_log_handlers_deliver_durably_with_retries() {
    let hook = Receiver::start(vec![503, 200]);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("alerts.log");
    let rule = format!(
        r#"
stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .id('cpu/{{{{ index .Tags "host" }}}}')
        .crit(lambda: "usage" > 90)
        .post('http://{}/hook')
            .header('X-Team', 'ops')
        .log('{}')
"#,
        hook.addr,
        log.display()
    );
    let (_tmp, dir) = workdir(&[("cpu.tick", &rule)]);
    let s = Server::start(&dir, "");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=w usage=95 1767225600\n",
    );
    // The first attempt gets 503; the retry (after about a second) gets 200.
    let reqs = hook.wait_for(2);
    let (head, body) = &reqs[1];
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-team: ops"), "{head}");
    let ev: Value = serde_json::from_str(body).unwrap();
    assert_eq!(ev["id"], "cpu/w");
    assert_eq!(ev["level"], "CRITICAL");
    assert_eq!(ev["previousLevel"], "OK");
    assert_eq!(ev["data"]["series"][0]["values"][0][1], 95.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &s.metrics(),
        "alertd_notifications_sent_total",
        "kind=\"post\"",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the retry was never counted as sent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = s.metrics();
    assert_eq!(
        metric_sum(&m, "alertd_notifications_retried_total", "kind=\"post\""),
        1.0
    );
    // Both notifications (post and log) are marked sent in the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.json("/api/v1/notifications")["counts"]["sent"] != 2 {
        assert!(
            Instant::now() < deadline,
            "{}",
            s.json("/api/v1/notifications")["counts"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    let line: Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], "cpu/w");
    // Nothing more is sent for a delivered notification.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(hook.requests.lock().unwrap().len(), 2);
}

#[test]
fn pending_notifications_survive_kill_9() {
    // The receiver is down while the alert fires and while alertd is killed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rule = format!(
        "stream|from().measurement('cpu').groupBy('host')|alert().id('cpu/{{{{ index .Tags \"host\" }}}}').crit(lambda: \"usage\" > 90).post('http://127.0.0.1:{port}/hook')"
    );
    let (_tmp, dir) = workdir(&[("cpu.tick", &rule)]);
    let s = Server::start(&dir, "");
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=d usage=95 1767225600\n",
    );
    s.wait_events("the event", |e| e.len() == 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &s.metrics(),
        "alertd_notifications_retried_total",
        "kind=\"post\"",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no delivery attempt while the receiver was down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    // Bring the receiver up on that port, restart alertd: the notification arrives.
    let hook = Receiver::start_on(port, vec![200]);
    let _s = Server::start(&dir, "");
    let reqs = hook.wait_for(1);
    let ev: Value = serde_json::from_str(&reqs[0].1).unwrap();
    assert_eq!(ev["id"], "cpu/d");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(hook.requests.lock().unwrap().len(), 1, "delivered once");
}

#[test]
fn the_queue_depth_returns_to_zero_after_concurrent_writes() {
    // Engine threads finish batches while other writes queue theirs: once every write is
    // answered and evaluated, the gauge must read 0 (a depth set from a stale count could stay
    // above 0 on an empty queue).
    let (_tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    // One engine thread: the race needs every shard to finish a batch before its writer
    // sets the gauge, most likely with one.
    let s = Server::start(&dir, "[rules]\nengine_threads = 1\n");
    let base = s.url("/write?db=telegraf");
    // Current times: points from long ago would let the wall clock expire a group between two
    // writes, and its next OK point would start a new group without an event.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let url = base.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in 0..500 {
                    // Alternating levels: every write makes an alert event for the manager.
                    let usage = if i % 2 == 0 { 95 } else { 1 };
                    let body = format!("cpu,host=h{w} usage={usage} {}", now_ns + i);
                    let r = client.post(&url).body(body).send().unwrap();
                    assert_eq!(r.status().as_u16(), 204);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.metrics();
        let depth = metric(&m, "alertd_ingest_queue_depth");
        let manager = metric(&m, "alertd_manager_queue_depth");
        let events = metric_sum(&m, "alertd_rule_events_total", "");
        if depth == 0.0 && manager == 0.0 && events >= 4000.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the last write: ingest queue depth {depth}, manager queue depth \
             {manager}, {events} events"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
