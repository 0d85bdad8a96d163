//! Passive checks through the real binary: results posted to `/api/v1/checks` become check
//! states, alerts in the alert manager (and notifications), and perfdata points a rule can use;
//! SOFT/HARD attempts, freshness, per-item errors, check states across restarts.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Receiver, Server, workdir};

/// A rule on perfdata: the `check` measurement of database `checks`.
const PERF_RULE: &str = r#"
stream
    |from()
        .database('checks')
        .measurement('check')
        .groupBy('host', 'label')
    |alert()
        .id('perf/{{ index .Tags "host" }}/{{ index .Tags "label" }}')
        .crit(lambda: "value" > "crit")
"#;

fn start(hook: &Receiver, extra: &str) -> (tempfile::TempDir, Server) {
    let (tmp, dir) = workdir(&[("perf.tick", PERF_RULE)]);
    support::webhook_route(&dir, &hook.addr, "group_by = [\"...\"]");
    let s = Server::start(&dir, extra);
    (tmp, s)
}

fn post(s: &Server, body: Value) -> (u16, Value) {
    let r = s
        .client
        .post(s.url("/api/v1/checks"))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn alerts(s: &Server) -> Vec<Value> {
    // Check alerts only, not the perfdata rule's.
    s.json("/api/v2/alerts?filter=host%3D~%22web.*%22&filter=alertname!%3D%22perf%22")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn results_become_states_alerts_notifications_and_points() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(&hook, "");
    let (code, body) = post(
        &s,
        json!([
            {"host": "web1", "service": "disk", "status": 2,
             "output": "DISK CRITICAL - /var 97% | var=97%;90;95;0;100\\n/var/log is 40G"},
            {"host": "web1", "status": 0, "output": "PING OK"},
            {"host": "", "service": "x", "status": 0},
            {"host": "web2", "service": "x", "status": "bad"},
            {"host": "web2", "service": "x", "status": 0, "color": "red"},
        ]),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["accepted"], 2);
    let errors: Vec<(i64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_i64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "host".into()),
            (3, "status".into()),
            (4, "color".into())
        ]
    );
    assert_eq!(body["field"], "[2].host");

    // The alert, with Nagios's split of the output.
    let a = wait_for("the disk alert", 10, || {
        alerts(&s)
            .into_iter()
            .find(|a| a["labels"]["service"] == "disk")
    });
    assert_eq!(
        a["labels"],
        json!({"alertname": "disk", "host": "web1", "service": "disk", "severity": "critical"})
    );
    assert_eq!(a["annotations"]["summary"], "DISK CRITICAL - /var 97%");
    assert_eq!(a["annotations"]["long_output"], "/var/log is 40G");
    assert_eq!(a["annotations"]["perfdata"], "var=97%;90;95;0;100");
    assert_eq!(a["annotations"]["state"], "CRITICAL");
    // The host is UP: no alert for it.
    assert!(
        !alerts(&s)
            .iter()
            .any(|a| a["labels"]["alertname"] == "host")
    );
    // A notification through the routing tree.
    wait_for("the notification", 10, || {
        let reqs = hook.requests.lock().unwrap().clone();
        reqs.iter()
            .any(|(_, b)| b.contains("DISK CRITICAL"))
            .then_some(())
    });

    // The check list.
    let checks = s.json("/api/v1/checks");
    let disk = checks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "disk")
        .unwrap()
        .clone();
    assert_eq!(disk["state"], "CRITICAL");
    assert_eq!(disk["state_type"], "HARD");
    // Paginated like every list.
    let page = s.json("/api/v1/checks?limit=1&offset=1");
    assert_eq!(
        (
            page["total"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(2), 1)
    );

    // Perfdata became a point: the rule on `check` fired (97 > crit 95).
    s.wait_events("the perfdata rule", |e| {
        e.iter()
            .any(|e| e["id"] == "perf/web1/var" && e["level"] == "CRITICAL")
    });

    // Recovery: a WARNING first resolves the critical alert and fires a warning one.
    post(
        &s,
        json!({"host": "web1", "service": "disk", "status": 1, "output": "DISK WARNING"}),
    );
    wait_for("the warning", 10, || {
        let all = alerts(&s);
        (all.len() == 1 && all[0]["labels"]["severity"] == "warning").then_some(())
    });
    post(
        &s,
        json!({"host": "web1", "service": "disk", "status": 0, "output": "DISK OK"}),
    );
    wait_for("the recovery", 10, || alerts(&s).is_empty().then_some(()));
}

#[test]
fn soft_states_until_max_check_attempts_and_freshness() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(
        &hook,
        "[[checks.rules]]\nservice = \"http\"\nmax_check_attempts = 3\n",
    );
    let r = json!({"host": "web9", "service": "http", "status": 2, "output": "HTTP CRITICAL"});
    post(&s, r.clone());
    post(&s, r.clone());
    let checks = s.json("/api/v1/checks");
    assert_eq!(checks["items"][0]["state_type"], "SOFT");
    assert_eq!(checks["items"][0]["attempt"], 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alerts(&s).is_empty(), "SOFT problems do not alert");
    post(&s, r);
    wait_for("the HARD alert", 10, || {
        (!alerts(&s).is_empty()).then_some(())
    });

    // A check with a ttl that falls silent turns UNKNOWN, saying for how long.
    post(
        &s,
        json!({"host": "web8", "service": "backup", "status": 0, "output": "OK", "ttl": "1s"}),
    );
    let a = wait_for("the stale alert", 10, || {
        alerts(&s)
            .into_iter()
            .find(|a| a["labels"]["service"] == "backup")
    });
    assert_eq!(a["labels"]["severity"], "unknown");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("no result for ") && summary.ends_with("(expected every 1s)"),
        "{summary}"
    );
    let checks = s.json("/api/v1/checks");
    let backup = checks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "backup")
        .unwrap()
        .clone();
    assert_eq!(backup["stale"], true);
    assert!(support::metric(&s.metrics(), "alertd_checks_stale_total") >= 1.0);
}

#[test]
fn hosts_are_registered_stored_and_retired_without_paging() {
    let hook = Receiver::start(vec![200]);
    let (tmp, s) = start(&hook, "");
    post(
        &s,
        json!([
            {"host": "web5", "service": "disk", "status": 2, "output": "DISK CRITICAL", "ttl": "2s"},
            {"host": "web6", "service": "disk", "status": 0, "output": "DISK OK"},
        ]),
    );
    // A host that only sends metrics (Telegraf's `host` tag).
    let (code, _) = s.write("/write?db=telegraf", "cpu,host=web7 usage_idle=90\n");
    assert_eq!(code, 204);
    let hosts = wait_for("three hosts", 10, || {
        let h = s.json("/api/v1/hosts");
        (h["total"] == 3).then_some(h)
    });
    assert_eq!(hosts["items"][0]["name"], "web5");
    assert_eq!(hosts["items"][0]["sources"], json!(["checks"]));
    assert_eq!(hosts["items"][2]["name"], "web7");
    assert_eq!(hosts["items"][2]["sources"], json!(["metrics"]));
    wait_for("the disk alert of web5", 10, || {
        (!alerts(&s).is_empty()).then_some(())
    });

    // Stored: after a kill -9 and restart the registry is still there (rows are written every
    // 5 s).
    std::thread::sleep(Duration::from_millis(5500));
    s.kill9();
    let s = Server::start(tmp.path(), "");
    assert_eq!(s.json("/api/v1/hosts")["total"], 3);

    // Retire web5 from the command line: its alert resolves, marked retired, and its check
    // (whose ttl would otherwise turn it stale) is gone.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["host", "retire", "web5", "--url", &s.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("retired web5: 1 alerts resolved"), "{text}");
    assert!(alerts(&s).is_empty());
    let all = s.json("/api/v1/alerts?state=resolved&filter=host%3Dweb5");
    assert_eq!(all["items"][0]["annotations"]["retired"], "host retired");
    let hosts = s.json("/api/v1/hosts");
    assert_eq!(hosts["total"], 2);
    assert_eq!(hosts["items"][0]["name"], "web6");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        alerts(&s).is_empty(),
        "a retired host's checks never turn stale"
    );
    // Unknown host.
    let r = s.client.delete(s.url("/api/v1/hosts/web5")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["field"], "name");
}

#[test]
fn a_down_host_holds_back_its_services_and_flapping_raises_one_alert() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(&hook, "");
    let names = |s: &Server| -> Vec<String> {
        let mut v: Vec<String> = s
            .json("/api/v2/alerts?filter=host%3D~%22web.*%22&filter=alertname!%3D%22perf%22")
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // The host is DOWN: its service's problem is not an alert of its own.
    post(
        &s,
        json!({"host": "web1", "status": 1, "output": "PING CRITICAL"}),
    );
    post(
        &s,
        json!({"host": "web1", "service": "http", "status": 2, "output": "timeout"}),
    );
    let checks = s.json("/api/v1/checks");
    assert_eq!(checks["total"], 2, "both results applied: {checks}");
    assert_eq!(names(&s), ["host"]);
    // UP again: the host alert resolves and the held service problem fires.
    post(
        &s,
        json!({"host": "web1", "status": 0, "output": "PING OK"}),
    );
    wait_for("the held service alert", 10, || {
        (names(&s) == ["http"]).then_some(())
    });

    // A check that flips at every result turns flapping: one Flapping alert for the check.
    for i in 0..21 {
        let status = if i % 2 == 0 { 2 } else { 0 };
        post(
            &s,
            json!({"host": "web2", "service": "db", "status": status}),
        );
    }
    let flap = wait_for("the flapping alert", 10, || {
        s.json("/api/v2/alerts?filter=alertname%3DFlapping")
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(flap["labels"]["service"], "db");
    assert_eq!(
        s.json("/api/v2/alerts?filter=alertname%3DFlapping")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let check = s.json("/api/v1/checks")["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "db")
        .unwrap()
        .clone();
    assert_eq!(check["flapping"], true);
    assert!(check["percent_state_change"].as_f64().unwrap() >= 30.0);
}

#[test]
fn check_states_survive_restarts_and_go_with_a_retired_host() {
    let hook = Receiver::start(vec![200]);
    let (tmp, s) = start(&hook, "");
    let disk = |host: &str, status: i64| json!({"host": host, "service": "disk", "status": status, "output": format!("DISK {status}")});
    post(&s, json!([disk("web1", 2), disk("web2", 2)]));
    wait_for("two alerts", 10, || (alerts(&s).len() == 2).then_some(()));
    let state_of = |s: &Server, host: &str| -> Option<(String, String)> {
        s.json("/api/v1/checks")["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["host"] == host)
            .map(|c| {
                (
                    c["state"].as_str().unwrap().to_string(),
                    c["state_type"].as_str().unwrap().to_string(),
                )
            })
    };

    // Rows are written every 5 s: after that, even a kill -9 keeps them.
    std::thread::sleep(Duration::from_millis(5500));
    s.kill9();
    let s = Server::start(tmp.path(), "");
    assert_eq!(
        state_of(&s, "web1"),
        Some(("CRITICAL".into(), "HARD".into()))
    );
    assert_eq!(s.json("/api/v1/checks")["total"], 2);

    // web2 is retired: its check rows go with it.
    let r = s.client.delete(s.url("/api/v1/hosts/web2")).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["checks_forgotten"], 1);

    // web1 recovers: the restored HARD CRITICAL state sees the recovery, and the alert fired
    // before the restart resolves.
    post(&s, disk("web1", 0));
    wait_for("the recovery after a restart", 10, || {
        alerts(&s).is_empty().then_some(())
    });
    let resolved = s.json("/api/v1/alerts?state=resolved&filter=host%3Dweb1");
    assert_eq!(
        resolved["items"][0]["annotations"]["state"], "OK",
        "{resolved}"
    );

    // A problem just before a clean stop (SIGTERM) is stored at shutdown, not 5 s later.
    post(&s, disk("web1", 2));
    wait_for("the new alert", 10, || {
        (alerts(&s).len() == 1).then_some(())
    });
    s.terminate();
    let s = Server::start(tmp.path(), "");
    assert_eq!(
        state_of(&s, "web1"),
        Some(("CRITICAL".into(), "HARD".into()))
    );
    assert_eq!(
        state_of(&s, "web2"),
        None,
        "the retired host's rows are deleted"
    );
    assert_eq!(s.json("/api/v1/checks")["total"], 1);
    post(&s, disk("web1", 0));
    wait_for("the second recovery", 10, || {
        alerts(&s).is_empty().then_some(())
    });
}
