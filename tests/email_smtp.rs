//! The e-mail receiver against a real SMTP server: `tests/support/smtp_sink.py` (aiosmtpd), run
//! plain, with STARTTLS, with implicit TLS, with AUTH, and answering with error codes. Needs
//! python3 with aiosmtpd (`scripts/deps/smtp.sh` installs it); without them these tests fail.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alertd::manager::labels::{LabelSet, fingerprint, label_set};
use alertd::receivers::Outcome;
use alertd::receivers::email::{EmailConfig, EmailReceiver, RenderedEmail, TlsMode};
use alertd::receivers::notification::{AlertStatus, Notification, NotifiedAlert};
use chrono::DateTime;
use serde_json::Value as Json;

/// A running `smtp_sink.py`; killed on drop.
struct Sink {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Sink {
    fn start(dir: &Path, args: &[&str]) -> Sink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let out = dir.join(format!("sink-{}.jsonl", rand_suffix()));
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}); the e-mail tests need python3 with aiosmtpd: run scripts/deps/smtp.sh")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "smtp_sink.py did not start (printed {line:?}, exit {status:?}); \
                 the e-mail tests need python3 with aiosmtpd: run scripts/deps/smtp.sh"
            );
        };
        Sink { child, port, out }
    }

    fn smarthost(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The messages the sink accepted so far.
    fn messages(&self) -> Vec<Json> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A self-signed certificate for localhost/127.0.0.1: (cert path, key path).
fn cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k)
}

fn config(sink: &Sink, tls: TlsMode) -> EmailConfig {
    let mut c: EmailConfig = toml::from_str(&format!(
        r#"
        to = ["Ops <ops@example.com>", "oncall@example.com"]
        from = "alertd <alertd@example.com>"
        smarthost = "{}"
        timeout = "10s"
        "#,
        sink.smarthost()
    ))
    .unwrap();
    c.tls = tls;
    c
}

fn alert(disk: &str, instance: &str) -> NotifiedAlert {
    let labels: LabelSet = label_set([
        ("alertname", "DiskFull"),
        ("instance", instance),
        ("env", "prod"),
        ("disk", disk),
    ]);
    NotifiedAlert {
        status: AlertStatus::Firing,
        fingerprint: fingerprint(&labels),
        labels,
        annotations: label_set([
            ("summary", "disk <b>almost</b> full & growing"),
            ("value", "97%"),
        ]),
        starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        ends_at: None,
        generator_url: "http://alertd.example:9092/#/rules/disk".into(),
    }
}

fn notification() -> Notification {
    Notification {
        receiver: "ops".into(),
        group_key: "{}:{alertname=\"DiskFull\", instance=\"node0003\"}".into(),
        group_labels: label_set([("alertname", "DiskFull"), ("instance", "node0003")]),
        alerts: vec![alert("sda", "node0003"), alert("sdb", "node0003")],
        truncated: 0,
        external_url: "http://alertd.example:9092".into(),
        reason: "first notification".into(),
    }
}

fn s<'a>(j: &'a Json, key: &str) -> &'a str {
    j[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {j}"))
}

fn header<'a>(j: &'a Json, name: &str) -> &'a str {
    j["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("header {name} missing in {}", j["headers"]))
}

#[tokio::test]
async fn plain_smtp_delivers_a_grouped_notification() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &[]);
    let mut cfg = config(&sink, TlsMode::None);
    cfg.headers
        .insert("X-Alert-Group".into(), "{{ .GroupLabels.instance }}".into());
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);

    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(s(m, "mail_from"), "alertd@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(m["tls"], false);
    assert!(m["auth_user"].is_null());
    assert_eq!(header(m, "From"), "alertd <alertd@example.com>");
    assert_eq!(header(m, "To"), "Ops <ops@example.com>, oncall@example.com");
    assert_eq!(header(m, "Subject"), "[FIRING:2] DiskFull node0003 (prod)");
    assert_eq!(header(m, "X-Alert-Group"), "node0003");
    let date = header(m, "Date");
    assert!(
        chrono::DateTime::parse_from_rfc2822(date).is_ok(),
        "Date {date:?}"
    );
    let id = header(m, "Message-ID");
    assert!(
        id.starts_with('<') && id.ends_with('>') && id.contains('@'),
        "{id}"
    );
    assert!(header(m, "Content-Type").starts_with("multipart/alternative"));

    let text = s(m, "text");
    for want in [
        "2 alerts for alertname=DiskFull instance=node0003",
        "[2] Firing",
        "disk = sda",
        "disk = sdb",
        "summary = disk <b>almost</b> full & growing",
        "Started: 2023-11-14T22:13:20Z",
        "Source: http://alertd.example:9092/#/rules/disk",
        "View in alertd: http://alertd.example:9092/#/alerts?receiver=ops",
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    let html = s(m, "html");
    for want in [
        "2 alerts for alertname=DiskFull instance=node0003",
        "<h3>[2] Firing</h3>",
        "<li>disk = sda</li>",
        "<li>disk = sdb</li>",
        "<li>summary = disk &lt;b&gt;almost&lt;/b&gt; full &amp; growing</li>",
        "<a href=\"http://alertd.example:9092/#/alerts?receiver=ops\">View in alertd</a>",
        "<a href=\"http://alertd.example:9092/#/rules/disk\">Source</a>",
        "Sent by alertd",
    ] {
        assert!(html.contains(want), "html lacks {want:?}:\n{html}");
    }
    assert!(!html.contains("<b>almost"));
}

#[tokio::test]
async fn starttls_with_auth_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert(dir.path(), "server");
    let sink = Sink::start(
        dir.path(),
        &[
            "--starttls",
            crt.to_str().unwrap(),
            key.to_str().unwrap(),
            "--auth",
            "alice:s3cret",
        ],
    );
    let mut cfg = config(&sink, TlsMode::Starttls);
    cfg.ca_file = Some(crt.clone());
    cfg.auth_username = Some("alice".into());
    cfg.auth_password = Some("s3cret".into());
    cfg.auth_mechanisms = Some(vec!["PLAIN".into()]);
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], true);
    assert_eq!(got[0]["auth_user"], "alice");
    assert_eq!(
        header(&got[0], "Subject"),
        "[FIRING:2] DiskFull node0003 (prod)"
    );

    // A wrong password is refused for good (535).
    cfg.auth_password = Some("wrong".into());
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    match r.send(&msg).await {
        Outcome::Failed(reason) => assert!(reason.contains("535"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn implicit_tls_with_auth_login() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert(dir.path(), "server");
    let sink = Sink::start(
        dir.path(),
        &[
            "--implicit-tls",
            crt.to_str().unwrap(),
            key.to_str().unwrap(),
            "--auth",
            "bob:pw",
        ],
    );
    let mut cfg = config(&sink, TlsMode::Implicit);
    cfg.ca_file = Some(crt);
    cfg.auth_username = Some("bob".into());
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    cfg.auth_password_file = Some(pw);
    cfg.auth_mechanisms = Some(vec!["LOGIN".into()]);
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], true);
    assert_eq!(got[0]["auth_user"], "bob");
}

#[tokio::test]
async fn untrusted_certificate_is_retried_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert(dir.path(), "server");
    let (other, _) = cert(dir.path(), "other");
    let sink = Sink::start(
        dir.path(),
        &["--starttls", crt.to_str().unwrap(), key.to_str().unwrap()],
    );
    let mut cfg = config(&sink, TlsMode::Starttls);
    cfg.ca_file = Some(other);
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    match r.send(&msg).await {
        Outcome::Retry(reason) => assert!(
            reason.to_ascii_lowercase().contains("certificate"),
            "{reason}"
        ),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert!(sink.messages().is_empty());

    // Same for implicit TLS.
    let sink = Sink::start(
        dir.path(),
        &[
            "--implicit-tls",
            crt.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
    );
    let mut cfg = config(&sink, TlsMode::Implicit);
    cfg.ca_file = Some(dir.path().join("other.crt"));
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    assert!(matches!(r.send(&msg).await, Outcome::Retry(_)));
    assert!(sink.messages().is_empty());

    // insecure_skip_verify accepts the certificate all the same.
    cfg.insecure_skip_verify = true;
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(sink.messages()[0]["tls"], true);
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &[]);
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::Starttls)).unwrap();
    let msg = r.render(&notification()).unwrap();
    assert!(matches!(r.send(&msg).await, Outcome::Retry(_)));
    assert!(sink.messages().is_empty());

    // Opportunistic falls back to plain text.
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::Opportunistic)).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);
    assert_eq!(sink.messages()[0]["tls"], false);
}

#[tokio::test]
async fn transient_451_is_retried_with_the_server_reply() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &["--reject", "451"]);
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::None)).unwrap();
    let msg = r.render(&notification()).unwrap();
    match r.send(&msg).await {
        Outcome::Retry(reason) => {
            assert!(reason.contains("451"), "{reason}");
            assert!(
                reason.contains("Recipient rejected by test sink"),
                "{reason}"
            );
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn permanent_550_fails_with_the_server_reply() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &["--reject", "550"]);
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::None)).unwrap();
    let msg = r.render(&notification()).unwrap();
    match r.send(&msg).await {
        Outcome::Failed(reason) => {
            assert!(reason.contains("550"), "{reason}");
            assert!(
                reason.contains("Recipient rejected by test sink"),
                "{reason}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }

    // Rejected after DATA: 554 fails too, 452 is retried.
    let sink = Sink::start(dir.path(), &["--reject-data", "554"]);
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::None)).unwrap();
    match r.send(&msg).await {
        Outcome::Failed(reason) => assert!(reason.contains("554"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    let sink = Sink::start(dir.path(), &["--reject-data", "452"]);
    let r = EmailReceiver::new("ops", &config(&sink, TlsMode::None)).unwrap();
    match r.send(&msg).await {
        Outcome::Retry(reason) => assert!(reason.contains("452"), "{reason}"),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_retried() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg: EmailConfig = toml::from_str(&format!(
        r#"
        to = ["ops@example.com"]
        from = "alertd@example.com"
        smarthost = "127.0.0.1:{port}"
        tls = "none"
        timeout = "5s"
        "#
    ))
    .unwrap();
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    assert!(matches!(r.send(&msg).await, Outcome::Retry(_)));
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retried() {
    // A listener that never accepts: the connection opens, no greeting ever comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg: EmailConfig = toml::from_str(&format!(
        r#"
        to = ["ops@example.com"]
        from = "alertd@example.com"
        smarthost = "127.0.0.1:{port}"
        tls = "none"
        timeout = "1s"
        "#
    ))
    .unwrap();
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(r.send(&msg).await, Outcome::Retry(_)));
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[tokio::test]
async fn header_injection_is_blocked_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &[]);
    let mut cfg = config(&sink, TlsMode::None);
    cfg.headers
        .insert("X-Instance".into(), "{{ .GroupLabels.instance }}".into());
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let evil = "x\r\nBcc: evil@example.com";
    let mut n = notification();
    n.group_labels.insert("instance".into(), evil.into());
    for a in &mut n.alerts {
        a.labels.insert("instance".into(), evil.into());
    }
    let msg = r.render(&n).unwrap();
    assert_eq!(r.send(&msg).await, Outcome::Sent);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    let names: Vec<&str> = m["header_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("bcc")),
        "{names:?}"
    );
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(header(m, "X-Instance"), "x  Bcc: evil@example.com");
    assert_eq!(
        header(m, "Subject"),
        "[FIRING:2] DiskFull x  Bcc: evil@example.com (prod)"
    );
}

#[tokio::test]
async fn a_stored_message_is_sent_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), &[]);
    let mut cfg = config(&sink, TlsMode::None);
    cfg.subject = Some("Größe {{ .CommonLabels.alertname }} ✓".into());
    let r = EmailReceiver::new("ops", &cfg).unwrap();
    let msg = r.render(&notification()).unwrap();
    let stored = serde_json::to_string(&msg).unwrap();
    // Sent later, by a receiver built anew (as after a restart).
    let back: RenderedEmail = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, msg);
    let r2 = EmailReceiver::new("ops", &cfg).unwrap();
    assert_eq!(r2.send(&back).await, Outcome::Sent);
    assert_eq!(r2.send(&back).await, Outcome::Sent);

    let got = sink.messages();
    assert_eq!(got.len(), 2);
    let norm = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
    for m in &got {
        assert_eq!(norm(s(m, "raw")), norm(&msg.message));
        assert_eq!(header(m, "Subject"), "Größe DiskFull ✓");
    }
    assert_eq!(header(&got[0], "Message-ID"), header(&got[1], "Message-ID"));
    assert_eq!(header(&got[0], "Date"), header(&got[1], "Date"));

    // A TICK handler's message: recipients overridden, text only.
    let ev = r
        .render_event(
            &["cpu-team@example.com".into()],
            "CPU high on web01",
            "cpu usage_idle=3",
            None,
        )
        .unwrap();
    let ev: RenderedEmail = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
    assert_eq!(r.send(&ev).await, Outcome::Sent);
    let got = sink.messages();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2]["rcpt_tos"],
        serde_json::json!(["cpu-team@example.com"])
    );
    assert_eq!(header(&got[2], "Subject"), "CPU high on web01");
    assert_eq!(s(&got[2], "text").trim_end(), "cpu usage_idle=3");
    assert!(got[2]["html"].is_null());
}

/// Through `alertd run`: a routed rule alert is e-mailed as a grouped notification, and a rule
/// with a TICK `.email()` handler sends its event (subject = message) to the handler's address.
#[test]
fn alertd_run_emails_grouped_notifications_and_tick_handler_events() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(tmp.path(), &[]);
    let routed = r#"
stream
    |from().measurement('disk').groupBy('host')
    |alert()
        .id('disk/{{ index .Tags "host" }}')
        .message('{{ index .Tags "host" }} disk is full')
        .crit(lambda: "used_percent" > 90)
"#;
    let handled = r#"
stream
    |from().measurement('cpu').groupBy('host')
    |alert()
        .id('cpu/{{ index .Tags "host" }}')
        .message('cpu on {{ index .Tags "host" }} is {{ .Level }}')
        .details('<b>busy</b>')
        .crit(lambda: "usage" > 90)
        .email('oncall@example.com')
"#;
    let (_w, dir) = support::workdir(&[("disk.tick", routed), ("cpu.tick", handled)]);
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/mail.toml"),
        format!(
            "[route]\nreceiver = \"email\"\ngroup_by = [\"alertname\"]\ngroup_wait = \"100ms\"\n\n[[receivers]]\nname = \"email\"\n[receivers.email]\nto = [\"ops@example.com\"]\nfrom = \"alertd@example.com\"\nsmarthost = \"{}\"\ntls = \"none\"\n",
            sink.smarthost()
        ),
    )
    .unwrap();
    let s = support::Server::start(&dir, "");
    let t = chrono::Utc::now().timestamp();
    let (code, body) = s.write(
        "/write?db=telegraf&precision=s",
        format!("disk,host=n3 used_percent=97 {t}\ncpu,host=n4 usage=99 {t}\n"),
    );
    assert_eq!(code, 204, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let msgs = loop {
        let m = sink.messages();
        if m.len() >= 2 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 2 e-mails arrived",
            m.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let grouped = msgs
        .iter()
        .find(|m| header(m, "Subject").starts_with("[FIRING:1]"))
        .unwrap_or_else(|| panic!("no grouped e-mail: {msgs:#?}"));
    assert_eq!(header(grouped, "Subject"), "[FIRING:1] disk (n3 critical)");
    assert_eq!(grouped["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert!(
        s_(grouped, "text").contains("n3 disk is full"),
        "{grouped:#?}"
    );
    let event = msgs
        .iter()
        .find(|m| header(m, "Subject") == "cpu on n4 is CRITICAL")
        .unwrap_or_else(|| panic!("no handler e-mail: {msgs:#?}"));
    assert_eq!(event["rcpt_tos"], serde_json::json!(["oncall@example.com"]));
    assert!(s_(event, "html").contains("<b>busy</b>"), "{event:#?}");
}

fn s_<'a>(j: &'a Json, key: &str) -> &'a str {
    j[key].as_str().unwrap_or("")
}
