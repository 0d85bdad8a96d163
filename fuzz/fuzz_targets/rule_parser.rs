//! Feeds arbitrary text to the rule parser and checker: they must return a diagnostic or a plan,
//! never panic, and a diagnostic must point inside the source.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match alertd::rules::check::compile_source("fuzz", src) {
        Ok(plan) => {
            assert!(!plan.nodes.is_empty());
        }
        Err(d) => {
            let lines = src.split('\n').count().max(1) as u32;
            assert!(d.pos.line >= 1 && d.pos.line <= lines, "line {} of {}", d.pos.line, lines);
            assert!(d.pos.col >= 1);
            // Rendering with a caret must not panic either.
            let _ = d.render("fuzz.tick", src);
        }
    }
});
