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
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
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
            .zip(&widths)
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
}
