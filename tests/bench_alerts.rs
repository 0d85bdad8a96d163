//! `alertd bench-alerts`, the load generator of the alert-manager benchmark, driven against the
//! real `alertd` and against the real Alertmanager (Debian's `prometheus-alertmanager`, which
//! scripts/deps/prometheus.sh installs with `amtool`) with the configuration it prints for
//! each. What is checked is that the side-by-side comparison in docs/benchmarks.md measures the
//! same work on both: every unsilenced alert delivered, no silenced one, nothing re-notified.
//! Speed itself is measured by the benchmark, not here.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::Server;

fn alertd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(args)
        .output()
        .expect("alertd runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `group_wait` of both servers, well beyond the time to post the alerts even from a debug
/// build: a group flushed before all its alerts arrived would send the rest only a minute later.
const GROUP_WAIT_MS: &str = "2000";

/// The bench's small shape: 2,000 alerts in 20 groups, 20 silences muting 200 of them, posted
/// twice.
fn bench(url: &str, pid: u32, hook: &str) -> String {
    let pid = pid.to_string();
    let out = alertd(&[
        "bench-alerts",
        "--url",
        url,
        "--server-pid",
        &pid,
        "--hook",
        hook,
        "--alerts",
        "2000",
        "--groups",
        "20",
        "--silences",
        "20",
        "--group-wait-ms",
        GROUP_WAIT_MS,
        "--passes",
        "2",
        "--timeout-secs",
        "60",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "bench-alerts against {url} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The configuration `flag` prints for a bench whose webhook listens on `hook`.
fn printed_config(flag: &str, hook: &str) -> String {
    let out = alertd(&[
        "bench-alerts",
        flag,
        "--hook",
        hook,
        "--group-wait-ms",
        GROUP_WAIT_MS,
    ]);
    assert!(out.status.success(), "bench-alerts {flag} failed");
    stdout(&out)
}

fn assert_same_work(report: &str) {
    for want in [
        "created 20 silences",
        "muting 200 of 2000 alerts",
        "pass 1: 1800 unsilenced alerts delivered",
        "in 20 notifications (1800 alerts in them)",
        "pass 2: re-post notified 0 times",
        "silenced alerts delivered: 0 (of 200 silenced; must be 0)",
        "pass 1: server CPU",
        "pass 2: server CPU",
    ] {
        assert!(report.contains(want), "{want:?} missing from:\n{report}");
    }
}

struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, config: &Path, port: u16) -> Alertmanager {
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager is installed (scripts/deps/prometheus.sh)");
    let am = Alertmanager(child);
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            return am;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("Alertmanager never became ready");
}

#[test]
fn the_printed_alertmanager_configuration_passes_amtool() {
    let dir = tempfile::tempdir().unwrap();
    let out = alertd(&[
        "bench-alerts",
        "--print-alertmanager-config",
        "--inhibit-rule",
        "--group-wait-ms",
        "250",
    ]);
    assert!(out.status.success());
    let yaml = stdout(&out);
    assert!(yaml.contains("group_wait: 250ms"), "{yaml}");
    assert!(yaml.contains("equal: [group]"), "{yaml}");
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, &yaml).unwrap();
    let check = Command::new("amtool")
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("amtool is installed (scripts/deps/prometheus.sh)");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "amtool check-config refused it:\n{said}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("Found:"), "{said}");
    assert!(said.contains("1 inhibit rules"), "{said}");
    assert!(said.contains("1 receivers"), "{said}");
}

#[test]
fn the_bench_does_the_same_work_on_alertd_and_on_alertmanager() {
    // Alertmanager 0.25, with the configuration the bench prints for it.
    let dir = tempfile::tempdir().unwrap();
    let hook = format!("127.0.0.1:{}", support::free_port());
    let printed = printed_config("--print-alertmanager-config", &hook);
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, printed).unwrap();
    let port = support::free_port();
    let am = start_alertmanager(dir.path(), &config, port);
    let report = bench(&format!("http://127.0.0.1:{port}"), am.0.id(), &hook);
    assert_same_work(&report);
    drop(am);

    // alertd, with the receivers file the bench prints for it.
    let (dir, _) = support::workdir(&[]);
    let hook = format!("127.0.0.1:{}", support::free_port());
    let printed = printed_config("--print-receivers", &hook);
    std::fs::create_dir_all(dir.path().join("receivers")).unwrap();
    std::fs::write(dir.path().join("receivers/alertd.toml"), printed).unwrap();
    let server = Server::start(dir.path(), "");
    let report = bench(&server.base, server.child.id(), &hook);
    assert_same_work(&report);
}
