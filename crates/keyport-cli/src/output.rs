//! Printing results and messages. Results go to standard output so scripts
//! can capture them; notices and errors go to standard error.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Prints a result line on standard output. A reader that closed the pipe
/// early (`keyport logs | head`) ends the output quietly.
pub fn result_line(text: &str) {
    let _ = write_result_line(text);
}

/// Prints a result line on standard output and reports a failed write,
/// for output that must not be lost.
pub fn write_result_line(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Prints a notice for the user on standard error.
pub fn notice(text: &str) {
    eprintln!("{text}");
}

/// Prints an error on standard error.
pub fn error_line(text: &str) {
    eprintln!("error: {text}");
}

/// Flushes standard output, so a parent process reading a pipe receives
/// lines that announce readiness at once.
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Formats rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_with_widths(header, rows, &mut Vec::new())
}

/// Formats like [`table`], with each column at least as wide as in
/// `widths`, and stores the widths used back into it. A caller that prints
/// more rows later passes the same `widths`, so later rows line up with
/// earlier ones unless they are wider.
pub fn table_with_widths(header: &[&str], rows: &[Vec<String>], widths: &mut Vec<usize>) -> String {
    widths.resize(header.len(), 0);
    for (width, cell) in widths.iter_mut().zip(header) {
        *width = (*width).max(cell.chars().count());
    }
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| cell.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths.iter())
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["NAME", "KEY"],
            &[
                vec!["openai".into(), "sk-…abcd".into()],
                vec!["x".into(), "y".into()],
            ],
        );
        assert_eq!(text, "NAME    KEY\nopenai  sk-…abcd\nx       y");
    }

    #[test]
    fn later_rows_keep_earlier_widths() {
        let mut widths = Vec::new();
        let first = table_with_widths(
            &["NAME", "KEY"],
            &[vec!["openai".into(), "k1".into()]],
            &mut widths,
        );
        assert_eq!(first, "NAME    KEY\nopenai  k1");
        let later = table_with_widths(
            &["NAME", "KEY"],
            &[vec!["x".into(), "k2".into()]],
            &mut widths,
        );
        assert_eq!(later, "NAME    KEY\nx       k2");
        assert_eq!(widths, [6, 3]);
    }
}
