//! Fuzzes the line protocol parser and the recording reader with arbitrary input.
//!
//! Checks that nothing panics, that every accepted point has a measurement and a field,
//! and that the different ways of reading the same text agree: `parse_lines` against
//! `split_lines` + `parse_line` and against `parse_lines_bytes`, and a recording read
//! whole against the same recording read chunk by chunk. Debug assertions (on by default
//! under `cargo fuzz`) also make the parser compare its fast path with its general path.

#![no_main]

use alertd::ingest::line_protocol::{
    LineError, ParsedLine, parse_line, parse_lines, parse_lines_bytes, split_lines,
};
use alertd::ingest::recording::{Recording, RecordingFormat};
use libfuzzer_sys::fuzz_target;

fn check(line_no: usize, result: &Result<ParsedLine<'_>, LineError>) {
    assert!(line_no >= 1);
    match result {
        Ok(p) => {
            assert!(!p.measurement.is_empty(), "empty measurement: {p:?}");
            assert!(!p.fields.is_empty(), "no fields: {p:?}");
            assert!(p.tags.iter().all(|(k, v)| !k.is_empty() && !v.is_empty()));
            assert!(p.fields.iter().all(|(k, _)| !k.is_empty()));
        }
        Err(e) => {
            assert!(
                e.line >= line_no && e.column >= 1,
                "{e:?} for line {line_no}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let from_bytes: Vec<_> = parse_lines_bytes(data).collect();
    for (n, r) in &from_bytes {
        check(*n, r);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let whole: Vec<_> = parse_lines(text).collect();
    assert_eq!(whole, from_bytes);
    let pieces: Vec<_> = split_lines(text)
        .map(|(n, line)| (n, parse_line(line, n)))
        .collect();
    assert_eq!(whole, pieces);

    let target = usize::from(data.first().copied().unwrap_or(0)) + 1;
    for format in [RecordingFormat::LineProtocol, RecordingFormat::Srpl] {
        let rec = Recording::from_text(text.to_owned(), format);
        let all: Vec<_> = rec.entries().collect();
        for e in &all {
            check(e.line, &e.point);
        }
        let chunks = rec.chunks(target);
        let joined: String = chunks.iter().map(|c| c.text).collect();
        assert_eq!(joined, text);
        let from_chunks: Vec<_> = chunks.iter().flat_map(|c| c.entries()).collect();
        assert_eq!(from_chunks, all);
    }
});
