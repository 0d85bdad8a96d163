//! Passive checks from the clients Nagios users run, against the real binary: the real
//! `send_nsca` (Debian's nsca-client, installed by `scripts/test`) with encryption 0 and 1 and a
//! wrong password, and NRDP requests as `send_nrdp.py` posts them (XML and JSON), with tokens.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, metric_sum, workdir};

fn check(s: &Server, host: &str, service: &str) -> Option<Value> {
    s.json("/api/v1/checks")["items"]
        .as_array()?
        .iter()
        .find(|c| c["host"] == host && c["service"] == service)
        .cloned()
}

fn wait_check(s: &Server, host: &str, service: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = check(s, host, service) {
            return c;
        }
        assert!(Instant::now() < deadline, "no check {host}/{service}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `send_nsca` with a config file; results separated by ETB (0x17), as send_nsca 2.10
/// reads them.
fn send_nsca(port: u16, cfg: &str, lines: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("send_nsca.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new("send_nsca")
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-to",
            "10",
            "-c",
        ])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("send_nsca is installed (scripts/deps/nsca.sh)");
    let input = lines.join("\u{17}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn send_nsca_with_and_without_encryption_and_a_wrong_password() {
    for (encryption, password) in [(0, None), (1, Some("s3cret-pass"))] {
        let (_tmp, dir) = workdir(&[]);
        let port = support::free_port();
        let mut cfg =
            format!("[checks.nsca]\nlisten = \"127.0.0.1:{port}\"\nencryption = {encryption}\n");
        if let Some(p) = password {
            cfg.push_str(&format!("password = \"{p}\"\n"));
        }
        let s = Server::start(&dir, &cfg);
        let mut client = format!("encryption_method={encryption}\n");
        if let Some(p) = password {
            client.push_str(&format!("password={p}\n"));
        }
        let out = send_nsca(
            port,
            &client,
            &[
                "db1\tdisk\t2\tDISK CRITICAL - /var 97%|var=97%;90;95\n",
                "db1\t0\tPING OK - rta 0.1ms\n",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = wait_check(&s, "db1", "disk");
        assert_eq!(c["state"], "CRITICAL");
        assert_eq!(c["summary"], "DISK CRITICAL - /var 97%");
        assert_eq!(c["perfdata"], "var=97%;90;95");
        let host = s.json("/api/v1/checks")["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["service"].is_null())
            .cloned()
            .expect("the host check");
        assert_eq!(host["state"], "UP");
        // An alert through the alert manager.
        let alerts = s.json("/api/v2/alerts?filter=host%3Ddb1");
        assert_eq!(alerts[0]["labels"]["alertname"], "disk");
        // Counters reach /metrics within a second.
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric_sum(&s.metrics(), "alertd_nsca_packets_total", "accepted") != 2.0 {
            assert!(Instant::now() < deadline, "{}", s.metrics());
            std::thread::sleep(Duration::from_millis(100));
        }

        if encryption == 1 {
            // A client with the wrong password: its packet decrypts to garbage (a bad version
            // or CRC), is counted, and nothing is applied.
            // (send_nsca cannot tell: its exit status says nothing about the server's verdict.)
            send_nsca(
                port,
                "encryption_method=1\npassword=not-the-password\n",
                &["db2\tdisk\t2\tDISK CRITICAL\n"],
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while metric_sum(&s.metrics(), "alertd_nsca_packets_total", "result=\"bad_") < 1.0 {
                assert!(Instant::now() < deadline, "the bad packet was not counted");
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(200));
            assert!(check(&s, "db2", "disk").is_none());
        }
    }
}

/// The form `send_nrdp.py` posts.
fn nrdp(s: &Server, fields: &[(&str, &str)]) -> (u16, String) {
    let r = s.client.post(s.url("/nrdp/")).form(fields).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn nrdp_xml_and_json_with_tokens() {
    let (_tmp, dir) = workdir(&[]);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer nrdp-read-token"),
    );
    let client = reqwest::blocking::Client::builder()
        .default_headers(h)
        .build()
        .unwrap();
    let s = Server::start_with(
        &dir,
        "[[auth.tokens]]\nname = \"nagios\"\ntoken = \"nrdp-write-token\"\nscopes = [\"write\"]\n\
         [[auth.tokens]]\nname = \"viewer\"\ntoken = \"nrdp-read-token\"\nscopes = [\"read\"]\n",
        "http",
        client,
    );
    let xml = "<?xml version='1.0'?>\n<checkresults>\n\
        <checkresult type='service' checktype='1'><hostname>web3</hostname><servicename>http</servicename><state>1</state><output>HTTP WARNING: slow|time=2.5s;2;5\\nretried twice</output></checkresult>\n\
        <checkresult type='host' checktype='1'><hostname>web3</hostname><state>0</state><output>UP</output></checkresult>\n\
        </checkresults>";
    let (code, body) = nrdp(
        &s,
        &[
            ("token", "nrdp-write-token"),
            ("cmd", "submitcheck"),
            ("XMLDATA", xml),
        ],
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("<status>0</status>") && body.contains("2 checks processed"),
        "{body}"
    );
    let c = wait_check(&s, "web3", "http");
    assert_eq!(c["state"], "WARNING");
    assert_eq!(c["long_output"], "retried twice");

    let js = json!({"checkresults": [
        {"checkresult": {"type": "service", "checktype": "1"},
         "hostname": "web4", "servicename": "load", "state": "2", "output": "LOAD CRITICAL"}
    ]})
    .to_string();
    let (code, body) = nrdp(
        &s,
        &[
            ("token", "nrdp-write-token"),
            ("cmd", "submitcheck"),
            ("JSONDATA", &js),
        ],
    );
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["status"], 0, "{body}");
    assert_eq!(wait_check(&s, "web4", "load")["state"], "CRITICAL");

    // Tokens: missing, unknown, without the write scope; bad data.
    for (fields, want) in [
        (vec![("cmd", "submitcheck"), ("XMLDATA", xml)], "NO TOKEN"),
        (
            vec![("token", "guess"), ("cmd", "submitcheck"), ("XMLDATA", xml)],
            "BAD TOKEN",
        ),
        (
            vec![
                ("token", "nrdp-read-token"),
                ("cmd", "submitcheck"),
                ("XMLDATA", xml),
            ],
            "BAD TOKEN",
        ),
        (
            vec![
                ("token", "nrdp-write-token"),
                ("cmd", "submitcheck"),
                ("XMLDATA", "<checkresults><oops"),
            ],
            "BAD XML",
        ),
        (
            vec![
                ("token", "nrdp-write-token"),
                ("cmd", "submitcheck"),
                ("JSONDATA", "{"),
            ],
            "BAD JSON",
        ),
    ] {
        let (code, body) = nrdp(&s, &fields);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(want) && body.contains("-1"), "{want}: {body}");
    }
    let (_, body) = nrdp(&s, &[("cmd", "hello")]);
    assert!(body.contains("NRDP") || body.contains("nrdp"), "{body}");
    assert!(metric_sum(&s.metrics(), "alertd_auth_failures_total", "") >= 2.0);
}
