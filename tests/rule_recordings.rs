//! Runs every shipped rule (`rules/*.tick` with `rules/testdata/<rule>.lp` and
//! `<rule>.expected.jsonl`) and every semantic case (`tests/cases/<case>/`) through the real
//! `alertd test` binary with `--expect`, as a user's CI would.

use std::path::{Path, PathBuf};
use std::process::Command;

fn alertd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alertd"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `alertd test` and returns (success, stdout, stderr).
fn run_test(rule: &Path, data: &Path, expect: &Path, extra: &[String]) -> (bool, String, String) {
    let out = alertd()
        .arg("test")
        .arg(rule)
        .arg("--data")
        .arg(data)
        .arg("--expect")
        .arg(expect)
        .args(extra)
        .output()
        .expect("alertd runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_rules_pass_their_recordings() {
    let mut rules: Vec<PathBuf> = std::fs::read_dir(root().join("rules"))
        .expect("rules/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tick"))
        .collect();
    rules.sort();
    assert!(
        rules.len() >= 10,
        "expected the shipped rules, found {}",
        rules.len()
    );
    for rule in rules {
        let stem = rule.file_stem().unwrap().to_string_lossy().into_owned();
        let data = root().join("rules/testdata").join(format!("{stem}.lp"));
        let expect = root()
            .join("rules/testdata")
            .join(format!("{stem}.expected.jsonl"));
        assert!(
            data.exists(),
            "{} has no recording at {}",
            rule.display(),
            data.display()
        );
        assert!(
            expect.exists(),
            "{} has no expected events at {}",
            rule.display(),
            expect.display()
        );
        let expected_events = std::fs::read_to_string(&expect)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        assert!(
            expected_events > 0,
            "{} expects no events: its recording should exercise it",
            rule.display()
        );
        let (ok, _, stderr) = run_test(&rule, &data, &expect, &[]);
        assert!(
            ok,
            "{} failed against its recording:\n{stderr}",
            rule.display()
        );
        assert!(
            stderr.contains(&format!("expect: {expected_events} events match")),
            "{stderr}"
        );
    }
}

#[test]
fn semantic_cases_hold() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("tests/cases"))
        .expect("tests/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let args: Vec<String> = std::fs::read_to_string(case.join("args"))
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let (ok, _, stderr) = run_test(
            &case.join("rule.tick"),
            &case.join("data.lp"),
            &case.join("expected.jsonl"),
            &args,
        );
        assert!(ok, "case {} failed:\n{stderr}", case.display());
    }
}

#[test]
fn seed003_scripts_run_unchanged() {
    let dir = root().join("tests/seed003");
    for (rule, data) in [
        ("disk.tick", "disk.lp"),
        ("disk_alerta.tick", "disk.lp"),
        ("kube_components.tick", "kube_components.srpl"),
    ] {
        let rule = dir.join(rule);
        let expect = rule.with_extension("expected.jsonl");
        let (ok, _, stderr) = run_test(&rule, &dir.join(data), &expect, &[]);
        assert!(ok, "{} failed:\n{stderr}", rule.display());
    }
    // The .srpl recording names databases: points of another database are not read.
    let (_, _, stderr) = run_test(
        &dir.join("kube_components.tick"),
        &dir.join("kube_components.srpl"),
        &dir.join("kube_components.expected.jsonl"),
        &[],
    );
    assert!(stderr.contains("points read 240, matched 180"), "{stderr}");
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let case = root().join("tests/cases/levels_with_resets");
    let expected = std::fs::read_to_string(case.join("expected.jsonl")).unwrap();
    let broken = expected.replacen("\"level\":\"CRITICAL\"", "\"level\":\"WARNING\"", 1);
    let path = dir.join("expected.jsonl");
    std::fs::write(&path, broken).unwrap();
    let (ok, _, stderr) = run_test(
        &case.join("rule.tick"),
        &case.join("data.lp"),
        &path,
        &["--precision".into(), "s".into()],
    );
    assert!(!ok, "a mismatch must exit 1");
    assert!(stderr.contains("event 4 (expected line 4):"), "{stderr}");
    assert!(
        stderr.contains("level: expected \"WARNING\", got \"CRITICAL\""),
        "{stderr}"
    );
}

#[test]
fn json_output_uses_kapacitor_field_names() {
    let case = root().join("tests/cases/window_count");
    let out = alertd()
        .args(["test", "--format", "json", "--precision", "s", "--data"])
        .arg(case.join("data.lp"))
        .arg(case.join("rule.tick"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    for key in [
        "id",
        "message",
        "details",
        "time",
        "duration",
        "level",
        "previousLevel",
        "data",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(
        first["data"]["series"][0]["columns"],
        serde_json::json!(["time", "count"])
    );
    assert_eq!(
        first["data"]["series"][0]["values"][0][1],
        serde_json::json!(10)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("points read 26, matched 13"), "{stderr}");
}

#[test]
fn malformed_lines_are_reported_and_the_rest_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let case = root().join("tests/cases/levels_with_resets");
    let mut data = std::fs::read_to_string(case.join("data.lp")).unwrap();
    data = data.replacen("value=64", "value=6x4", 1);
    let path = dir.join("data.lp");
    std::fs::write(&path, data).unwrap();
    let out = alertd()
        .args(["test", "--precision", "s", "--data"])
        .arg(&path)
        .arg(case.join("rule.tick"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid field value for field 'value': '6x4'"),
        "{stderr}"
    );
    assert!(stderr.contains("malformed lines 1"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        6,
        "the six valid points still produce events:\n{stdout}"
    );
}
