//! Access control and transport against the real binary: every endpoint with no token, an
//! unknown token, a token without the scope and one with it; the ways InfluxDB clients send
//! credentials; refusals counted on `/metrics`; HTTPS with a self-signed certificate; the
//! connection cap, idle and request timeouts.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::json;
use support::{Server, metric_sum, workdir};

const WRITE: &str = "write-token-0123";
const READ: &str = "read-token-0123";
const ADMIN: &str = "admin-token-0123";

const AUTH: &str = r#"
[[auth.tokens]]
name = "telegraf"
token = "write-token-0123"
scopes = ["write"]

[[auth.tokens]]
name = "grafana"
token = "read-token-0123"
scopes = ["read"]

[[auth.tokens]]
name = "ops"
token = "admin-token-0123"
scopes = ["admin"]
"#;

fn client_with(token: &str) -> Client {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    Client::builder()
        .default_headers(h)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn plain() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Which token an endpoint needs, and what it answers to that token.
struct Case {
    method: &'static str,
    path: String,
    body: String,
    right: &'static str,
    wrong_scope: &'static str,
    ok: u16,
}

fn send(c: &Client, base: &str, case: &Case, token: Option<&str>) -> u16 {
    let url = format!("{base}{}", case.path);
    let mut rb: RequestBuilder = match case.method {
        "GET" => c.get(&url),
        "POST" => c.post(&url).body(case.body.clone()),
        "DELETE" => c.delete(&url),
        m => panic!("{m}"),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().unwrap().status().as_u16()
}

#[test]
fn every_endpoint_refuses_missing_unknown_and_unscoped_tokens() {
    let (_tmp, dir) = workdir(&[]);
    let s = Server::start_with(&dir, AUTH, "http", client_with(READ));
    // A silence to read and expire.
    let sid = client_with(ADMIN)
        .post(s.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "host", "value": "a", "isRegex": false}],
            "startsAt": chrono::Utc::now().to_rfc3339(),
            "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "t", "comment": "c"
        }))
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let silence_body = json!({
        "matchers": [{"name": "host", "value": "b", "isRegex": false}],
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "t", "comment": "c"
    })
    .to_string();
    let c = |method, path: &str, body: &str, right, wrong_scope, ok| Case {
        method,
        path: path.to_string(),
        body: body.to_string(),
        right,
        wrong_scope,
        ok,
    };
    let cases = [
        c(
            "POST",
            "/write?db=telegraf",
            "cpu usage=1",
            WRITE,
            READ,
            204,
        ),
        c(
            "POST",
            "/api/v2/write?bucket=telegraf",
            "cpu usage=1",
            WRITE,
            ADMIN,
            204,
        ),
        c("POST", "/api/v1/prom/write", "\u{0}", WRITE, READ, 204),
        c("POST", "/api/v1/write", "\u{0}", WRITE, ADMIN, 204),
        c(
            "POST",
            "/query?q=CREATE+DATABASE+telegraf",
            "",
            WRITE,
            READ,
            200,
        ),
        c("GET", "/ping", "", READ, "", 204),
        c("GET", "/metrics", "", READ, WRITE, 200),
        c("GET", "/-/ready", "", READ, WRITE, 200),
        c("POST", "/-/reload", "", ADMIN, READ, 200),
        c("GET", "/api/v1/rules", "", READ, WRITE, 200),
        c("GET", "/api/v1/alerts", "", READ, WRITE, 200),
        c(
            "GET",
            "/api/v1/alerts/0000000000000001",
            "",
            READ,
            WRITE,
            404,
        ),
        c(
            "POST",
            "/api/v1/alerts/0000000000000001/ack",
            "",
            ADMIN,
            READ,
            404,
        ),
        c("GET", "/api/v1/rules/none", "", READ, WRITE, 404),
        c("GET", "/api/v1/events", "", READ, WRITE, 200),
        c("GET", "/api/v1/checks", "", READ, WRITE, 200),
        c("GET", "/api/v1/hosts", "", READ, WRITE, 200),
        c("DELETE", "/api/v1/hosts/nowhere", "", ADMIN, READ, 404),
        c(
            "POST",
            "/api/v1/checks",
            r#"{"host":"h","status":0}"#,
            WRITE,
            ADMIN,
            200,
        ),
        c("GET", "/api/v1/notifications", "", READ, WRITE, 200),
        c("GET", "/api/v1/silences", "", READ, WRITE, 200),
        c("GET", "/api/v1/record?duration=1s", "", READ, WRITE, 200),
        c(
            "POST",
            "/api/v2/alerts",
            r#"[{"labels":{"alertname":"A"}}]"#,
            WRITE,
            ADMIN,
            200,
        ),
        c("GET", "/api/v2/alerts", "", READ, WRITE, 200),
        c("GET", "/api/v2/alerts/groups", "", ADMIN, WRITE, 200),
        c("GET", "/api/v2/status", "", READ, WRITE, 200),
        c("GET", "/api/v2/receivers", "", READ, WRITE, 200),
        c("GET", "/api/v2/silences", "", READ, WRITE, 200),
        c("POST", "/api/v2/silences", &silence_body, ADMIN, READ, 200),
        c(
            "GET",
            &format!("/api/v2/silence/{sid}"),
            "",
            READ,
            WRITE,
            200,
        ),
        c(
            "DELETE",
            &format!("/api/v2/silence/{sid}"),
            "",
            ADMIN,
            READ,
            200,
        ),
    ];
    let p = plain();
    for case in &cases {
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(send(&p, &s.base, case, None), 401, "{what} without a token");
        assert_eq!(
            send(&p, &s.base, case, Some("not-a-token-at-all")),
            401,
            "{what} with an unknown token"
        );
        if !case.wrong_scope.is_empty() {
            assert_eq!(
                send(&p, &s.base, case, Some(case.wrong_scope)),
                403,
                "{what} with a token without the scope"
            );
        }
        assert_eq!(
            send(&p, &s.base, case, Some(case.right)),
            case.ok,
            "{what} with the right token"
        );
    }
    // Liveness stays open.
    assert_eq!(p.get(s.url("/-/healthy")).send().unwrap().status(), 200);
    // 401 says how to authenticate.
    let r = p.get(s.url("/api/v2/alerts")).send().unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"alertd\"");
    assert!(r.text().unwrap().contains("authentication required"));
    let r = p
        .get(s.url("/api/v2/alerts"))
        .bearer_auth(WRITE)
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("lacks the 'read' scope"));

    let m = s.metrics();
    let n = cases.len() as f64;
    assert_eq!(
        metric_sum(&m, "alertd_auth_failures_total", "missing"),
        n + 1.0
    );
    assert_eq!(metric_sum(&m, "alertd_auth_failures_total", "invalid"), n);
    assert_eq!(
        metric_sum(&m, "alertd_auth_failures_total", "scope"),
        (cases.iter().filter(|c| !c.wrong_scope.is_empty()).count() + 1) as f64
    );
}

#[test]
fn influxdb_clients_send_their_token_as_telegraf_does() {
    let (_tmp, dir) = workdir(&[]);
    let s = Server::start_with(&dir, AUTH, "http", client_with(READ));
    let p = plain();
    // outputs.influxdb with username/password: Basic auth, or u/p query parameters.
    let r = p
        .post(s.url("/write?db=telegraf"))
        .basic_auth("telegraf", Some(WRITE))
        .body("cpu usage=1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = p
        .post(s.url(&format!("/write?db=telegraf&u=telegraf&p={WRITE}")))
        .body("cpu usage=1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = p
        .post(s.url("/write?db=telegraf&u=telegraf&p=wrong-password"))
        .body("cpu usage=1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // outputs.influxdb_v2: Authorization: Token.
    let r = p
        .post(s.url("/api/v2/write?org=o&bucket=telegraf"))
        .header("Authorization", format!("Token {WRITE}"))
        .body("cpu usage=1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // The real Python client library, with username and password.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "from influxdb import InfluxDBClient\n\
             c = InfluxDBClient(host='127.0.0.1', port={port}, username='telegraf', password='{WRITE}', database='telegraf')\n\
             c.create_database('telegraf')\n\
             assert c.write_points(['mem used=1'], protocol='line')\n\
             bad = InfluxDBClient(host='127.0.0.1', port={port}, username='telegraf', password='nope', database='telegraf')\n\
             try:\n    bad.write_points(['mem used=1'], protocol='line')\n    raise SystemExit('accepted a wrong password')\n\
             except Exception as e:\n    assert '401' in str(e) or 'invalid token' in str(e), e\n",
            port = s.base.rsplit(':').next().unwrap(),
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let c = dir.join("alertd.crt");
    let k = dir.join("alertd.key");
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k, ck.cert.pem().into_bytes())
}

#[test]
fn https_with_a_self_signed_certificate_and_tokens() {
    let (_tmp, dir) = workdir(&[]);
    let (cert, key, pem) = tls_files(&dir);
    let root = reqwest::Certificate::from_pem(&pem).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {ADMIN}")).unwrap(),
    );
    let client = Client::builder()
        .add_root_certificate(root.clone())
        .default_headers(h)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let config = format!(
        "[http]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{AUTH}",
        cert.display(),
        key.display()
    );
    let s = Server::start_with(&dir, &config, "https", client);
    let r = s
        .client
        .post(s.url("/api/v2/alerts"))
        .bearer_auth(WRITE)
        .json(&json!([{"labels": {"alertname": "OverTls"}}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let alerts = s.json("/api/v2/alerts");
    assert_eq!(alerts[0]["labels"]["alertname"], "OverTls");
    // The token is still required over TLS.
    let anon = Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    assert_eq!(
        anon.get(s.url("/api/v2/alerts")).send().unwrap().status(),
        401
    );
    // A client that does not trust the certificate cannot connect.
    let untrusting = Client::builder().build().unwrap();
    assert!(untrusting.get(s.url("/-/healthy")).send().is_err());
    // Plain HTTP to the TLS port gets no HTTP answer, and counts as a failed handshake.
    let plain_url = s.url("/-/healthy").replacen("https://", "http://", 1);
    assert!(plain().get(plain_url).send().is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = s.metrics();
        if support::metric(&m, "alertd_tls_handshake_failures_total") >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "handshake failures not counted:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_tls_and_auth_settings_stop_the_start_with_a_clear_error() {
    let (_tmp, dir) = workdir(&[]);
    for (config, want) in [
        (
            "[http]\ntls_cert = \"missing.crt\"\ntls_key = \"missing.key\"\n",
            "tls_cert missing.crt",
        ),
        (
            "[http]\ntls_cert = \"a.crt\"\n",
            "tls_cert and tls_key: give both or neither",
        ),
        (
            "[[auth.tokens]]\nname = \"x\"\ntoken = \"short\"\nscopes = [\"read\"]\n",
            "token must be at least 8 characters",
        ),
        (
            "[[auth.tokens]]\nname = \"x\"\ntoken = \"long-enough-token\"\nscopes = [\"root\"]\n",
            "unknown variant `root`",
        ),
    ] {
        std::fs::write(
            dir.join("bad.toml"),
            format!("listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{config}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
            .current_dir(&dir)
            .args(["run", "--config", "bad.toml"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want} not in: {err}");
    }
}

#[test]
fn connection_cap_idle_and_request_timeouts() {
    let (_tmp, dir) = workdir(&[]);
    let s = Server::start(
        &dir,
        "[http]\nmax_connections = 2\nidle_timeout = \"1s\"\nrequest_timeout = \"1s\"\n",
    );
    let addr = s.base.trim_start_matches("http://").to_string();
    // Two clients connect and send nothing: they hold both slots.
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr.as_str()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third request waits for a slot, and gets one once the idle ones are closed.
    let r = plain().get(s.url("/-/healthy")).send().unwrap();
    assert_eq!(r.status(), 200);
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        // Closed by the server: end of stream (or a reset), not still open when the read
        // times out.
        match c.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "the idle connection sent data"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the idle connection is still open: {e}"
            ),
        }
    }
    // A request whose body never finishes gets 408 after request_timeout, while the client
    // keeps the connection busy with a trickle of bytes (so the idle timeout does not fire).
    let mut c = TcpStream::connect(addr.as_str()).unwrap();
    c.write_all(
        b"POST /write?db=telegraf HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ncpu usage=1\n",
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let _ = c.write_all(b"#");
        let mut buf = [0u8; 512];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(support::metric(&s.metrics(), "alertd_http_connections") >= 1.0);
}

/// The log lines of `alertd run` up to the one saying it listens.
fn startup_log(dir: &std::path::Path, config: &str) -> Vec<String> {
    use std::io::BufRead;
    std::fs::write(dir.join("bind.toml"), config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
        .current_dir(dir)
        .args(["run", "--config", "bind.toml"])
        .env("ALERTD_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let done = line.contains("alertd listening");
        lines.push(line);
        if done || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn listening_beyond_loopback_without_tokens_warns() {
    let (_tmp, dir) = workdir(&[]);
    let open = startup_log(
        &dir,
        "listen = \"0.0.0.0:0\"\ndata_dir = \"data\"\nrules_dir = \"rules\"\n",
    );
    assert!(
        open.last().unwrap().contains("alertd listening"),
        "{open:?}"
    );
    assert!(
        open.iter()
            .any(|l| l.contains("WARN") && l.contains("no [auth] tokens")),
        "{open:?}"
    );
    let secured = startup_log(
        &dir,
        &format!("listen = \"0.0.0.0:0\"\ndata_dir = \"data\"\nrules_dir = \"rules\"\n{AUTH}"),
    );
    assert!(
        secured.last().unwrap().contains("alertd listening"),
        "{secured:?}"
    );
    assert!(
        !secured.iter().any(|l| l.contains("no [auth] tokens")),
        "{secured:?}"
    );
    let local = startup_log(
        &dir,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nrules_dir = \"rules\"\n",
    );
    assert!(
        !local.iter().any(|l| l.contains("no [auth] tokens")),
        "{local:?}"
    );
}
