//! Timed scenarios against the real binary, in the manner of Alertmanager's acceptance tests:
//! alerts are posted to `/api/v2/alerts` (and silences to `/api/v2/silences`) at fixed offsets
//! from the start, a real HTTP server receives the webhooks, and each notification must arrive
//! within a window, with exactly the expected alerts, and no other notification may arrive.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use support::{Receiver, Server, metric_sum, workdir};

/// A scenario clock: offsets in seconds from its start, as instants and as wall times.
struct Clock {
    start: Instant,
    wall: chrono::DateTime<Utc>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            wall: Utc::now(),
        }
    }

    fn sleep_until(&self, at: f64) {
        let target = self.start + Duration::from_secs_f64(at);
        let now = Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }

    fn wall(&self, at: f64) -> String {
        (self.wall + chrono::Duration::milliseconds((at * 1000.0) as i64))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn offset(&self, t: Instant) -> f64 {
        t.duration_since(self.start).as_secs_f64()
    }
}

fn post_alerts(s: &Server, alerts: Value) {
    let r = s
        .client
        .post(s.url("/api/v2/alerts"))
        .json(&alerts)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

/// The notifications received: (offset, set of "alertname/zone:status").
fn received(hook: &Receiver, clock: &Clock) -> Vec<(f64, BTreeSet<String>, Value)> {
    let reqs = hook.requests.lock().unwrap().clone();
    let times = hook.times.lock().unwrap().clone();
    reqs.iter()
        .zip(times)
        .map(|((_, body), t)| {
            let v: Value = serde_json::from_str(body).unwrap();
            let set = v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    format!(
                        "{}{}:{}",
                        a["labels"]["alertname"].as_str().unwrap_or(""),
                        a["labels"]["zone"]
                            .as_str()
                            .map(|z| format!("/{z}"))
                            .unwrap_or_default(),
                        a["status"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (clock.offset(t), set, v)
        })
        .collect()
}

/// Asserts the notifications, in order: each within its window with exactly its alerts.
fn expect(got: &[(f64, BTreeSet<String>, Value)], want: &[(f64, f64, &[&str])]) {
    let show: Vec<String> = got
        .iter()
        .map(|(t, s, _)| format!("{t:.2}s {s:?}"))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "notifications received:\n{}",
        show.join("\n")
    );
    for ((t, set, _), (from, to, alerts)) in got.iter().zip(want) {
        let expected: BTreeSet<String> = alerts.iter().map(|s| s.to_string()).collect();
        assert!(
            *t >= *from && *t <= *to,
            "notification at {t:.2}s, expected in {from}–{to}s; all:\n{}",
            show.join("\n")
        );
        assert_eq!(set, &expected, "all:\n{}", show.join("\n"));
    }
}

fn receivers_file(dir: &std::path::Path, hook: &Receiver, route: &str, extra: &str) {
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/alertd.toml"),
        format!(
            r#"
[route]
receiver = "hook"
{route}

[[receivers]]
name = "hook"
[receivers.webhook]
url = "http://{}/hook"

{extra}
"#,
            hook.addr
        ),
    )
    .unwrap();
}

#[test]
fn batching_group_wait_group_interval_and_repeat() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, dir) = workdir(&[]);
    receivers_file(
        &dir,
        &hook,
        "group_by = []\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"4900ms\"",
        "",
    );
    let s = Server::start(&dir, "");
    let c = Clock::new();
    let alert =
        |name: &str| json!({"labels": {"alertname": name, "zone": "a"}, "startsAt": c.wall(1.0)});
    c.sleep_until(1.1);
    post_alerts(&s, json!([alert("test1")]));
    c.sleep_until(1.7);
    post_alerts(&s, json!([alert("test2")]));
    c.sleep_until(3.3);
    post_alerts(&s, json!([alert("test3"), alert("test4"), alert("test5")]));
    c.sleep_until(10.0);
    let all5: &[&str] = &[
        "test1/a:firing",
        "test2/a:firing",
        "test3/a:firing",
        "test4/a:firing",
        "test5/a:firing",
    ];
    expect(
        &received(&hook, &c),
        &[
            (2.0, 2.6, &["test1/a:firing", "test2/a:firing"]),
            (4.0, 4.6, all5),
            (9.0, 9.7, all5),
        ],
    );
    // The payload is Alertmanager's version 4.
    let (_, _, v) = &received(&hook, &c)[0];
    assert_eq!(v["version"], "4");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["groupKey"], "{}:{}");
    assert_eq!(v["notification_reason"], "first notification");
    assert_eq!(v["commonLabels"]["zone"], "a");
    assert_eq!(v["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        received(&hook, &c)[2].2["notification_reason"],
        "repeat interval elapsed"
    );
}

#[test]
fn repeat_and_resolve() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, dir) = workdir(&[]);
    receivers_file(
        &dir,
        &hook,
        "group_by = [\"alertname\"]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1ms\"",
        "",
    );
    let s = Server::start(&dir, "");
    let c = Clock::new();
    c.sleep_until(1.0);
    post_alerts(
        &s,
        json!([{"labels": {"alertname": "test1"}, "startsAt": c.wall(1.0)}]),
    );
    c.sleep_until(3.5);
    post_alerts(
        &s,
        json!([{"labels": {"alertname": "test1"}, "startsAt": c.wall(1.0), "endsAt": c.wall(3.0)}]),
    );
    c.sleep_until(6.5);
    let got = received(&hook, &c);
    expect(
        &got,
        &[
            (2.0, 2.6, &["test1:firing"]),
            (3.0, 3.6, &["test1:firing"]),
            (4.0, 4.6, &["test1:resolved"]),
        ],
    );
    let resolved = &got[2].2;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["notification_reason"], "all alerts resolved");
    assert_eq!(
        resolved["alerts"][0]["startsAt"],
        c.wall(1.0).replace(".000Z", "Z")
    );
}

#[test]
fn silence_mutes_an_alert_while_active_and_it_comes_back_after() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, dir) = workdir(&[]);
    receivers_file(
        &dir,
        &hook,
        "group_by = []\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1ms\"",
        "",
    );
    let s = Server::start(&dir, "");
    let c = Clock::new();
    c.sleep_until(1.0);
    post_alerts(
        &s,
        json!([
            {"labels": {"alertname": "test1"}, "startsAt": c.wall(1.0)},
            {"labels": {"alertname": "test2"}, "startsAt": c.wall(1.0)},
        ]),
    );
    c.sleep_until(2.3);
    let r = s
        .client
        .post(s.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "alertname", "value": "test1", "isRegex": false}],
            "startsAt": c.wall(2.5), "endsAt": c.wall(4.5),
            "createdBy": "ops", "comment": "deploying",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    c.sleep_until(3.2);
    let silences = s.json("/api/v2/silences");
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["status"]["state"], "active");
    let alerts = s.json("/api/v2/alerts");
    let t1 = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "test1")
        .unwrap();
    assert_eq!(t1["status"]["state"], "suppressed");
    assert_eq!(t1["status"]["silencedBy"][0], id.as_str());
    c.sleep_until(5.6);
    expect(
        &received(&hook, &c),
        &[
            (2.0, 2.6, &["test1:firing", "test2:firing"]),
            (3.0, 3.6, &["test2:firing"]),
            (4.0, 4.6, &["test2:firing"]),
            (5.0, 5.6, &["test1:firing", "test2:firing"]),
        ],
    );
}

#[test]
fn inhibition_mutes_targets_while_the_source_fires() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, dir) = workdir(&[]);
    receivers_file(
        &dir,
        &hook,
        "group_by = []\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1ms\"",
        "[[inhibit_rules]]\nsource_matchers = ['alertname=\"JobDown\"']\ntarget_matchers = ['alertname=\"InstanceDown\"']\nequal = [\"job\", \"zone\"]\n",
    );
    let s = Server::start(&dir, "");
    let c = Clock::new();
    let a = |name: &str, zone: &str| json!({"labels": {"alertname": name, "job": "t", "zone": zone}, "startsAt": c.wall(1.0)});
    c.sleep_until(1.0);
    post_alerts(
        &s,
        json!([
            a("test1", "aa"),
            a("InstanceDown", "aa"),
            a("InstanceDown", "ab")
        ]),
    );
    c.sleep_until(2.2);
    post_alerts(&s, json!([a("JobDown", "aa")]));
    c.sleep_until(3.6);
    let mut done = a("JobDown", "aa");
    done["endsAt"] = json!(c.wall(3.6));
    post_alerts(&s, json!([done]));
    c.sleep_until(4.7);
    expect(
        &received(&hook, &c),
        &[
            (
                2.0,
                2.6,
                &[
                    "InstanceDown/aa:firing",
                    "InstanceDown/ab:firing",
                    "test1/aa:firing",
                ],
            ),
            (
                3.0,
                3.6,
                &[
                    "InstanceDown/ab:firing",
                    "JobDown/aa:firing",
                    "test1/aa:firing",
                ],
            ),
            (
                4.0,
                4.7,
                &[
                    "InstanceDown/aa:firing",
                    "InstanceDown/ab:firing",
                    "JobDown/aa:resolved",
                    "test1/aa:firing",
                ],
            ),
        ],
    );
}

#[test]
fn rule_alerts_route_through_the_tree_and_handler_alerts_respect_silences() {
    // One rule without handlers (routed, grouped by host) and one with a .post() handler.
    let hook = Receiver::start(vec![200]);
    let handler_hook = Receiver::start(vec![200]);
    let routed = r#"
stream
    |from().measurement('disk').groupBy('host')
    |alert()
        .id('disk/{{ index .Tags "host" }}')
        .message('{{ index .Tags "host" }} disk {{ index .Fields "used_percent" }}%')
        .crit(lambda: "used_percent" > 90)
"#;
    let handled = format!(
        r#"
stream
    |from().measurement('cpu').groupBy('host')
    |alert()
        .id('cpu/{{{{ index .Tags "host" }}}}')
        .crit(lambda: "usage" > 90)
        .post('http://{}/tick')
"#,
        handler_hook.addr
    );
    let (_tmp, dir) = workdir(&[("disk.tick", routed), ("cpu.tick", &handled)]);
    receivers_file(
        &dir,
        &hook,
        "group_by = [\"alertname\", \"host\"]\ngroup_wait = \"200ms\"\ngroup_interval = \"1s\"",
        "",
    );
    let s = Server::start(&dir, "");
    // Silence the handler alerts of host b.
    let now = Utc::now();
    let r = s
        .client
        .post(s.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "host", "value": "b", "isRegex": false}],
            "startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "ops", "comment": "host b is being rebuilt",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = now.timestamp();
    s.write(
        "/write?db=telegraf&precision=s",
        format!(
            "disk,host=a used_percent=95 {t}\ncpu,host=a usage=99 {t}\ncpu,host=b usage=99 {t}\n"
        ),
    );
    let reqs = hook.wait_for(1);
    let v: Value = serde_json::from_str(&reqs[0].1).unwrap();
    assert_eq!(v["groupLabels"], json!({"alertname": "disk", "host": "a"}));
    assert_eq!(v["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(v["alerts"][0]["annotations"]["message"], "a disk 95%");
    let handled = handler_hook.wait_for(1);
    let ev: Value = serde_json::from_str(&handled[0].1).unwrap();
    assert_eq!(ev["id"], "cpu/a");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        handler_hook.requests.lock().unwrap().len(),
        1,
        "host b is silenced"
    );
    assert_eq!(hook.requests.lock().unwrap().len(), 1);
    assert!(
        s.metrics().contains("alertd_notifications_muted_total 1\n"),
        "the silenced handler event is counted as muted"
    );
    // The recovery of the routed alert is sent resolved at the next group interval.
    s.write(
        "/write?db=telegraf&precision=s",
        format!("disk,host=a used_percent=50 {}\n", t + 10),
    );
    let reqs = hook.wait_for(2);
    let v: Value = serde_json::from_str(&reqs[1].1).unwrap();
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["alerts"][0]["status"], "resolved");
}

#[test]
fn notifications_pending_at_a_crash_are_sent_exactly_once_after_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_tmp, dir) = workdir(&[]);
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/alertd.toml"),
        format!(
            "[route]\nreceiver = \"hook\"\ngroup_by = [\"alertname\"]\ngroup_wait = \"100ms\"\ngroup_interval = \"500ms\"\n\n[[receivers]]\nname = \"hook\"\n[receivers.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n"
        ),
    )
    .unwrap();
    let s = Server::start(&dir, "");
    let alerts: Vec<Value> = (0..3)
        .map(|i| json!({"labels": {"alertname": format!("a{i}")}}))
        .collect();
    post_alerts(&s, Value::Array(alerts));
    // Wait until all three notifications were attempted (and failed: nobody listens).
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&s.metrics(), "alertd_notifications_retried_total", "hook") < 3.0 {
        assert!(Instant::now() < deadline, "{}", s.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    let hook = Receiver::start_on(port, vec![200]);
    let s = Server::start(&dir, "");
    hook.wait_for(3);
    // Group intervals pass after the restart: nothing is sent twice.
    std::thread::sleep(Duration::from_millis(2000));
    let reqs = hook.requests.lock().unwrap().clone();
    let names: BTreeSet<String> = reqs
        .iter()
        .map(|(_, b)| {
            let v: Value = serde_json::from_str(b).unwrap();
            v["alerts"][0]["labels"]["alertname"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reqs.len(), 3, "each notification exactly once");
    assert_eq!(names.len(), 3);
    // The alerts are restored too.
    assert_eq!(s.json("/api/v2/alerts").as_array().unwrap().len(), 3);
}

#[test]
fn a_dead_receiver_does_not_delay_another() {
    // "slow" accepts connections and never answers: every attempt waits for its 5 s timeout.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let fast = Receiver::start(vec![200]);
    let (_tmp, dir) = workdir(&[]);
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/alertd.toml"),
        format!(
            r#"
[route]
receiver = "fast"
group_by = ["alertname"]
group_wait = "100ms"
group_interval = "1s"

[[route.routes]]
matchers = ['alertname=~".+"']
receiver = "slow"
continue = true

[[route.routes]]
matchers = ['alertname=~".+"']
receiver = "fast"

[[receivers]]
name = "slow"
[receivers.webhook]
url = "http://{dead_addr}/hook"
timeout = "5s"

[[receivers]]
name = "fast"
[receivers.webhook]
url = "http://{}/hook"
"#,
            fast.addr
        ),
    )
    .unwrap();
    let s = Server::start(&dir, "");
    let alerts: Vec<Value> = (0..20)
        .map(|i| json!({"labels": {"alertname": format!("a{i}")}}))
        .collect();
    let posted = Instant::now();
    post_alerts(&s, Value::Array(alerts));
    fast.wait_for(20);
    let took = posted.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the fast receiver got its 20 notifications only after {took:?}"
    );
    // Meanwhile the dead receiver's notifications are still waiting in its own queue.
    std::thread::sleep(Duration::from_millis(1500));
    let m = s.metrics();
    assert!(
        metric_sum(&m, "alertd_receiver_queue_depth", "receiver=\"slow\"") >= 10.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "alertd_notifications_sent_total", "receiver=\"slow\""),
        0.0
    );
    assert_eq!(
        metric_sum(&m, "alertd_notifications_sent_total", "receiver=\"fast\""),
        20.0
    );
    drop(dead);
}
