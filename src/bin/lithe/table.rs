//! Output of a job's rows: an aligned text table for people, or JSON lines for scripts.

use serde_json::{Map, Value};

/// Prints `rows` (objects with the same keys) as JSON lines or as a table with those columns.
pub fn print_rows(rows: &[Map<String, Value>], json: bool) {
    if json {
        for row in rows {
            println!("{}", Value::Object(row.clone()));
        }
        return;
    }
    let Some(first) = rows.first() else { return };
    let headers: Vec<&String> = first.keys().collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            headers
                .iter()
                .map(|h| match r.get(*h) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => match n.as_f64() {
                        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                            format!("{f:.0}")
                        }
                        Some(f) if n.is_f64() => format!("{f:.4}"),
                        _ => n.to_string(),
                    },
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            cells
                .iter()
                .map(|c| c[i].len())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |items: Vec<String>| {
        let padded: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:>w$}"))
            .collect();
        println!("{}", padded.join("  "));
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for c in cells {
        line(c);
    }
}
