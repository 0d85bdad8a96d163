//! Bench input shared by the benchmarks: Telegraf-shaped line protocol made by
//! `../shared/data/gen_telegraf.py` (200 hosts, 600 s, 10 s interval, about 143k lines),
//! generated once into the target directory, or the file named by `ALERTD_BENCH_LP`.

use std::path::{Path, PathBuf};
use std::process::Command;

const GEN_ARGS: [&str; 6] = ["--hosts", "200", "--duration", "600", "--interval", "10"];

fn generator() -> PathBuf {
    if let Some(p) = std::env::var_os("ALERTD_GEN_TELEGRAF") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gen_telegraf.py")
}

/// The bench input's text.
pub fn telegraf_input() -> String {
    let path = match std::env::var_os("ALERTD_BENCH_LP") {
        Some(p) => PathBuf::from(p),
        None => {
            let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-telegraf-200h-600s.lp");
            if !path.exists() {
                let script = generator();
                let tmp = path.with_extension("lp.partial");
                let status = Command::new("python3")
                    .arg(&script)
                    .args(GEN_ARGS)
                    .arg("--out")
                    .arg(&tmp)
                    .status()
                    .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
                assert!(status.success(), "{} failed: {status}", script.display());
                std::fs::rename(&tmp, &path).expect("rename generated input");
            }
            path
        }
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read bench input {}: {e}", path.display()))
}
