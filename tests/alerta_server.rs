//! The Alerta receiver against a real Alerta server: a throwaway PostgreSQL cluster and
//! `alertad run` (Flask) with authentication and the reject plugin, both started in a temporary
//! directory and stopped again (also when an assertion fails).
//!
//! Needs `initdb`, `pg_ctl`, `createdb` and `alertad`; `scripts/deps/alerta.sh` installs them.
//! A missing dependency fails the test, it never skips it.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alertd::manager::labels::{fingerprint, label_set};
use alertd::receivers::Outcome;
use alertd::receivers::alerta::{AlertaConfig, AlertaOverrides, AlertaReceiver, create_time};
use alertd::receivers::notification::{AlertStatus, Notification, NotifiedAlert};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

const ADMIN: &str = "admin@example.com";
const KEY: &str = "alertd-test-key-4c1f0e9a7b2d";
const DEPS: &str = "run scripts/deps/alerta.sh to install it";

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<ver>/bin
/// (newest version first).
fn pg_bin(name: &str) -> PathBuf {
    if let Some(p) = on_path(name) {
        return p;
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let ver = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((ver, e.path().join("bin").join(name)))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, p)) => p,
        None => panic!("PostgreSQL's {name} not found on PATH or in /usr/lib/postgresql; {DEPS}"),
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}; {DEPS}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL plus Alerta, stopped and removed on drop.
struct Alerta {
    dir: tempfile::TempDir,
    /// PostgreSQL refuses to run as root: then its programs run as `postgres` via runuser.
    as_postgres: bool,
    pg_data: PathBuf,
    pg_started: bool,
    alertad: Option<Child>,
    url: String,
}

impl Alerta {
    /// `pg_ctl`/`initdb` as the right user.
    fn pg_command(&self, program: &Path) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(self.dir.path());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertad.log")).unwrap_or_default()
    }

    async fn start() -> Alerta {
        let alertad = on_path("alertad").unwrap_or_else(|| panic!("alertad not found; {DEPS}"));
        let (initdb, pg_ctl, createdb) = (pg_bin("initdb"), pg_bin("pg_ctl"), pg_bin("createdb"));
        let dir = tempfile::Builder::new()
            .prefix("alertd-alerta")
            .tempdir()
            .unwrap();
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            run(
                Command::new("chown").arg("postgres").arg(&pg_dir),
                "chown postgres (is there a postgres user? run scripts/deps/alerta.sh)",
            );
        }
        let mut me = Alerta {
            pg_data: pg_dir.join("data"),
            dir,
            as_postgres,
            pg_started: false,
            alertad: None,
            url: String::new(),
        };

        run(
            me.pg_command(&initdb)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "alertd",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&me.pg_data),
            "initdb",
        );
        let pg_port = support::free_port();
        let opts = format!(
            "-p {pg_port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            pg_dir.display()
        );
        me.pg_started = true;
        run(
            me.pg_command(&pg_ctl)
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&me.pg_data)
                .arg("-l")
                .arg(pg_dir.join("postgres.log"))
                .args(["-o", &opts]),
            "pg_ctl start",
        );
        run(
            Command::new(&createdb).args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg_port.to_string(),
                "-U",
                "alertd",
                "monitoring",
            ]),
            "createdb",
        );

        let db_url = format!("postgres://alertd@127.0.0.1:{pg_port}/monitoring");
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("AUTH_REQUIRED", "True"),
            ("ADMIN_USERS", ADMIN),
            ("SECRET_KEY", "alertd-test-secret"),
            ("PLUGINS", "reject"),
            // Explicit, so a machine-wide /etc/alertad.conf cannot change the 403 case.
            ("ALLOWED_ENVIRONMENTS", "Production,Development"),
        ];
        run(
            Command::new(&alertad)
                .args(["key", "--username", ADMIN, "--key", KEY])
                .args(["--scope", "write:alerts", "--scope", "read:alerts"])
                .envs(env)
                .current_dir(me.dir.path()),
            "alertad key",
        );

        let port = support::free_port();
        let log = std::fs::File::create(me.dir.path().join("alertad.log")).unwrap();
        let mut cmd = Command::new(&alertad);
        cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
            .envs(env)
            .current_dir(me.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        me.alertad = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("alertad run: {e}; {DEPS}")),
        );
        me.url = format!("http://127.0.0.1:{port}");

        // Wait until it answers HTTP.
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(c) = me.alertad.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("alertad exited early ({status}):\n{}", me.log());
            }
            if client
                .get(format!("{}/alerts", me.url))
                .header("Authorization", format!("Key {KEY}"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "alertad did not answer within 90 s:\n{}",
                me.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        me
    }

    /// `GET /alerts?resource=...` through Alerta's API.
    async fn alerts(&self, resource: &str) -> Vec<Json> {
        let r = client()
            .get(format!("{}/alerts", self.url))
            .query(&[("resource", resource)])
            .header("Authorization", format!("Key {KEY}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET /alerts: {}", r.status());
        let v: Json = r.json().await.unwrap();
        v["alerts"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Alerta {
    fn drop(&mut self) {
        if let Some(mut child) = self.alertad.take() {
            // alertad runs in its own process group: end the group, then make sure.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.pg_started {
            let stopped = self
                .pg_command(&pg_bin("pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&self.pg_data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                // Fall back to the postmaster's PID file.
                let pid = std::fs::read_to_string(self.pg_data.join("postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next().map(str::to_string));
                if let Some(pid) = pid {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                }
            }
        }
        // The TempDir field removes the directory after this.
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn ts(secs: i64, ms: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, ms * 1_000_000).unwrap()
}

fn disk_full(status: AlertStatus) -> Notification {
    let labels = label_set([
        ("alertname", "DiskFull"),
        ("host", "node0003"),
        ("severity", "critical"),
    ]);
    let now = Utc::now().timestamp();
    let alert = NotifiedAlert {
        status,
        fingerprint: fingerprint(&labels),
        labels,
        annotations: label_set([("message", "/var is 97% full"), ("value", "97%")]),
        starts_at: ts(now - 120, 123),
        ends_at: (status == AlertStatus::Resolved).then(|| ts(now - 5, 456)),
        generator_url: "http://alertd.example/rules/disk".into(),
    };
    Notification {
        receiver: "alerta".into(),
        group_key: "{}:{alertname=\"DiskFull\"}".into(),
        group_labels: label_set([("alertname", "DiskFull")]),
        alerts: vec![alert],
        truncated: 0,
        external_url: "http://alertd.example".into(),
        reason: "first notification".into(),
    }
}

fn receiver(url: &str, extra: &str) -> AlertaReceiver {
    let cfg: AlertaConfig = toml::from_str(&format!("url = {url:?}\n{extra}")).unwrap();
    AlertaReceiver::new("alerta", &cfg).unwrap()
}

fn has_ms(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24 && b[19] == b'.' && b[23] == b'Z' && b[20..23].iter().all(u8::is_ascii_digit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_open_and_close_in_a_real_alerta() {
    let server = Alerta::start().await;
    let client = client();
    let rx = receiver(
        &format!("{}/", server.url),
        &format!("api_key = {KEY:?}\ntimeout = 3600"),
    );
    assert_eq!(rx.url(), format!("{}/alert", server.url));

    // Firing.
    let firing = disk_full(AlertStatus::Firing);
    let bodies = rx.render(&firing, &AlertaOverrides::default());
    assert_eq!(bodies.len(), 1);
    assert_eq!(rx.send(&client, &bodies[0]).await, Outcome::Sent);
    let alerts = server.alerts("node0003").await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a["resource"], "node0003");
    assert_eq!(a["event"], "DiskFull");
    assert_eq!(a["environment"], "Production");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["status"], "open");
    assert_eq!(a["service"], serde_json::json!(["DiskFull"]));
    assert_eq!(a["group"], "alertd");
    assert_eq!(a["origin"], "alertd");
    assert_eq!(a["type"], "alertdAlert");
    assert_eq!(a["text"], "/var is 97% full");
    assert_eq!(a["value"], "97%");
    assert_eq!(a["timeout"], 3600);
    assert_eq!(
        a["attributes"]["generatorURL"],
        "http://alertd.example/rules/disk"
    );
    let ct = a["createTime"].as_str().unwrap();
    assert!(has_ms(ct), "{ct}");
    assert_eq!(ct, create_time(firing.alerts[0].starts_at));

    // The same alert again is a duplicate, not a new one.
    assert_eq!(rx.send(&client, &bodies[0]).await, Outcome::Sent);
    let alerts = server.alerts("node0003").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["duplicateCount"], 1);

    // Resolved: sent with severity normal, which closes it.
    let resolved = disk_full(AlertStatus::Resolved);
    let bodies = rx.render(&resolved, &AlertaOverrides::default());
    assert_eq!(bodies.len(), 1);
    assert_eq!(rx.send(&client, &bodies[0]).await, Outcome::Sent);
    let alerts = server.alerts("node0003").await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["status"], "closed");
    assert_eq!(alerts[0]["severity"], "normal");
    assert_eq!(alerts[0]["previousSeverity"], "critical");
    let ct = alerts[0]["createTime"].as_str().unwrap();
    assert!(has_ms(ct), "{ct}");

    // TICK overrides reach Alerta.
    let ov = AlertaOverrides {
        resource: Some("tick-host".into()),
        event: Some("HighCPU".into()),
        group: Some("cpu".into()),
        services: vec!["web".into(), "api".into()],
        correlate: vec!["HighCPU".into(), "CPUOK".into()],
        ..AlertaOverrides::default()
    };
    let body = &rx.render(&firing, &ov)[0];
    assert_eq!(rx.send(&client, body).await, Outcome::Sent);
    let alerts = server.alerts("tick-host").await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["event"], "HighCPU");
    assert_eq!(alerts[0]["group"], "cpu");
    assert_eq!(alerts[0]["service"], serde_json::json!(["web", "api"]));
    assert_eq!(
        alerts[0]["correlate"],
        serde_json::json!(["HighCPU", "CPUOK"])
    );

    // A wrong key is refused for good.
    let bad = receiver(&server.url, "api_key = \"not-the-key\"");
    let body = &bad.render(&firing, &AlertaOverrides::default())[0];
    match bad.send(&client, body).await {
        Outcome::Failed(reason) => {
            assert!(reason.contains("401"), "{reason}");
            assert!(reason.contains("invalid"), "{reason}");
        }
        other => panic!("wrong key: {other:?}"),
    }
    // So is no key at all.
    let none = receiver(&server.url, "");
    match none.send(&client, body).await {
        Outcome::Failed(reason) => assert!(reason.contains("401"), "{reason}"),
        other => panic!("no key: {other:?}"),
    }

    // An environment outside ALLOWED_ENVIRONMENTS: the reject plugin answers 403.
    let staging = receiver(
        &server.url,
        &format!("api_key = {KEY:?}\nenvironment = \"Staging\""),
    );
    let body = &staging.render(&firing, &AlertaOverrides::default())[0];
    match staging.send(&client, body).await {
        Outcome::Failed(reason) => {
            assert!(reason.contains("403"), "{reason}");
            assert!(reason.contains("[POLICY]"), "{reason}");
        }
        other => panic!("environment Staging: {other:?}\n{}", server.log()),
    }
    assert!(server.alerts("node0003").await.len() == 1);
}

#[tokio::test]
async fn unreachable_or_silent_alerta_is_retried() {
    let client = client();
    let firing = disk_full(AlertStatus::Firing);

    // Nothing listens on the port.
    let port = support::free_port();
    let rx = receiver(&format!("http://127.0.0.1:{port}"), "api_key = \"k\"");
    let body = &rx.render(&firing, &AlertaOverrides::default())[0];
    match rx.send(&client, body).await {
        Outcome::Retry(reason) => assert!(reason.contains(&port.to_string()), "{reason}"),
        other => panic!("unreachable: {other:?}"),
    }

    // Something accepts the connection but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let rx = receiver(
        &format!("http://127.0.0.1:{port}"),
        "http_timeout = \"300ms\"",
    );
    let started = Instant::now();
    match rx.send(&client, body).await {
        Outcome::Retry(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("silent: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

/// Seed 003's `disk_alerta.tick`, unchanged, run by `alertd run` with an Alerta receiver: the
/// alert opens in Alerta with the rule's resource, environment, group and value, and the
/// recovery closes it.
#[test]
fn seed003_alerta_rule_delivers_through_the_service() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let alerta = rt.block_on(Alerta::start());
    let rule = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seed003/disk_alerta.tick"),
    )
    .unwrap();
    let (_tmp, dir) = support::workdir(&[("disk_alerta.tick", &rule)]);
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/alerta.toml"),
        format!(
            "[[receivers]]\nname = \"alerta\"\n[receivers.alerta]\nurl = \"{}\"\napi_key = {KEY:?}\n",
            alerta.url
        ),
    )
    .unwrap();
    let s = support::Server::start(&dir, "");
    // 10 s windows of disk usage: two windows at 95% (critical), then two at 40% (OK).
    let t0 = (Utc::now().timestamp() / 10) * 10 - 100;
    let mut lines = String::new();
    for (i, used) in [95, 95, 95, 95, 40, 40, 40, 40, 40].iter().enumerate() {
        let t = t0 + 5 * i as i64;
        lines.push_str(&format!(
            "disk,host=node0007,cluster=Production,datacenter=dc1 used_percent={used} {t}\n"
        ));
    }
    let half = lines.lines().take(5).collect::<Vec<_>>().join("\n") + "\n";
    let (code, body) = s.write("/write?db=telegraf&rp=autogen&precision=s", half);
    assert_eq!(code, 204, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let opened = loop {
        let a = rt.block_on(alerta.alerts("node0007"));
        if let Some(a) = a.first() {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "the alert never reached Alerta");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(opened["environment"], "Production");
    assert_eq!(opened["group"], "dc1");
    assert_eq!(opened["severity"], "critical");
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["value"], "95");
    assert_eq!(opened["text"], "Disk usage is CRITICAL");
    assert_eq!(opened["event"], "node0007/disk_used");
    let rest = lines.lines().skip(5).collect::<Vec<_>>().join("\n") + "\n";
    let (code, body) = s.write("/write?db=telegraf&rp=autogen&precision=s", rest);
    assert_eq!(code, 204, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = rt.block_on(alerta.alerts("node0007"));
        if a.first().is_some_and(|a| a["status"] == "closed") {
            assert_eq!(a.len(), 1, "the recovery closes the same alert: {a:#?}");
            assert_eq!(a[0]["severity"], "normal");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recovery never closed the alert: {a:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
