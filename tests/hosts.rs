//! Hosts through the real binary: retiring a host frees its state in the rules engine, so its
//! deadman stops for good (a planned scale-down), while a host that vanishes without being
//! retired keeps alerting (a crash).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Receiver, Server, workdir};

/// A deadman per host that re-emits CRITICAL at every interval while the host is silent (no
/// `stateChangesOnly`), so a group left behind would be noticed at once.
const DEADMAN: &str = r#"
stream
    |from()
        .measurement('heartbeat')
        .groupBy('host')
    |deadman(0.0, 1s)
        .id('dead/{{ index .Tags "host" }}')
"#;

fn start(hook: &Receiver) -> (tempfile::TempDir, Server) {
    let (tmp, dir) = workdir(&[("deadman.tick", DEADMAN)]);
    support::webhook_route(
        &dir,
        &hook.addr,
        "group_by = [\"...\"]\ngroup_interval = \"1s\"",
    );
    let s = Server::start(&dir, "[rules]\ngrace = \"200ms\"\n");
    (tmp, s)
}

/// Every alert of every notification received: (host label, status, annotations).
fn notified(hook: &Receiver) -> Vec<(String, String, Value)> {
    hook.requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .flat_map(|v| v["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
                a["annotations"].clone(),
            )
        })
        .collect()
}

fn statuses_of(hook: &Receiver, host: &str) -> Vec<String> {
    notified(hook)
        .into_iter()
        .filter(|(h, _, _)| h == host)
        .map(|(_, s, _)| s)
        .collect()
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

fn heartbeat(s: &Server, hosts: &[&str]) {
    let body: String = hosts
        .iter()
        .map(|h| format!("heartbeat,host={h} up=1i\n"))
        .collect();
    assert_eq!(s.write("/write?db=telegraf", body).0, 204);
}

/// The rule's events for one alert id, oldest first.
fn events_of(s: &Server, id: &str) -> Vec<Value> {
    let v = s.json("/api/v1/events?limit=1000");
    let mut e: Vec<Value> = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["id"] == id)
        .collect();
    e.reverse();
    e
}

fn retire(s: &Server, host: &str) -> Value {
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/hosts/{host}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn a_retired_host_stops_paging_and_a_crashed_one_keeps_paging() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(&hook);
    heartbeat(&s, &["a", "b", "c"]);
    wait_for("three hosts", 10, || {
        (s.json("/api/v1/hosts")["total"] == 3).then_some(())
    });

    // c is retired before its deadman could fire (its first whole silent interval ends at
    // least a second after its heartbeat): its group is gone, so it never fires.
    let c = retire(&s, "c");
    assert_eq!(c["groups_dropped"], 1, "{c}");
    assert_eq!(c["alerts_resolved"], 0, "{c}");

    // a and b fall silent: both deadmen fire, one notification each.
    wait_for("a and b to page", 15, || {
        let n = notified(&hook);
        (n.iter().any(|(h, st, _)| h == "a" && st == "firing")
            && n.iter().any(|(h, st, _)| h == "b" && st == "firing"))
        .then_some(())
    });

    // a is retired: its group leaves the engine and its alert resolves, marked retired.
    let a = retire(&s, "a");
    assert_eq!(a["groups_dropped"], 1, "{a}");
    assert_eq!(a["alerts_resolved"], 1, "{a}");
    let resolved = wait_for("a's resolved notification", 10, || {
        notified(&hook)
            .into_iter()
            .find(|(h, st, _)| h == "a" && st == "resolved")
    });
    assert_eq!(resolved.2["retired"], "host retired");
    let a_events = events_of(&s, "dead/a").len();
    let b_events = events_of(&s, "dead/b").len();
    let rule = s.json("/api/v1/rules/deadman");
    assert_eq!(rule["groups"], 1, "only b's group is left: {rule}");
    let stored: Vec<&str> = rule["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["alert_id"].as_str())
        .collect();
    assert_eq!(stored, ["dead/b"], "a's stored alert state is deleted too");

    // Four more deadman intervals: b (a crash, never retired) is evaluated CRITICAL again
    // each time and stays firing; nothing more of a or c.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(statuses_of(&hook, "a"), ["firing", "resolved"]);
    assert!(statuses_of(&hook, "c").is_empty());
    assert_eq!(
        events_of(&s, "dead/a").len(),
        a_events,
        "a's deadman stopped"
    );
    assert!(events_of(&s, "dead/c").is_empty());
    assert!(
        events_of(&s, "dead/b").len() >= b_events + 3,
        "b's deadman goes on"
    );
    assert_eq!(statuses_of(&hook, "b"), ["firing"]);
    let firing = s.json("/api/v2/alerts?filter=host%3D%22b%22");
    assert_eq!(firing.as_array().map(Vec::len), Some(1), "{firing}");

    // a comes back: a new host at OK, so no recovery event while it reports.
    for _ in 0..10 {
        heartbeat(&s, &["a"]);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(events_of(&s, "dead/a").len(), a_events, "a starts afresh");
    assert_eq!(statuses_of(&hook, "a"), ["firing", "resolved"]);
    assert_eq!(s.json("/api/v1/rules/deadman")["groups"], 2);
}
