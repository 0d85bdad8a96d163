//! `alertd check` against the real binary: every kind of mistake that can be known without data
//! is reported as `file:line:col: message`, with the line and a caret, and exit status 1.

use std::process::Command;

/// Writes `source` as `rules/<name>.tick` in a temporary directory and runs `alertd check` on it.
fn check(name: &str, source: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join(format!("{name}.tick")), source).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .current_dir(dir.path())
        .args(["check", "rules"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fails_with(name: &str, source: &str, expected_first_line: &str) -> String {
    let (ok, stderr) = check(name, source);
    assert!(!ok, "must fail: {source}");
    let first = stderr.lines().next().unwrap_or("");
    assert_eq!(first, expected_first_line, "full output:\n{stderr}");
    stderr
}

const DISK: &str = "// Disk
var warn = 80
var crit = 90

stream
    |from()
        .measurement('disk')
        .groupBy('host')
    |window()
        .period(10s)
        .every(10s)
      .perod(10s)
    |mean('used_percent')
";

#[test]
fn unknown_property_with_suggestion_line_and_caret() {
    let out = fails_with(
        "disk",
        DISK,
        "rules/disk.tick:12:7: unknown property 'perod' on window (did you mean 'period'?)",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "12 |       .perod(10s)");
    assert_eq!(lines[2], "   |       ^");
}

#[test]
fn valid_rules_pass() {
    let (ok, out) = check(
        "ok",
        "stream|from().measurement('cpu')|alert().crit(lambda: \"usage_idle\" < 5)",
    );
    assert!(ok, "{out}");
    assert!(out.contains("checked 1 rule file: all valid"), "{out}");
}

#[test]
fn unknown_node() {
    fails_with(
        "n",
        "stream\n  |from()\n  |windw()",
        "rules/n.tick:3:3: unknown node 'windw' (did you mean 'window'?)",
    );
}

#[test]
fn unsupported_kapacitor_node() {
    fails_with(
        "n",
        "stream|from()|httpOut('x')",
        "rules/n.tick:1:14: node 'httpOut' is not supported by alertd",
    );
}

#[test]
fn unknown_function() {
    fails_with(
        "f",
        "stream|from()|where(lambda: abss(\"x\") > 1)",
        "rules/f.tick:1:29: unknown function 'abss' (did you mean 'abs'?)",
    );
}

#[test]
fn wrong_argument_count_and_type() {
    fails_with(
        "a",
        "stream|from()|window().period(10s, 5s)",
        "rules/a.tick:1:23: .period() takes 1 argument, got 2",
    );
    fails_with(
        "b",
        "stream|from()|window().period('10s')",
        "rules/b.tick:1:31: argument 1 of .period() must be a duration such as 10s, got a string",
    );
    fails_with(
        "c",
        "stream|from()|where(lambda: pow(\"x\"))",
        "rules/c.tick:1:29: function 'pow' takes 2 arguments, got 1",
    );
}

#[test]
fn string_compared_with_number() {
    fails_with(
        "s",
        "stream|from()|alert().crit(lambda: \"host\" == 'a' AND 'abc' > 5)",
        "rules/s.tick:1:54: cannot compare a string and a number with '>'",
    );
}

#[test]
fn undefined_variable() {
    fails_with(
        "v",
        "var crit = 90\nstream|from()|alert().crit(lambda: \"x\" > critical)",
        "rules/v.tick:2:42: undefined variable 'critical' (did you mean 'crit'?)",
    );
    fails_with(
        "w",
        "stream|from()\nalrt.crit(lambda: TRUE)",
        "rules/w.tick:2:1: undefined variable 'alrt'",
    );
}

#[test]
fn edge_types_are_checked() {
    fails_with(
        "e",
        "stream|from()|mean('x')",
        "rules/e.tick:1:14: mean needs a batch of points: put a |window() before it",
    );
}

#[test]
fn syntax_errors_point_at_the_token() {
    fails_with(
        "x",
        "stream|from()\n  |window().period(1.5h)",
        "rules/x.tick:2:20: unexpected '1.5h': a duration must be a whole number followed by a unit (write 90m, not 1.5h)",
    );
}

#[test]
fn bad_regex_and_bad_template() {
    fails_with(
        "r",
        "stream|from().where(lambda: \"host\" =~ /node(/)",
        "rules/r.tick:1:39: invalid regex /node(/: unclosed group",
    );
    let (ok, out) = check(
        "t",
        "stream|from()|alert().message('{{ indx .Tags \"host\" }}')",
    );
    assert!(!ok);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("rules/t.tick:1:"), "{out}");
    assert!(first.contains("indx"), "{out}");
}

#[test]
fn unsupported_handler_names_the_alternative() {
    let (ok, out) = check("h", "stream|from()|alert().slack()");
    assert!(!ok);
    assert!(
        out.starts_with("rules/h.tick:1:22: handler 'slack' is not built into alertd"),
        "{out}"
    );
}

#[test]
fn every_file_is_checked_and_errors_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tick"), "stream|from()|windw()").unwrap();
    std::fs::write(dir.path().join("b.tick"), "stream|from()|alert()").unwrap();
    std::fs::write(dir.path().join("c.tick"), "stream|from()|mean('x')").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("checked 3 rule files: 2 with errors"),
        "{stderr}"
    );
}

/// `alertd check PATH`.
fn check_one(p: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alertd"))
        .arg("check")
        .arg(p)
        .output()
        .unwrap()
}

#[test]
fn config_files_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, "listen = \"0.0.0.0:9092\"\n").unwrap();
    std::fs::write(
        &bad,
        "listen = \"0.0.0.0:9092\"\n\n[rules]\ngroup_expiry = \"soon\"\n",
    )
    .unwrap();
    let ok = check_one(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("checked 1 config file: all valid"));
    let out = check_one(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:4:16: 'soon' is not a duration", bad.display())),
        "{err}"
    );
}

#[test]
fn receivers_files_are_checked_with_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let route = dir.path().join("route.toml");
    let recv = dir.path().join("receivers.toml");
    std::fs::write(
        &route,
        "[route]\nreceiver = \"ops\"\ngroup_wait = \"10s\"\n",
    )
    .unwrap();
    std::fs::write(
        &recv,
        "[[receivers]]\nname = \"ops\"\n[receivers.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .unwrap();
    let ok = check_one(&route);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A typo in a field is reported with file, line and column.
    std::fs::write(
        &recv,
        "[[receivers]]\nname = \"ops\"\n[receivers.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nmax_alert = 5\n",
    )
    .unwrap();
    let out = check_one(&route);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:5:1: unknown field `max_alert`",
            recv.display()
        )),
        "{err}"
    );
    // A route naming a receiver nobody defines.
    std::fs::write(&recv, "").unwrap();
    let out = check_one(&route);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route: receiver: no receiver named \"ops\""),
        "{err}"
    );
}
