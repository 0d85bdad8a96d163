//! Test harness shared by the integration tests: the real `alertd` binary on port 0, and a real
//! HTTP receiver that records what it is sent and when.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

/// A running `alertd run`; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub client: Client,
}

impl Server {
    /// Starts the binary with `config` (TOML, without `listen`) in `dir`, on a free port.
    pub fn start(dir: &Path, config: &str) -> Server {
        let client = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Server::start_with(dir, config, "http", client)
    }

    /// As [`Server::start`], reached with `scheme` and `client` (which carries any token or
    /// TLS root the configuration requires, for the readiness check and later calls).
    pub fn start_with(dir: &Path, config: &str, scheme: &str, client: Client) -> Server {
        let cfg = dir.join("alertd.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nrules_dir = \"rules\"\n{config}"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_alertd"))
            .current_dir(dir)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("ALERTD_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("alertd starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && let Some(addr) = line
                        .split("listen=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
                eprintln!("[alertd] {line}");
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("alertd logs its listen address");
        let server = Server {
            child,
            base: format!("{scheme}://{addr}"),
            client,
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .client
                .get(self.url("/-/ready"))
                .send()
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("alertd never became ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn write(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, String) {
        let r = self.client.post(self.url(path)).body(body).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// Polls the stored events until `pred` holds.
    pub fn wait_events(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.json("/api/v1/events?limit=1000");
            let mut events = v["items"].as_array().cloned().unwrap_or_default();
            events.reverse();
            if pred(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {events:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as an operator does (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "alertd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago, for a peer that must be told its port before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn workdir(rules: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::create_dir(path.join("rules")).unwrap();
    for (name, src) in rules {
        std::fs::write(path.join("rules").join(name), src).unwrap();
    }
    (dir, path)
}

/// Writes `receivers/r.toml` in `dir`: one route to a webhook receiver `hook` at `addr`, with
/// `group_wait = "100ms"` and the route settings in `route` (e.g. `group_by = ["alertname"]`).
pub fn webhook_route(dir: &Path, addr: &str, route: &str) {
    std::fs::create_dir_all(dir.join("receivers")).unwrap();
    std::fs::write(
        dir.join("receivers/r.toml"),
        format!(
            "[route]\nreceiver = \"hook\"\n{route}\ngroup_wait = \"100ms\"\n\
             [[receivers]]\nname = \"hook\"\n[receivers.webhook]\nurl = \"http://{addr}/\"\n"
        ),
    )
    .unwrap();
}

/// A real HTTP receiver on loopback: records each request (headers, body) and answers with the
/// next status of `statuses` (the last one repeats).
pub struct Receiver {
    pub addr: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// When each request arrived.
    pub times: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Receiver {
    pub fn start(statuses: Vec<u16>) -> Receiver {
        Receiver::start_on(0, statuses)
    }

    pub fn start_on(port: u16, statuses: Vec<u16>) -> Receiver {
        use std::io::Read;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_at = times.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let Ok(k) = stream.read(&mut chunk) else {
                        break (String::new(), String::new());
                    };
                    if k == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break (
                                head,
                                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
                            );
                        }
                    }
                };
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                seen_at.lock().unwrap().push(Instant::now());
                seen.lock().unwrap().push((head, body));
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            addr,
            requests,
            times,
        }
    }

    pub fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.requests.lock().unwrap().clone();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of `name` whose labels contain `contains`.
pub fn metric_sum(text: &str, name: &str, contains: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(contains))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}
