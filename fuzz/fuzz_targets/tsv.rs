//! `label<TAB>text` buffers: parsed, and every parsed line is one line of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lithe::data::tsv::parse_tsv;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = parse_tsv(data, "fuzz") {
        let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
        assert!(
            rows.len() <= lines,
            "{} rows from {lines} lines",
            rows.len()
        );
        for (_, text) in &rows {
            assert!(!text.contains('\n'), "a row spans lines");
        }
    }
});
