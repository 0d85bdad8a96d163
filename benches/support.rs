//! Bench input shared by the benchmarks: Telegraf-shaped line protocol made by
//! `../shared/data/gen_telegraf.py` (by default 200 hosts, 600 s, 10 s interval, about 143k
//! lines), generated once into the target directory, or the file named by `ALERTD_BENCH_LP`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn generator() -> PathBuf {
    if let Some(p) = std::env::var_os("ALERTD_GEN_TELEGRAF") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gen_telegraf.py")
}

/// The bench input's text.
#[allow(dead_code)] // not every bench uses both inputs
pub fn telegraf_input() -> String {
    match std::env::var_os("ALERTD_BENCH_LP") {
        Some(p) => read(&PathBuf::from(p)),
        None => telegraf_fleet(200, 600),
    }
}

/// Telegraf-shaped input of `hosts` hosts over `duration` seconds (10 s interval), generated
/// once into the target directory.
#[allow(dead_code)] // not every bench uses both inputs
pub fn telegraf_fleet(hosts: u32, duration: u32) -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-telegraf-{hosts}h-{duration}s.lp"));
    if !path.exists() {
        let script = generator();
        let tmp = path.with_extension("lp.partial");
        let status = Command::new("python3")
            .arg(&script)
            .args(["--hosts", &hosts.to_string()])
            .args(["--duration", &duration.to_string()])
            .args(["--interval", "10"])
            .arg("--out")
            .arg(&tmp)
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        std::fs::rename(&tmp, &path).expect("rename generated input");
    }
    read(&path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read bench input {}: {e}", path.display()))
}
