//! The web UI in a real browser: headless Chromium (Debian's `chromium`, driven through its
//! `chromedriver`, both installed by `scripts/test`) against the real binary.
//!
//! An operator signs in with a token, silences an alert from the list (matchers prefilled,
//! previewed before saving), sees it turn silenced, expires the silence and sees it fire again;
//! filters and groups the list, which refreshes in place without losing the filter; a label
//! holding HTML shows as text; a form without its CSRF token, a read-only token (expire,
//! acknowledge, save, retire) and a form posted from another site's page are refused; and the
//! essential forms work with JavaScript turned off.
//!
//! Set `ALERTD_UI_SCREENSHOTS=docs/screenshots` to keep the screenshots the first test takes.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use support::{Server, workdir};

const WRITE: &str = "write-token-ui-0123";
const READ: &str = "read-token-ui-0123";
const ADMIN: &str = "admin-token-ui-0123";

const CONFIG: &str = r#"
[ui]
refresh_seconds = 1

[[auth.tokens]]
name = "telegraf"
token = "write-token-ui-0123"
scopes = ["write"]

[[auth.tokens]]
name = "viewer"
token = "read-token-ui-0123"
scopes = ["read"]

[[auth.tokens]]
name = "ops"
token = "admin-token-ui-0123"
scopes = ["admin"]
"#;

/// One browser at a time: the machine has two cores.
static BROWSER: Mutex<()> = Mutex::new(());

fn blocking_client(token: &str) -> reqwest::blocking::Client {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::blocking::Client::builder()
        .default_headers(h)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn start_server() -> (tempfile::TempDir, Server) {
    let (dir, path) = workdir(&[]);
    let server = Server::start_with(&path, CONFIG, "http", blocking_client(ADMIN));
    (dir, server)
}

/// A running `chromedriver`; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/deps/chromium.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = reqwest::blocking::Client::new();
        while probe
            .get(format!("{url}/status"))
            .send()
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, javascript: bool) -> Client {
    let mut opts = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--lang=en-US"],
    });
    if !javascript {
        opts["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);
    // chromedriver speaks plain HTTP on loopback.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session starts")
}

/// Posts alerts with the write token.
async fn post_alerts(base: &str, alerts: Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v2/alerts"))
        .bearer_auth(WRITE)
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn api(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls until `f` gives `Some`, failing with `what` after 15 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, or "" when there is none.
async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The text of the first element matching `css`, which must be on the page (for checks that
/// something is *not* shown, which would otherwise pass on a page without the element).
async fn shown(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} is on the page: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// Whether any element matches `css`.
async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css)).await.unwrap().is_empty()
}

/// Clicks the first element matching `css`.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `keys` into the first element matching `css`.
async fn type_into(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(keys)
        .await
        .unwrap();
}

/// An attribute of the first element matching `css`, or "".
async fn attr(c: &Client, css: &str, name: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.attr(name).await.ok().flatten().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The state shown for the alert with this fingerprint in the list.
async fn state_of(c: &Client, fp: &str) -> String {
    attr(
        c,
        &format!("li[data-fingerprint='{fp}'] .line1 .state"),
        "data-state",
    )
    .await
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/login",
        "an anonymous browser is sent to sign in"
    );
    type_into(c, "#token", token).await;
    click(c, "#sign-in").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#alert-list"))
        .await
        .expect("signed in, the alert list shows");
}

fn fingerprint_of(alerts: &Value, name: &str) -> String {
    alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .unwrap_or_else(|| panic!("{name} in {alerts}"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn keep_screenshot(name: &str, png: &[u8]) {
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    let dir = std::env::var("ALERTD_UI_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn silence_an_alert_from_the_list_then_expire_it() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, server) = start_server();
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        post_alerts(
            &base,
            json!([
                {"labels": {"alertname": "DiskFull", "host": "node01", "severity": "critical", "mount": "/var"},
                 "annotations": {"summary": "/var is 97% full", "value": "97.2"}},
                {"labels": {"alertname": "HighLoad", "host": "node02", "severity": "warning"},
                 "annotations": {"summary": "load 12 over 5m"}},
                {"labels": {"alertname": "HighLoad", "host": "node03", "severity": "info"}},
            ]),
        )
        .await;
        let alerts = api(&base, "/api/v2/alerts").await;
        let disk = fingerprint_of(&alerts, "DiskFull");

        let c = browser(&driver, true).await;
        sign_in(&c, &base, ADMIN).await;
        assert_eq!(state_of(&c, &disk).await, "firing");
        let shown = text(&c, &format!("li[data-fingerprint='{disk}']")).await;
        assert!(shown.contains("/var is 97% full"), "{shown}");
        assert!(shown.contains("97.2"), "{shown}");
        assert!(shown.contains("mount=\"/var\""), "{shown}");
        let class = attr(&c, &format!("li[data-fingerprint='{disk}']"), "class").await;
        assert!(class.contains("lv-crit"), "critical is coloured as such: {class}");

        // Silence it from its row: the matchers come from its labels and the preview names it.
        click(&c, &format!(
            "li[data-fingerprint='{disk}'] a.silence-link"
        )).await;
        let matchers = c
            .find(Locator::Css("#matchers"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        for m in [
            "alertname=\"DiskFull\"",
            "host=\"node01\"",
            "mount=\"/var\"",
        ] {
            assert!(matchers.contains(m), "{matchers} lacks {m}");
        }
        let preview = text(&c, "#preview").await;
        assert!(preview.contains("1 active alert would be silenced"), "{preview}");
        assert!(preview.contains("DiskFull"), "{preview}");
        // Widening the matchers updates the preview as they are typed.
        let field = c.find(Locator::Css("#matchers")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys("alertname=\"HighLoad\"").await.unwrap();
        eventually("the live preview", || async {
            text(&c, "#preview-count")
                .await
                .contains("2 active alerts")
                .then_some(())
        })
        .await;
        field.clear().await.unwrap();
        field
            .send_keys("alertname=\"DiskFull\", host=\"node01\"")
            .await
            .unwrap();
        let duration = c.find(Locator::Css("#duration")).await.unwrap();
        duration.clear().await.unwrap();
        duration.send_keys("2h").await.unwrap();
        type_into(&c, "#comment", "replacing the disk").await;
        click(&c, "#save").await;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("li.silence"))
            .await
            .expect("the new silence is listed");
        let listed = text(&c, "li.silence").await;
        assert!(listed.contains("replacing the disk"), "{listed}");
        assert!(listed.contains("by ops"), "the author is the token's name: {listed}");
        assert!(listed.contains("mutes 1 alert"), "{listed}");
        keep_screenshot("silences.png", &c.screenshot().await.unwrap());

        // Edit it: the form comes back filled in; the new comment is saved.
        let id = attr(&c, "li.silence", "data-id").await;
        assert!(!id.is_empty());
        click(&c, "li.silence a.button").await;
        let comment = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#comment"))
            .await
            .unwrap();
        assert_eq!(
            comment.prop("value").await.unwrap().unwrap_or_default(),
            "replacing the disk"
        );
        comment.send_keys(" in bay 3").await.unwrap();
        click(&c, "#save").await;
        eventually("the edited silence", || async {
            text(&c, "li.silence")
                .await
                .contains("replacing the disk in bay 3")
                .then_some(())
        })
        .await;
        assert_eq!(
            c.find_all(Locator::Css("li.silence")).await.unwrap().len(),
            1,
            "edited in place, not duplicated"
        );
        assert_eq!(
            attr(&c, "li.silence", "data-id").await,
            id,
            "the same silence, not a replacement"
        );

        // The alert turns silenced, naming the silence.
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(state_of(&c, &disk).await, "silenced");
        let why = text(&c, &format!("li[data-fingerprint='{disk}'] .why")).await;
        assert!(why.contains("silenced by replacing the disk in bay 3"), "{why}");
        keep_screenshot("alerts.png", &c.screenshot().await.unwrap());
        let api_state = api(&base, "/api/v2/alerts?silenced=true").await;
        assert!(
            api_state
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["fingerprint"] == disk.as_str() && a["status"]["state"] == "suppressed")
        );

        // Expire it (confirming the dialog): the alert fires again.
        c.goto(&format!("{base}/silences")).await.unwrap();
        click(&c, "li.silence button.expire").await;
        let asked = c.get_alert_text().await.unwrap();
        assert!(asked.contains("Expire"), "{asked}");
        c.accept_alert().await.unwrap();
        eventually("the expired tab", || async {
            let u = c.current_url().await.ok()?;
            (u.query() == Some("state=expired")).then_some(())
        })
        .await;
        assert!(text(&c, "li.silence").await.contains("replacing the disk in bay 3"));
        assert_eq!(text(&c, "#tab-active .count").await, "0");
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(state_of(&c, &disk).await, "firing");

        // The detail page names the labels and offers acknowledging.
        c.goto(&format!("{base}/alerts/{disk}")).await.unwrap();
        assert!(text(&c, "#labels").await.contains("node01"));
        click(&c, "#ack").await;
        eventually("the acknowledged state", || async {
            (attr(&c, "#alert-state", "data-state").await == "acknowledged").then_some(())
        })
        .await;
        c.close().await.unwrap();
    });
}

#[test]
fn filter_group_refresh_and_escaping() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, server) = start_server();
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        post_alerts(
            &base,
            json!([
                {"labels": {"alertname": "Down", "host": "node01", "severity": "critical"}},
                {"labels": {"alertname": "Down", "host": "web01", "severity": "critical"}},
                {"labels": {"alertname": "Xss", "host": "<script>alert(1)</script>", "severity": "warning"},
                 "annotations": {"summary": "<img src=x onerror=alert(2)>"}},
            ]),
        )
        .await;
        let c = browser(&driver, true).await;
        sign_in(&c, &base, READ).await;

        // The HTML in a label and an annotation shows as text; no script ran.
        let body = text(&c, "#alert-list").await;
        assert!(body.contains("<script>alert(1)</script>"), "{body}");
        assert!(body.contains("<img src=x onerror=alert(2)>"), "{body}");
        assert!(
            c.get_alert_text().await.is_err(),
            "no dialog was opened by the page's data"
        );
        let scripts = c
            .execute("return document.querySelectorAll('#alert-list script, #alert-list img').length", vec![])
            .await
            .unwrap();
        assert_eq!(scripts, json!(0));

        // A read-only viewer is offered no change.
        assert!(
            c.find_all(Locator::Css("a.silence-link"))
                .await
                .unwrap()
                .is_empty()
        );

        // Filter with matchers, group by host.
        let f = c.find(Locator::Css("#filter")).await.unwrap();
        f.send_keys("severity=\"critical\", host=~\"node0.*\"")
            .await
            .unwrap();
        c.find(Locator::Css("#group"))
            .await
            .unwrap()
            .select_by_value("host")
            .await
            .unwrap();
        click(&c, "#apply").await;
        eventually("the filtered list", || async {
            (text(&c, "#shown").await == "1").then_some(())
        })
        .await;
        let list = text(&c, "#alert-list").await;
        assert!(list.contains("node01") && !list.contains("web01"), "{list}");
        assert!(list.contains("grouped by host"), "{list}");
        let heading = text(&c, "section.group h2").await;
        assert_eq!(
            heading.split_whitespace().collect::<Vec<_>>(),
            ["node01", "1"],
            "one group, host node01, one alert"
        );

        // New alerts arrive: the list refreshes in place (the page is not reloaded: a mark set
        // on it survives) and keeps the filter.
        let before = text(&c, "#as-of").await;
        c.execute("window.stillHere = 1", vec![]).await.unwrap();
        post_alerts(
            &base,
            json!([
                {"labels": {"alertname": "Down", "host": "node02", "severity": "critical"}},
                {"labels": {"alertname": "Down", "host": "web02", "severity": "critical"}},
            ]),
        )
        .await;
        eventually("the refreshed list", || async {
            (text(&c, "#shown").await == "2").then_some(())
        })
        .await;
        let list = text(&c, "#alert-list").await;
        assert!(list.contains("node02") && !list.contains("web02"), "{list}");
        assert_ne!(text(&c, "#as-of").await, before);
        let same_page = c
            .execute("return window.stillHere === 1", vec![])
            .await
            .unwrap();
        assert_eq!(same_page, json!(true), "refreshed without reloading the page");
        let kept = c
            .find(Locator::Css("#filter"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        assert_eq!(kept, "severity=\"critical\", host=~\"node0.*\"");

        // A bad filter is named next to the box.
        c.goto(&format!("{base}/?filter=host%3D%22node")).await.unwrap();
        let err = text(&c, "#filter-error").await;
        assert!(err.contains("Not a matcher list"), "{err}");
        c.close().await.unwrap();
    });
}

#[test]
fn changes_need_a_csrf_token_and_an_admin() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, server) = start_server();
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        post_alerts(
            &base,
            json!([{"labels": {"alertname": "Disk", "host": "node01"}}]),
        )
        .await;
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/checks"))
            .bearer_auth(WRITE)
            .json(&json!([{"host": "node01", "status": 0, "output": "PING OK"}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A silence made through the API, to expire from the page.
        let now = chrono::Utc::now();
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v2/silences"))
            .bearer_auth(ADMIN)
            .json(&json!({
                "matchers": [{"name": "host", "value": "node01", "isRegex": false}],
                "startsAt": now.to_rfc3339(),
                "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "createdBy": "ops", "comment": "maintenance"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let c = browser(&driver, true).await;
        // A wrong token is refused on the sign-in page.
        c.goto(&format!("{base}/login")).await.unwrap();
        type_into(&c, "#token", "not-a-token").await;
        click(&c, "#sign-in").await;
        eventually("the unknown-token error", || async {
            (text(&c, "#login-error").await == "Unknown token.").then_some(())
        })
        .await;
        // A write-only token cannot read.
        type_into(&c, "#token", WRITE).await;
        click(&c, "#sign-in").await;
        eventually("the write-only refusal", || async {
            text(&c, "#login-error")
                .await
                .contains("neither the read")
                .then_some(())
        })
        .await;

        sign_in(&c, &base, ADMIN).await;
        // The session cookie is out of the page's reach.
        let visible = c.execute("return document.cookie", vec![]).await.unwrap();
        assert_eq!(visible, json!(""), "the session cookie is HttpOnly");

        // The expire form without its CSRF token is refused and the silence stays.
        c.goto(&format!("{base}/silences")).await.unwrap();
        c.execute(
            "const f = document.querySelector('form.expire-form');
             f.querySelector('input[name=_csrf]').remove();
             f.submit();",
            vec![],
        )
        .await
        .unwrap();
        eventually("the refusal", || async {
            text(&c, "#error-message")
                .await
                .contains("CSRF token is missing")
                .then_some(())
        })
        .await;
        assert!(text(&c, "h1").await.starts_with("403"));
        let active = api(&base, "/api/v1/silences?state=active").await;
        assert_eq!(active["total"], 1, "the silence is still active: {active}");
        c.close().await.unwrap();

        // A read-only viewer with a valid CSRF token still may not expire it.
        let c = browser(&driver, true).await;
        sign_in(&c, &base, READ).await;
        c.goto(&format!("{base}/silences")).await.unwrap();
        assert!(
            c.find_all(Locator::Css("button.expire"))
                .await
                .unwrap()
                .is_empty(),
            "no expire button for a read-only viewer"
        );
        let id = active["items"][0]["id"].as_str().unwrap().to_string();
        c.execute(
            "const csrf = document.querySelector('header form.who input[name=_csrf]').value;
             const f = document.createElement('form');
             f.method = 'post';
             f.action = '/silences/' + arguments[0] + '/expire';
             const i = document.createElement('input');
             i.type = 'hidden'; i.name = '_csrf'; i.value = csrf;
             f.appendChild(i); document.body.appendChild(f); f.submit();",
            vec![json!(id)],
        )
        .await
        .unwrap();
        eventually("the refusal", || async {
            text(&c, "#error-message")
                .await
                .contains("read scope only")
                .then_some(())
        })
        .await;
        let active = api(&base, "/api/v1/silences?state=active").await;
        assert_eq!(active["total"], 1, "the silence is still active: {active}");

        // Nor acknowledge, save a silence or retire a host: the controls are absent and the
        // pages say why.
        let disk = fingerprint_of(&api(&base, "/api/v2/alerts").await, "Disk");
        c.goto(&format!("{base}/alerts/{disk}")).await.unwrap();
        assert!(shown(&c, "#labels").await.contains("node01"));
        assert!(
            !exists(&c, "#ack").await,
            "no acknowledge for a read-only viewer"
        );
        c.goto(&format!("{base}/silences/new?from={disk}"))
            .await
            .unwrap();
        let prefilled = attr(&c, "#matchers", "value").await;
        assert!(prefilled.contains("host=\"node01\""), "{prefilled}");
        assert!(!exists(&c, "#save").await, "no save for a read-only viewer");
        assert!(
            shown(&c, "#read-only")
                .await
                .contains("needs an admin token")
        );
        c.goto(&format!("{base}/hosts")).await.unwrap();
        assert!(
            exists(&c, "tr[data-host='node01']").await,
            "node01 is listed"
        );
        assert!(
            !exists(&c, "tr[data-host='node01'] a.button").await,
            "no retire link"
        );
        c.goto(&format!("{base}/hosts/retire?host=node01"))
            .await
            .unwrap();
        assert!(!exists(&c, "#confirm-retire").await);
        assert!(
            shown(&c, "#read-only")
                .await
                .contains("needs an admin token")
        );
        c.execute(
            "const csrf = document.querySelector('header form.who input[name=_csrf]').value;
             const f = document.createElement('form');
             f.method = 'post'; f.action = '/hosts/retire';
             for (const [k, v] of [['_csrf', csrf], ['host', 'node01']]) {
               const i = document.createElement('input');
               i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
        eventually("the retire refusal", || async {
            text(&c, "#error-message")
                .await
                .contains("read scope only")
                .then_some(())
        })
        .await;
        let hosts = api(&base, "/api/v1/hosts").await;
        assert_eq!(hosts["total"], 1, "node01 is not retired: {hosts}");
        c.close().await.unwrap();
    });
}

/// Serves one page, on its own port (another origin), whose form posts `fields` to `action`
/// as soon as it loads: what a hostile site would do to a signed-in operator.
fn hostile_page(action: &str, fields: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=hidden name={k} value={v}>"))
        .collect();
    let page = format!(
        "<!doctype html><form method=post action=\"{action}\">{inputs}</form>\
         <script>document.forms[0].submit()</script>"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

#[test]
fn forms_from_another_site_are_refused() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, server) = start_server();
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        post_alerts(
            &base,
            json!([{"labels": {"alertname": "Disk", "host": "node01"}}]),
        )
        .await;
        let disk = fingerprint_of(&api(&base, "/api/v2/alerts").await, "Disk");
        let c = browser(&driver, true).await;

        // Signing a visitor in with the attacker's token (login CSRF) is refused.
        c.goto(&hostile_page(&format!("{base}/login"), &[("token", ADMIN)]))
            .await
            .unwrap();
        eventually("the cross-site refusal", || async {
            text(&c, "#error-message")
                .await
                .contains("sent from another site")
                .then_some(())
        })
        .await;
        assert!(text(&c, "h1").await.starts_with("403"));
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(
            c.current_url().await.unwrap().path(),
            "/login",
            "no session was opened"
        );

        // A signed-in operator lured to the page does not acknowledge anything.
        sign_in(&c, &base, ADMIN).await;
        c.goto(&hostile_page(
            &format!("{base}/alerts/{disk}/ack"),
            &[("comment", "lured")],
        ))
        .await
        .unwrap();
        eventually("the cross-site refusal", || async {
            text(&c, "#error-message")
                .await
                .contains("sent from another site")
                .then_some(())
        })
        .await;
        let alerts = api(&base, "/api/v2/alerts").await;
        assert_eq!(
            alerts[0]["status"]["state"], "active",
            "not acknowledged: {alerts}"
        );
        let silences = api(&base, "/api/v1/silences?state=active").await;
        assert_eq!(silences["total"], 0, "{silences}");
        c.close().await.unwrap();
    });
}

#[test]
fn the_essential_forms_work_without_javascript() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let (_dir, server) = start_server();
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        post_alerts(
            &base,
            json!([{"labels": {"alertname": "Disk", "host": "db01", "severity": "critical"}}]),
        )
        .await;
        let fp = fingerprint_of(&api(&base, "/api/v2/alerts").await, "Disk");
        let c = browser(&driver, false).await;
        sign_in(&c, &base, ADMIN).await;
        // Without the page's script, typing changes nothing until Preview is pressed.
        c.goto(&format!("{base}/silences/new")).await.unwrap();
        type_into(&c, "#matchers", "host=\"db01\"").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            !shown(&c, "#preview").await.contains("would be silenced"),
            "no live preview without scripts"
        );
        click(&c, "#preview-button").await;
        eventually("the preview", || async {
            text(&c, "#preview-count")
                .await
                .contains("1 active alert")
                .then_some(())
        })
        .await;
        // Saving without a comment names the field.
        click(&c, "#save").await;
        eventually("the comment error", || async {
            text(&c, "#comment-error")
                .await
                .contains("say why")
                .then_some(())
        })
        .await;
        type_into(&c, "#comment", "db01 rebuild").await;
        click(&c, "#save").await;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("li.silence"))
            .await
            .unwrap();
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(state_of(&c, &fp).await, "silenced");
        // Expire submits straight away (no confirmation dialog without scripts).
        c.goto(&format!("{base}/silences")).await.unwrap();
        click(&c, "button.expire").await;
        eventually("the expired tab", || async {
            (text(&c, "#tab-active .count").await == "0").then_some(())
        })
        .await;
        c.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(state_of(&c, &fp).await, "firing");
        c.close().await.unwrap();
    });
}

const CPU_RULE: &str = r#"
stream
    |from()
        .database('telegraf')
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .id('cpu/{{ index .Tags "host" }}')
        .message('cpu {{ index .Tags "host" }} at {{ index .Fields "usage" }}')
        .warn(lambda: "usage" > 80)
        .crit(lambda: "usage" > 90)
"#;

#[test]
fn rule_alert_detail_rules_checks_and_retiring_a_host() {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let hook = support::Receiver::start(vec![200]);
    let (_dir, path) = workdir(&[
        ("cpu.tick", CPU_RULE),
        ("broken.tick", "stream\n    |from()\n        .perod(10s)\n"),
    ]);
    // The alerts started before group_wait, so their group is flushed as soon as the first
    // arrives; a short group_interval lets the CRITICAL alert follow in the next notification
    // when it reaches the alert manager after that flush (a busy machine), instead of after
    // the default five minutes.
    support::webhook_route(
        &path,
        &hook.addr,
        "group_by = [\"alertname\"]\ngroup_interval = \"500ms\"",
    );
    let server = Server::start_with(&path, CONFIG, "http", blocking_client(ADMIN));
    let writer = blocking_client(WRITE);
    let now = chrono::Utc::now().timestamp();
    let r = writer
        .post(server.url("/write?db=telegraf&precision=s"))
        .body(format!(
            "cpu,host=web01 usage=85 {}\ncpu,host=web01 usage=97 {}\n",
            now - 20,
            now - 10
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = writer
        .post(server.url("/api/v1/checks"))
        .json(&json!([
            {"host": "db01", "service": "disk", "status": 2, "ttl": "5m",
             "output": "DISK CRITICAL - /var 97% | var=97%;90;95;0;100"},
            {"host": "db01", "status": 0, "output": "PING OK - rta 0.3ms"},
        ]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    hook.wait_for(1);
    let driver = Driver::start();
    let base = server.base.clone();
    runtime().block_on(async {
        let cpu = eventually("the rule alert", || async {
            let all = api(&base, "/api/v2/alerts").await;
            all.as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "cpu" && a["labels"]["severity"] == "critical"
                })
                .and_then(|a| a["fingerprint"].as_str().map(str::to_string))
        })
        .await;
        let c = browser(&driver, true).await;
        sign_in(&c, &base, ADMIN).await;

        // The rule alert's detail: its level history (WARNING then CRITICAL) as a timeline and a
        // table, the webhook notification and the rule's source.
        c.goto(&format!("{base}/alerts/{cpu}")).await.unwrap();
        let history = text(&c, "#history").await;
        assert!(
            history.contains("CRITICAL") && history.contains("WARNING"),
            "{history}"
        );
        assert!(history.contains("cpu web01 at 97"), "{history}");
        let segments = c.find_all(Locator::Css(".timeline .seg")).await.unwrap();
        assert_eq!(segments.len(), 2, "one timeline segment per level");
        let sent = eventually("the notification row", || async {
            let t = text(&c, "#notifications").await;
            if t.contains(&hook.addr) {
                Some(t)
            } else {
                c.refresh().await.ok()?;
                None
            }
        })
        .await;
        assert!(sent.contains("hook"), "{sent}");
        assert!(
            text(&c, "pre.source")
                .await
                .contains(".crit(lambda: \"usage\" > 90)")
        );

        // Rules: the running one with its counters, the broken one with its position. Engine
        // threads publish their counters once a second, so the page may need a refresh.
        c.goto(&format!("{base}/rules")).await.unwrap();
        let rules = eventually("the rule counters", || async {
            let t = text(&c, "#rules").await;
            if t.contains("2 / 2") {
                Some(t)
            } else {
                c.refresh().await.ok()?;
                None
            }
        })
        .await;
        assert!(
            rules.contains("cpu") && rules.contains("running"),
            "{rules}"
        );
        assert!(
            rules.contains("broken") && rules.contains("error"),
            "{rules}"
        );
        assert!(rules.contains("perod"), "the load error is shown: {rules}");
        assert!(rules.contains("2 / 2"), "points in and matched: {rules}");

        // Checks: state, HARD, freshness interval from the ttl.
        c.goto(&format!("{base}/checks")).await.unwrap();
        let checks = text(&c, "#checks").await;
        assert!(
            checks.contains("db01") && checks.contains("disk"),
            "{checks}"
        );
        assert!(
            checks.contains("CRITICAL") && checks.contains("HARD"),
            "{checks}"
        );
        assert!(checks.contains("every 300s"), "{checks}");
        assert!(checks.contains("DISK CRITICAL - /var 97%"), "{checks}");

        // Hosts: both sources listed; retiring asks first, then resolves the host's alerts.
        c.goto(&format!("{base}/hosts")).await.unwrap();
        let hosts = text(&c, "#hosts").await;
        assert!(
            hosts.contains("web01") && hosts.contains("metrics"),
            "{hosts}"
        );
        assert!(
            hosts.contains("db01") && hosts.contains("checks"),
            "{hosts}"
        );
        let db01_alerts = |all: &Value| {
            all["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["labels"]["host"] == "db01")
                .count()
        };
        assert_eq!(
            db01_alerts(&api(&base, "/api/v1/alerts").await),
            1,
            "db01's disk check fires before the retire"
        );
        click(&c, "tr[data-host='db01'] a.button").await;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#confirm-retire"))
            .await
            .unwrap();
        let still = api(&base, "/api/v1/hosts").await;
        assert_eq!(still["total"], 2, "nothing retired before confirming");
        click(&c, "#confirm-retire").await;
        let notice = eventually("the retire notice", || async {
            let t = text(&c, "#notice").await;
            (!t.is_empty()).then_some(t)
        })
        .await;
        assert!(notice.contains("db01 was retired"), "{notice}");
        assert!(!shown(&c, "#hosts").await.contains("db01"));
        // A made-up notice in the address is not shown: only the server's own signed one is.
        c.goto(&format!("{base}/hosts?retired=web01&sig=forged"))
            .await
            .unwrap();
        assert!(shown(&c, "#hosts").await.contains("web01"));
        assert!(!exists(&c, "#notice").await, "a forged notice is not shown");
        eventually("db01's check alert resolved", || async {
            (db01_alerts(&api(&base, "/api/v1/alerts").await) == 0).then_some(())
        })
        .await;

        // On a phone-sized screen the list fits the width.
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}/")).await.unwrap();
        let fits = c
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "no sideways scrolling on a phone");
        c.close().await.unwrap();
    });
}
