//! Labelled text as TSV: one example per line, `label<TAB>text`, the label a decimal integer.
//!
//! UTF-8, no header. A trailing `\r` (CRLF files) is dropped and so is one final newline; any
//! other malformed line is an [`Error::Format`] naming the file and the 1-based line number.

use crate::error::{Error, Result};
use std::path::Path;

/// Reads a `label<TAB>text` file into `(label, text)` pairs, in file order.
pub fn read_tsv(path: &Path) -> Result<Vec<(usize, String)>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}"))))?;
    parse_tsv(&bytes, &what)
}

/// Parses `label<TAB>text` lines; `what` names the source in errors (`what:line`).
///
/// The text is everything after the first tab (it may be empty and may hold further tabs);
/// a line with no tab, a label that is not a non-negative decimal integer, an empty line in
/// the middle of the file, or bytes that are not UTF-8 are [`Error::Format`] errors.
pub fn parse_tsv(bytes: &[u8], what: &str) -> Result<Vec<(usize, String)>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |line: usize, msg: String| Error::Format {
        what: format!("{what}:{line}"),
        msg,
    };
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let line = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text =
                std::str::from_utf8(raw).map_err(|e| bad(line, format!("not UTF-8 ({e})")))?;
            let (label, text) = text.split_once('\t').ok_or_else(|| {
                bad(
                    line,
                    format!(
                        "expected `label<TAB>text`, found no tab in {:?}",
                        preview(text)
                    ),
                )
            })?;
            let label = label.trim().parse::<usize>().map_err(|_| {
                bad(
                    line,
                    format!("label {:?} is not a non-negative integer", preview(label)),
                )
            })?;
            Ok((label, text.to_string()))
        })
        .collect()
}

/// The first 40 characters of `s`, for error messages.
fn preview(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
