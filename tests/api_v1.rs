//! alertd's own API (`/api/v1`) against the real binary: alerts from rules and from the
//! Alertmanager API with their history and notifications, acknowledgement until resolve,
//! events, notifications, silences and rules; pagination and the one error shape.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Receiver, Server, workdir};

const CPU_RULE: &str = r#"
stream
    |from()
        .database('telegraf')
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .id('cpu/{{ index .Tags "host" }}')
        .message('cpu {{ index .Tags "host" }} at {{ index .Fields "usage" }}')
        .crit(lambda: "usage" > 90)
        .stateChangesOnly()
"#;

fn start(hook: &Receiver) -> (tempfile::TempDir, Server) {
    let (tmp, dir) = workdir(&[("cpu.tick", CPU_RULE)]);
    support::webhook_route(&dir, &hook.addr, "group_by = [\"alertname\"]");
    let s = Server::start(&dir, "");
    (tmp, s)
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = s.client.get(s.url(path)).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn alerts_with_history_notifications_and_pagination() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(&hook);
    let posted: Vec<Value> = (0..5)
        .map(|i| json!({"labels": {"alertname": "Posted", "n": format!("{i}")}}))
        .collect();
    let r = s
        .client
        .post(s.url("/api/v2/alerts"))
        .json(&posted)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=a usage=95 1767225600\n",
    );
    s.write(
        "/write?db=telegraf&precision=s",
        "cpu,host=a usage=97 1767225610\ncpu,host=a usage=10 1767225620\ncpu,host=a usage=99 1767225630\n",
    );
    s.wait_events("three cpu events", |e| e.len() >= 3);

    // Every source in one list: 5 posted + the rule alert.
    let (code, all) = get(&s, "/api/v1/alerts");
    assert_eq!(code, 200);
    assert_eq!(all["total"], 6);
    let rule_alert = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"]["kind"] == "rule")
        .expect("the rule's alert is listed")
        .clone();
    assert_eq!(rule_alert["source"]["rule"], "cpu");
    assert_eq!(rule_alert["state"], "firing");
    // Pages.
    let (_, page) = get(&s, "/api/v1/alerts?limit=4&offset=4");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        (page["limit"].clone(), page["offset"].clone()),
        (json!(4), json!(4))
    );
    let (_, f) = get(&s, "/api/v1/alerts?filter=n%3D~%22%5B12%5D%22");
    assert_eq!(f["total"], 2);

    // Detail: the level history of the rule alert, newest first, and its notifications.
    let fp = rule_alert["fingerprint"].as_str().unwrap();
    wait("the rule alert's notification", || {
        get(&s, &format!("/api/v1/alerts/{fp}")).1["notifications"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
    });
    let (code, detail) = get(&s, &format!("/api/v1/alerts/{fp}"));
    assert_eq!(code, 200);
    let levels: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["CRITICAL", "OK", "CRITICAL"]);
    assert_eq!(detail["history"][0]["message"], "cpu a at 99");
    assert_eq!(detail["notifications"][0]["receiver"], "hook");

    // Events and notifications lists.
    let (_, ev) = get(&s, "/api/v1/events?rule=cpu&alert=cpu/a&limit=2");
    assert_eq!(ev["total"], 3);
    assert_eq!(ev["items"].as_array().unwrap().len(), 2);
    let (_, n) = get(&s, "/api/v1/notifications?status=sent");
    assert!(n["total"].as_i64().unwrap() >= 1, "{n}");
    assert_eq!(n["counts"]["sent"], n["total"]);

    // Rules, with the stored level of each alert.
    let (_, rules) = get(&s, "/api/v1/rules");
    assert_eq!(rules["items"][0]["name"], "cpu");
    assert!(
        rules["items"][0]["source"]
            .as_str()
            .unwrap()
            .contains("usage")
    );
    let (_, cpu) = get(&s, "/api/v1/rules/cpu");
    assert_eq!(cpu["alerts"][0]["level"], "CRITICAL");

    // One error shape.
    for (path, status, field) in [
        ("/api/v1/alerts?limit=0", 400, "limit"),
        ("/api/v1/alerts?limit=5000", 400, "limit"),
        ("/api/v1/alerts?offset=-1", 400, "offset"),
        ("/api/v1/alerts?state=burning", 400, "state"),
        ("/api/v1/alerts?filter=%3D%3D", 400, "filter"),
        ("/api/v1/alerts/xyz", 400, "fingerprint"),
        ("/api/v1/alerts/0000000000000001", 404, "fingerprint"),
        ("/api/v1/rules/nope", 404, "name"),
        ("/api/v1/notifications?status=lost", 400, "status"),
        ("/api/v1/silences?state=gone", 400, "state"),
    ] {
        let (code, body) = get(&s, path);
        assert_eq!(code, status, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}"
        );
    }
}

#[test]
fn acknowledging_silences_an_alert_until_it_resolves() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = start(&hook);
    let post = |ends: Option<String>| {
        let mut a = json!({"labels": {"alertname": "DiskFull", "host": "db1"}});
        if let Some(e) = ends {
            a["endsAt"] = json!(e);
        }
        let r = s
            .client
            .post(s.url("/api/v2/alerts"))
            .json(&json!([a]))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    post(None);
    let (_, list) = get(&s, "/api/v1/alerts");
    let fp = list["items"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();

    let r = s
        .client
        .post(s.url(&format!("/api/v1/alerts/{fp}/ack")))
        .json(&json!({"author": "alice", "comment": "looking"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, alerts) = get(&s, "/api/v2/alerts");
    assert_eq!(alerts[0]["status"]["silencedBy"], json!([id]));
    let (_, sil) = get(&s, "/api/v1/silences?state=active");
    assert_eq!(sil["items"][0]["acknowledges"], json!(fp));
    assert_eq!(sil["items"][0]["createdBy"], "alice");
    // Acknowledging again (a double click) keeps the one acknowledgement.
    let again = s
        .client
        .post(s.url(&format!("/api/v1/alerts/{fp}/ack")))
        .json(&json!({"author": "bob"}))
        .send()
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().unwrap()["silenceID"], json!(id));
    let (_, sil) = get(&s, "/api/v1/silences?state=active");
    assert_eq!(sil["items"].as_array().map(Vec::len), Some(1), "{sil}");
    assert_eq!(sil["items"][0]["createdBy"], "alice");
    // Bad bodies and unknown alerts.
    let bad = s
        .client
        .post(s.url(&format!("/api/v1/alerts/{fp}/ack")))
        .body("[1]")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().unwrap()["field"], "body");

    // It resolves: the acknowledgement ends with it, so a new firing is not muted.
    post(Some(chrono::Utc::now().to_rfc3339()));
    wait("the acknowledgement to expire", || {
        get(&s, &format!("/api/v2/silence/{id}")).1["status"]["state"] == "expired"
    });
    let r = s
        .client
        .post(s.url(&format!("/api/v1/alerts/{fp}/ack")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409, "a resolved alert cannot be acknowledged");
    post(None);
    let (_, alerts) = get(&s, "/api/v2/alerts");
    assert_eq!(alerts[0]["status"]["state"], "active");
}
