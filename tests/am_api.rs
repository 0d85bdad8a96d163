//! The Alertmanager v2 API against the real binary: every endpoint's success and validation
//! answers with raw HTTP, then the real clients operators use, `amtool` and `prometheus` (from
//! Debian's packages, installed by `scripts/test`), talking to alertd as they talk to
//! Alertmanager.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use support::{Receiver, Server, metric, workdir};

fn ts(offset_secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A server with two routes (`critical` alerts to `pager`, the rest to `hook`), one inhibition
/// rule (a firing `NodeDown` mutes alerts of the same host) and a mute time interval that is
/// always on for the `muted` team.
fn server(hook: &Receiver) -> (tempfile::TempDir, Server) {
    server_with(hook, "", None)
}

/// As [`server`], with more configuration, reached with `token`.
fn server_with(hook: &Receiver, config: &str, token: Option<&str>) -> (tempfile::TempDir, Server) {
    let (tmp, dir) = workdir(&[]);
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/alertd.toml"),
        format!(
            r#"
[route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "1s"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "pager"

[[route.routes]]
matchers = ['team="muted"']
receiver = "hook"
mute_time_intervals = ["always"]

[[receivers]]
name = "hook"
[receivers.webhook]
url = "http://{addr}/hook"

[[receivers]]
name = "pager"
[receivers.webhook]
url = "http://{addr}/pager"

[[inhibit_rules]]
source_matchers = ['alertname="NodeDown"']
target_matchers = ['alertname!="NodeDown"']
equal = ["host"]

[[time_intervals]]
name = "always"
[[time_intervals.time_intervals]]
weekdays = ["sunday:saturday"]
"#,
            addr = hook.addr
        ),
    )
    .unwrap();
    let mut client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
    if let Some(t) = token {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        client = client.default_headers(h);
    }
    let s = Server::start_with(&dir, config, "http", client.build().unwrap());
    (tmp, s)
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = s.client.post(s.url(path)).json(body).send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = s.client.get(s.url(path)).send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn names(alerts: &Value) -> Vec<String> {
    let mut v: Vec<String> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["alertname"].as_str().unwrap_or(""),
                a["labels"]["host"].as_str().unwrap_or("")
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn posting_alerts_keeps_the_valid_ones_and_names_each_problem() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = server(&hook);
    let (code, body) = post(
        &s,
        "/api/v2/alerts",
        &json!([
            {"labels": {"alertname": "DiskFull", "host": "a", "empty": ""}},
            {"labels": {"alertname": "X", "bad-name": "v"}},
            {"labels": {}},
            {"labels": {"alertname": "Late"}, "startsAt": ts(0), "endsAt": ts(-60)},
            {"labels": {"alertname": "BadTime"}, "startsAt": "yesterday"},
            {"labels": {"alertname": "Load", "host": "b"}, "endsAt": ts(600)},
        ]),
    );
    assert_eq!(code, 400);
    let msg = body.as_str().expect("a 400 body is a JSON string");
    for want in [
        "[1].labels: invalid label name 'bad-name'",
        "[2].labels: at least one label is required",
        "[3].endsAt: must not be before startsAt",
        "[4].startsAt: 'yesterday' is not an RFC 3339 time",
    ] {
        assert!(msg.contains(want), "{want} missing from {msg}");
    }
    let (code, alerts) = get(&s, "/api/v2/alerts");
    assert_eq!(code, 200);
    assert_eq!(names(&alerts), ["DiskFull/a", "Load/b"]);
    let disk = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "DiskFull")
        .unwrap();
    // The empty label is dropped, and the fingerprint is that of the remaining labels.
    assert_eq!(
        disk["labels"],
        json!({"alertname": "DiskFull", "host": "a"})
    );
    assert_eq!(disk["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(disk["status"]["state"], "active");
    assert_eq!(disk["receivers"], json!([{"name": "hook"}]));
    // No endsAt: now + resolve_timeout (5m by default).
    let ends = chrono::DateTime::parse_from_rfc3339(disk["endsAt"].as_str().unwrap()).unwrap();
    let left = ends.signed_duration_since(Utc::now()).num_seconds();
    assert!((280..=300).contains(&left), "endsAt {left}s ahead");
    // Not JSON at all, and not a list.
    let r = s
        .client
        .post(s.url("/api/v2/alerts"))
        .body("{nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, _) = post(&s, "/api/v2/alerts", &json!({"labels": {"a": "b"}}));
    assert_eq!(code, 400);
    let m = s.metrics();
    assert_eq!(metric(&m, "alertd_api_alerts_invalid_total"), 4.0);
    assert_eq!(metric(&m, "alertd_api_alerts_received_total"), 2.0);
}

#[test]
fn alert_filters_groups_status_and_receivers() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = server(&hook);
    let (code, _) = post(
        &s,
        "/api/v2/alerts",
        &json!([
            {"labels": {"alertname": "NodeDown", "host": "n1", "severity": "critical"}},
            {"labels": {"alertname": "DiskFull", "host": "n1"}},
            {"labels": {"alertname": "DiskFull", "host": "n2"}},
            {"labels": {"alertname": "Load", "host": "n3", "team": "muted"}},
            {"labels": {"alertname": "Gone", "host": "n4"}, "startsAt": ts(-120), "endsAt": ts(-60)},
        ]),
    );
    assert_eq!(code, 200);
    let (code, body) = post(
        &s,
        "/api/v2/silences",
        &json!({"matchers": [{"name": "host", "value": "n2", "isRegex": false}],
                "startsAt": ts(0), "endsAt": ts(3600), "createdBy": "t", "comment": "c"}),
    );
    assert_eq!(code, 200, "{body}");
    let sid = body["silenceID"].as_str().unwrap().to_string();

    // Resolved alerts are not listed.
    let (_, all) = get(&s, "/api/v2/alerts");
    assert_eq!(
        names(&all),
        ["DiskFull/n1", "DiskFull/n2", "Load/n3", "NodeDown/n1"]
    );
    let by = |host: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["host"] == host && a["labels"]["alertname"] != "NodeDown")
            .unwrap()
            .clone()
    };
    let n1 = by("n1");
    assert_eq!(n1["status"]["state"], "suppressed");
    let node_down_fp = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "NodeDown")
        .unwrap()["fingerprint"]
        .clone();
    assert_eq!(n1["status"]["inhibitedBy"], json!([node_down_fp]));
    assert_eq!(by("n2")["status"]["silencedBy"], json!([sid]));
    assert_eq!(by("n3")["status"]["mutedBy"], json!(["always"]));
    assert_eq!(by("n3")["status"]["state"], "suppressed");

    // State filters, as amtool sends them.
    let (_, active) = get(
        &s,
        "/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=false",
    );
    assert_eq!(names(&active), ["Load/n3", "NodeDown/n1"]);
    let (_, suppressed) = get(&s, "/api/v2/alerts?active=false");
    assert_eq!(
        names(&suppressed),
        ["DiskFull/n1", "DiskFull/n2", "Load/n3"]
    );
    let (_, no_silenced) = get(&s, "/api/v2/alerts?silenced=false");
    assert_eq!(
        names(&no_silenced),
        ["DiskFull/n1", "Load/n3", "NodeDown/n1"]
    );
    let (_, no_inhibited) = get(&s, "/api/v2/alerts?inhibited=false");
    assert_eq!(
        names(&no_inhibited),
        ["DiskFull/n2", "Load/n3", "NodeDown/n1"]
    );
    // Label filters (repeated), one matcher or a list each.
    let (_, f) = get(
        &s,
        "/api/v2/alerts?filter=alertname%3DDiskFull&filter=host%3D~%22n%5B12%5D%22",
    );
    assert_eq!(names(&f), ["DiskFull/n1", "DiskFull/n2"]);
    let (_, f) = get(&s, "/api/v2/alerts?filter=%7Bhost!%3D%22n1%22%7D");
    assert_eq!(names(&f), ["DiskFull/n2", "Load/n3"]);
    // Receiver regex, anchored.
    let (_, f) = get(&s, "/api/v2/alerts?receiver=pag.*");
    assert_eq!(names(&f), ["NodeDown/n1"]);
    let (_, f) = get(&s, "/api/v2/alerts?receiver=pag");
    assert_eq!(names(&f), Vec::<String>::new());
    // Bad parameters name the problem.
    let (code, body) = get(&s, "/api/v2/alerts?filter=host%3D~%22(%22");
    assert_eq!(code, 400);
    assert!(
        body.as_str().unwrap().starts_with("filter: bad matcher"),
        "{body}"
    );
    let (code, body) = get(&s, "/api/v2/alerts?active=maybe");
    assert_eq!(code, 400);
    assert!(body.as_str().unwrap().contains("active: 'maybe'"), "{body}");
    let (code, body) = get(&s, "/api/v2/alerts?receiver=(");
    assert_eq!(code, 400);
    assert!(body.as_str().unwrap().starts_with("receiver:"), "{body}");

    // Groups: by receiver and group_by labels.
    let (code, groups) = get(&s, "/api/v2/alerts/groups");
    assert_eq!(code, 200);
    let mut seen: Vec<(String, String, usize)> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["receiver"]["name"].as_str().unwrap().to_string(),
                g["labels"]["alertname"].as_str().unwrap().to_string(),
                g["alerts"].as_array().unwrap().len(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("hook".to_string(), "DiskFull".to_string(), 2),
            ("hook".to_string(), "Load".to_string(), 1),
            ("pager".to_string(), "NodeDown".to_string(), 1),
        ]
    );
    let (_, groups) = get(&s, "/api/v2/alerts/groups?receiver=pager");
    assert_eq!(groups.as_array().unwrap().len(), 1);
    let (_, groups) = get(
        &s,
        "/api/v2/alerts/groups?silenced=false&inhibited=false&filter=alertname%3DDiskFull",
    );
    assert_eq!(groups.as_array().unwrap().len(), 0);

    let (code, st) = get(&s, "/api/v2/status");
    assert_eq!(code, 200);
    assert_eq!(st["cluster"]["status"], "disabled");
    assert!(st["versionInfo"]["version"].is_string());
    let original = st["config"]["original"].as_str().unwrap();
    assert!(original.contains("receiver: \"pager\""), "{original}");
    assert!(
        !original.contains(&hook.addr),
        "receiver settings must not leak: {original}"
    );
    chrono::DateTime::parse_from_rfc3339(st["uptime"].as_str().unwrap()).unwrap();
    let (code, r) = get(&s, "/api/v2/receivers");
    assert_eq!(code, 200);
    assert_eq!(r, json!([{"name": "hook"}, {"name": "pager"}]));
}

#[test]
fn silences_validate_update_in_place_or_replace_and_expire() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = server(&hook);
    let silence = |matchers: Value, start: i64, end: i64| {
        json!({"matchers": matchers, "startsAt": ts(start), "endsAt": ts(end),
               "createdBy": "ops", "comment": "why"})
    };
    let m =
        |name: &str, value: &str, re: bool| json!({"name": name, "value": value, "isRegex": re});
    let bad = [
        (
            silence(json!([]), 0, 60),
            "matchers: at least one matcher required",
        ),
        (
            silence(json!([m("host", "", false)]), 0, 60),
            "at least one matcher must not match the empty string",
        ),
        (
            silence(json!([m("host", ".*", true)]), 0, 60),
            "at least one matcher must not match the empty string",
        ),
        (silence(json!([m("host", "(", true)]), 0, 60), "matchers[0]"),
        (
            silence(json!([m("bad-name", "x", false)]), 0, 60),
            "matchers[0].name",
        ),
        (
            silence(json!([m("host", "a", false)]), 60, 30),
            "start time must be before end time",
        ),
        (
            silence(json!([m("host", "a", false)]), -120, -60),
            "end time can't be in the past",
        ),
    ];
    for (body, want) in bad {
        let (code, got) = post(&s, "/api/v2/silences", &body);
        assert_eq!(code, 400, "{body}");
        assert!(got.as_str().unwrap().contains(want), "{want} not in {got}");
    }
    let (code, _) = post(
        &s,
        "/api/v2/silences",
        &json!({"matchers": [m("host", "a", false)], "startsAt": ts(0)}),
    );
    assert_eq!(code, 400, "endsAt is required");

    // Create (a start in the past becomes now), then update in place: same matchers, same start.
    let (code, body) = post(
        &s,
        "/api/v2/silences",
        &silence(json!([m("host", "a", false)]), -30, 600),
    );
    assert_eq!(code, 200);
    let id = body["silenceID"].as_str().unwrap().to_string();
    let (code, first) = get(&s, &format!("/api/v2/silence/{id}"));
    assert_eq!(code, 200);
    assert_eq!(first["status"]["state"], "active");
    let mut update = first.clone();
    update["endsAt"] = json!(ts(1200));
    update["comment"] = json!("longer");
    let (code, body) = post(&s, "/api/v2/silences", &update);
    assert_eq!(code, 200);
    assert_eq!(
        body["silenceID"],
        json!(id),
        "same matchers and start: updated in place"
    );
    let (_, now) = get(&s, &format!("/api/v2/silence/{id}"));
    assert_eq!(now["comment"], "longer");
    // Other matchers: the old one expires and a new id is returned.
    let mut change = now.clone();
    change["matchers"] = json!([m("host", "b", false)]);
    let (code, body) = post(&s, "/api/v2/silences", &change);
    assert_eq!(code, 200);
    let new_id = body["silenceID"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    let (_, old) = get(&s, &format!("/api/v2/silence/{id}"));
    assert_eq!(old["status"]["state"], "expired");
    // A pending silence.
    let (_, body) = post(
        &s,
        "/api/v2/silences",
        &silence(json!([m("host", "c", false)]), 600, 1200),
    );
    let pending = body["silenceID"].as_str().unwrap().to_string();

    // Listing: active first, then pending, then expired; state and label filters.
    let (_, list) = get(&s, "/api/v2/silences");
    let order: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [new_id.as_str(), pending.as_str(), id.as_str()]);
    let (_, list) = get(&s, "/api/v2/silences?expired=false&pending=false");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = get(&s, "/api/v2/silences?filter=host%3Dc");
    assert_eq!(list[0]["id"], json!(pending));
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Unknown ids: 404 for get, update and delete.
    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(get(&s, &format!("/api/v2/silence/{unknown}")).0, 404);
    let mut ghost = silence(json!([m("host", "a", false)]), 0, 60);
    ghost["id"] = json!(unknown);
    assert_eq!(post(&s, "/api/v2/silences", &ghost).0, 404);
    let del = |id: &str| {
        s.client
            .delete(s.url(&format!("/api/v2/silence/{id}")))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(del(unknown), 404);
    // Expiring is idempotent; a pending silence expires too.
    assert_eq!(del(&new_id), 200);
    assert_eq!(del(&new_id), 200);
    assert_eq!(del(&pending), 200);
    let (_, list) = get(&s, "/api/v2/silences?expired=false");
    assert_eq!(list, json!([]));
}

const TOKENS: &str = r#"
[[auth.tokens]]
name = "prometheus"
token = "prom-write-token"
scopes = ["write"]

[[auth.tokens]]
name = "oncall"
token = "oncall-admin-token"
scopes = ["admin"]
"#;

/// Runs amtool against the server and returns its standard output.
fn amtool(s: &Server, args: &[&str]) -> String {
    amtool_with(s, &[], args)
}

/// Runs amtool with extra global flags.
fn amtool_with(s: &Server, global: &[&str], args: &[&str]) -> String {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", s.base))
        .args(global)
        .args(args)
        .output()
        .expect("amtool is installed (scripts/deps/prometheus.sh)");
    assert!(
        out.status.success(),
        "amtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn amtool_queries_alerts_and_adds_queries_and_expires_silences() {
    let hook = Receiver::start(vec![200]);
    let (_tmp, s) = server(&hook);
    let (code, _) = post(
        &s,
        "/api/v2/alerts",
        &json!([
            {"labels": {"alertname": "DiskFull", "host": "web1"}, "annotations": {"summary": "disk full on web1"}},
            {"labels": {"alertname": "DiskFull", "host": "web2"}},
            {"labels": {"alertname": "HighLoad", "host": "db1"}},
        ]),
    );
    assert_eq!(code, 200);

    let out = amtool(&s, &["alert", "query"]);
    assert_eq!(out.matches("DiskFull").count(), 2, "{out}");
    assert!(
        out.contains("HighLoad") && out.contains("disk full on web1"),
        "{out}"
    );
    // A bare argument is an alertname; matchers work as with Alertmanager.
    let out = amtool(&s, &["alert", "query", "HighLoad"]);
    assert!(
        out.contains("HighLoad") && !out.contains("DiskFull"),
        "{out}"
    );
    let out = amtool(&s, &["-o", "extended", "alert", "query", "host=~web.*"]);
    assert!(
        out.contains("host=\"web1\"") && out.contains("host=\"web2\""),
        "{out}"
    );
    assert!(!out.contains("db1"), "{out}");

    let id = amtool(
        &s,
        &[
            "silence",
            "add",
            "host=web1",
            "--duration=2h",
            "--comment=disk swap",
            "--author=ops",
        ],
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 36, "amtool prints the new silence id: {id}");
    let out = amtool(&s, &["silence", "query"]);
    assert!(
        out.contains(&id) && out.contains("disk swap") && out.contains("ops"),
        "{out}"
    );
    let out = amtool(&s, &["silence", "query", "-q", "host=web1"]);
    assert_eq!(out.trim(), id);
    // The API agrees: 2 h long, active, muting web1.
    let (_, sil) = get(&s, &format!("/api/v2/silence/{id}"));
    assert_eq!(sil["status"]["state"], "active");
    let start = chrono::DateTime::parse_from_rfc3339(sil["startsAt"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(sil["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        (end - start - chrono::Duration::hours(2))
            .num_seconds()
            .abs()
            <= 2
    );

    // The silenced alert leaves the default view and shows with --silenced.
    let out = amtool(&s, &["alert", "query"]);
    assert_eq!(out.matches("DiskFull").count(), 1, "{out}");
    let out = amtool(&s, &["alert", "query", "--silenced"]);
    assert!(out.contains("suppressed"), "{out}");

    amtool(&s, &["silence", "expire", &id]);
    let out = amtool(&s, &["silence", "query"]);
    assert!(
        !out.contains(&id),
        "expired silences are hidden by default: {out}"
    );
    let out = amtool(&s, &["silence", "query", "--expired"]);
    assert!(out.contains(&id), "{out}");
    let out = amtool(&s, &["alert", "query"]);
    assert_eq!(out.matches("DiskFull").count(), 2, "{out}");
}

#[test]
fn amtool_authenticates_with_its_http_config_file() {
    let hook = Receiver::start(vec![200]);
    let (tmp, s) = server_with(&hook, TOKENS, Some("oncall-admin-token"));
    let cfg = tmp.path().join("amtool-http.yml");
    std::fs::write(&cfg, "authorization:\n  credentials: oncall-admin-token\n").unwrap();
    let flag = format!("--http.config.file={}", cfg.display());
    let id = amtool_with(
        &s,
        &[&flag],
        &[
            "silence",
            "add",
            "host=web1",
            "--duration=1h",
            "--comment=planned",
            "--author=ops",
        ],
    );
    let out = amtool_with(&s, &[&flag], &["silence", "query", "-q"]);
    assert_eq!(out.trim(), id.trim());
    // Without the token amtool is refused.
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", s.base))
        .args(["silence", "query"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn prometheus_delivers_its_alerts_through_alertd_to_a_webhook() {
    let hook = Receiver::start(vec![200]);
    // Secured as in production: Prometheus holds a write-only token.
    let (tmp, s) = server_with(&hook, TOKENS, Some("oncall-admin-token"));
    let dir = tmp.path().join("prom");
    std::fs::create_dir_all(&dir).unwrap();
    let target = s.base.trim_start_matches("http://");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             alerting:\n  alertmanagers:\n  - api_version: v2\n    authorization:\n      credentials: prom-write-token\n    static_configs:\n    - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n- name: always\n  interval: 1s\n  rules:\n  - alert: AlwaysFiring\n    expr: vector(1)\n    labels:\n      severity: warning\n    annotations:\n      summary: it always fires\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut prom = Command::new("prometheus")
        .current_dir(&dir)
        .arg("--config.file=prometheus.yml")
        .arg("--storage.tsdb.path=data")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Alerts evaluated before the alertmanager list is discovered are dropped; resend soon.
        .arg("--rules.alert.resend-delay=1s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/deps/prometheus.sh)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let reqs = hook.requests.lock().unwrap().clone();
        if let Some((_, body)) = reqs.iter().find(|(h, _)| h.starts_with("POST /hook")) {
            break Some(body.clone());
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    let body = found.expect("Prometheus's alert reached the webhook within 60 s");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "firing");
    let a = &v["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "AlwaysFiring");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["annotations"]["summary"], "it always fires");
    assert!(
        a["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/graph?g0.expr="),
        "{a}"
    );
    // The API shows it too, with the end Prometheus gave it (in the future).
    let (_, alerts) = get(&s, "/api/v2/alerts?filter=alertname%3DAlwaysFiring");
    assert_eq!(alerts.as_array().unwrap().len(), 1);
}
