//! The manual's reference tables, as the tests that hold them against the code read
//! them: a table's rows, with each cell trimmed and a `|` inside a code span kept.
//! Test code only. Bottom floor: imports nothing of the gate's own.

use std::path::Path;

/// The text of `docs/{page}`.
pub(crate) fn page(page: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of every table on `docs/{page}` whose header row starts with the cell
/// `first`, without the header and the delimiter row.
pub(crate) fn rows(page_name: &str, first: &str) -> Vec<Vec<String>> {
    let text = page(page_name);
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        if cells.first().is_some_and(|c| c == first) {
            in_table = true;
            continue;
        }
        if in_table
            && !cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            rows.push(cells);
        }
    }
    assert!(
        !rows.is_empty(),
        "docs/{page_name} has no table headed `{first}`"
    );
    rows
}

/// The cells of a table row; a `|` inside backticks is part of its cell.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut code = false;
    for ch in inner.chars() {
        if ch == '|' && !code {
            out.push(String::new());
            continue;
        }
        if ch == '`' {
            code = !code;
        }
        if let Some(cell) = out.last_mut() {
            cell.push(ch);
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The code spans of a cell, in order: "`a`, `b`" gives ["a", "b"].
pub(crate) fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[test]
fn cells_keep_pipes_inside_code_and_rows_skip_the_delimiter() {
    assert_eq!(cells("| `a|b` | c |"), ["`a|b`", "c"]);
    assert_eq!(code_spans("`x`, `y` (z)"), ["x", "y"]);
}
