//! A `.env` parser that keeps the byte position of every value, so a value
//! can later be replaced without touching the rest of the file.
//!
//! Values come out as the Node `dotenv` package (16.x) reads them, so the
//! vault gets the key the project used:
//!
//! - blank lines and lines whose first non-blank character is `#` are
//!   skipped;
//! - `NAME=VALUE` may start with `export ` and have blanks around `=`,
//!   where blanks are every white space but line breaks, as in JavaScript
//!   (no-break space included);
//! - names are ASCII letters, digits, `_`, `.` and `-`, starting with a
//!   letter or `_`;
//! - `'single quoted'` and `` `backtick quoted` `` values are literal;
//! - `"double quoted"` values turn `\n` and `\r` into line breaks and keep
//!   every other backslash as it is;
//! - quoted values may span lines; line breaks inside them become `\n`;
//! - after a `NAME=` with nothing else on its line, a quoted value that
//!   starts on a later line, after blank lines only, is the value;
//! - an unquoted value ends at the line end or at the first `#`
//!   (`KEY=abc#def` is `abc`), and blanks around it are trimmed;
//! - `\n`, `\r\n` and a lone `\r` all end a line, and a leading UTF-8
//!   byte order mark is skipped.
//!
//! Where dotenv would skip a line silently (no `=`, an invalid name), the
//! parser returns an error instead, so an import never misses a key.
//!
//! Nothing is expanded: `${OTHER}` stays literal text, as in `dotenv`
//! without `dotenv-expand`. Errors carry a line number and never any text
//! from the file, because a malformed line may contain a secret.

use std::fmt;
use std::ops::Range;

use zeroize::Zeroizing;

use crate::secret::SecretString;

/// The UTF-8 byte order mark some Windows editors put at the start of a file.
const BOM: char = '\u{feff}';

/// Quoting of a value in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    None,
    Single,
    Double,
    Backtick,
}

/// One `NAME=VALUE` line (or several lines, for a multi-line quoted value).
#[derive(Debug, Clone)]
pub struct Assignment {
    pub name: String,
    /// Line number, counted from 1, of the line with the name.
    pub line: usize,
    /// The decoded value.
    pub value: SecretString,
    pub quote: Quote,
    /// Byte range of the value's text in the file, inside the quotes if any.
    /// Replacing these bytes changes the value and nothing else.
    pub raw_value: Range<usize>,
}

/// A malformed line, with its number counted from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: ParseProblem,
}

/// The reason a line could not be parsed. No variant contains file text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseProblem {
    MissingEquals,
    InvalidName,
    UnterminatedQuote(Quote),
    TextAfterQuote,
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEquals => f.write_str(
                "expected NAME=VALUE but found no `=`; comment the line out with `#` or fix it",
            ),
            Self::InvalidName => f.write_str(
                "invalid variable name; names use ASCII letters, digits, `_`, `.` and `-` and \
                 start with a letter or `_`",
            ),
            Self::UnterminatedQuote(quote) => {
                let mark = match quote {
                    Quote::Single => "'",
                    Quote::Backtick => "`",
                    Quote::Double | Quote::None => "\"",
                };
                write!(f, "the value opens a {mark} quote that is never closed")
            }
            Self::TextAfterQuote => f.write_str(
                "unexpected text after the closing quote; only a `#` comment may follow it",
            ),
        }
    }
}

/// Parses `.env` text into its assignments, in file order. A name that
/// occurs twice appears twice.
pub fn parse(text: &str) -> Result<Vec<Assignment>, ParseError> {
    let mut parser = Parser {
        text,
        pos: text.strip_prefix(BOM).map_or(0, |_| BOM.len_utf8()),
        line: 1,
    };
    let mut assignments = Vec::new();
    while parser.pos < text.len() {
        if let Some(assignment) = parser.next_line()? {
            assignments.push(assignment);
        }
    }
    Ok(assignments)
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the start of the next unread line.
    pos: usize,
    /// Number of the line that starts at `pos`.
    line: usize,
}

impl Parser<'_> {
    /// Reads the line at `pos` (and the following lines of a multi-line
    /// value) and moves `pos` past it.
    fn next_line(&mut self) -> Result<Option<Assignment>, ParseError> {
        let line = self.line;
        let error = |problem| ParseError { line, problem };
        let content_end = self.content_end(self.pos);
        let start = skip_blanks(self.text, self.pos, content_end);
        let rest = &self.text[start..content_end];

        if rest.is_empty() || rest.starts_with('#') {
            self.finish_line(content_end);
            return Ok(None);
        }

        let start = strip_export(self.text, start, content_end);
        let name_end = start
            + self.text[start..content_end]
                .find(|c: char| !is_name_char(c))
                .unwrap_or(content_end - start);
        let after_name = skip_blanks(self.text, name_end, content_end);
        if !self.text[after_name..content_end].starts_with('=') {
            let has_equals = self.text[start..content_end].contains('=');
            return Err(error(if has_equals {
                ParseProblem::InvalidName
            } else {
                ParseProblem::MissingEquals
            }));
        }
        let name = &self.text[start..name_end];
        if !is_valid_name(name) {
            return Err(error(ParseProblem::InvalidName));
        }

        let value_start = skip_blanks(self.text, after_name + 1, content_end);
        let (value, quote, raw_value, value_end) = match self.text[value_start..].chars().next() {
            Some('\'') => self.quoted(value_start, Quote::Single)?,
            Some('`') => self.quoted(value_start, Quote::Backtick)?,
            Some('"') => self.quoted(value_start, Quote::Double)?,
            _ if value_start == content_end => self
                .quoted_on_later_line(content_end)
                .unwrap_or_else(|| self.unquoted(value_start, content_end)),
            _ => self.unquoted(value_start, content_end),
        };

        let content_end = self.content_end(value_end);
        let after_value = skip_blanks(self.text, value_end, content_end);
        if quote != Quote::None
            && after_value < content_end
            && !self.text[after_value..].starts_with('#')
        {
            return Err(error(ParseProblem::TextAfterQuote));
        }
        self.finish_line(content_end);

        Ok(Some(Assignment {
            name: name.to_owned(),
            line,
            value,
            quote,
            raw_value,
        }))
    }

    /// Parses a quoted value whose opening quote is at `open`. Returns the
    /// value, its quote, the raw range inside the quotes and the offset just
    /// past the closing quote.
    fn quoted(
        &mut self,
        open: usize,
        quote: Quote,
    ) -> Result<(SecretString, Quote, Range<usize>, usize), ParseError> {
        let inner_start = open + 1;
        let close = match quote {
            Quote::Double => find_closing_double_quote(self.text, inner_start),
            Quote::Single => self.text[inner_start..].find('\'').map(|i| inner_start + i),
            Quote::Backtick | Quote::None => {
                self.text[inner_start..].find('`').map(|i| inner_start + i)
            }
        };
        let Some(close) = close else {
            return Err(ParseError {
                line: self.line,
                problem: ParseProblem::UnterminatedQuote(quote),
            });
        };

        let raw = &self.text[inner_start..close];
        let value = if quote == Quote::Double {
            decode_double_quoted(raw)
        } else {
            normalize_line_breaks(raw)
        };
        // The value's own line breaks belong to lines that `finish_line`
        // will not see, so count them here.
        self.line += count_line_breaks(raw);
        Ok((value, quote, inner_start..close, close + 1))
    }

    /// Parses a quoted value that starts after the line break at
    /// `content_end` and any blank lines, as dotenv does for a `NAME=` with
    /// nothing after it: its pattern lets white space, line breaks
    /// included, come before the opening quote. Returns None, and leaves
    /// the line count as it was, unless such a value is found and only
    /// blanks or a comment follow its closing quote. In that case dotenv
    /// reads an empty value and skips the lines, which [`parse`] then
    /// reports as malformed.
    fn quoted_on_later_line(
        &mut self,
        content_end: usize,
    ) -> Option<(SecretString, Quote, Range<usize>, usize)> {
        let rest = &self.text[content_end..];
        let skipped = rest.len()
            - rest
                .trim_start_matches(|c| is_blank(c) || c == '\n' || c == '\r')
                .len();
        let open = content_end + skipped;
        let quote = match self.text[open..].chars().next()? {
            '\'' => Quote::Single,
            '`' => Quote::Backtick,
            '"' => Quote::Double,
            _ => return None,
        };
        let name_line = self.line;
        self.line += count_line_breaks(&self.text[content_end..open]);
        let parsed = self.quoted(open, quote).ok().filter(|(.., value_end)| {
            let line_end = self.content_end(*value_end);
            let after = skip_blanks(self.text, *value_end, line_end);
            after == line_end || self.text[after..].starts_with('#')
        });
        if parsed.is_none() {
            self.line = name_line;
        }
        parsed
    }

    /// Parses an unquoted value from `start` to the end of the line or a
    /// comment, trimming blanks.
    fn unquoted(
        &self,
        start: usize,
        content_end: usize,
    ) -> (SecretString, Quote, Range<usize>, usize) {
        let segment = &self.text[start..content_end];
        let comment = segment.find('#').unwrap_or(segment.len());
        let trimmed = segment[..comment].trim_end_matches(is_blank);
        let end = start + trimmed.len();
        (SecretString::from(trimmed), Quote::None, start..end, end)
    }

    /// Returns the offset where the line containing `from` ends, before its
    /// `\n`, `\r\n` or `\r`.
    fn content_end(&self, from: usize) -> usize {
        self.text[from..]
            .find(['\n', '\r'])
            .map_or(self.text.len(), |i| from + i)
    }

    /// Moves past the line break after `content_end`.
    fn finish_line(&mut self, content_end: usize) {
        let rest = &self.text[content_end..];
        let break_len = if rest.starts_with("\r\n") {
            2
        } else if rest.starts_with(['\n', '\r']) {
            1
        } else {
            0
        };
        self.pos = content_end + break_len;
        self.line += 1;
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

fn is_valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
}

/// Returns whether `c` is white space inside a line as dotenv's `\s` and
/// JavaScript's `trim()` see it: tab, vertical tab, form feed, space,
/// no-break space, the other Unicode space separators and the byte order
/// mark.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

fn skip_blanks(text: &str, from: usize, end: usize) -> usize {
    let rest = &text[from..end];
    end - rest.trim_start_matches(is_blank).len()
}

/// Skips an `export` keyword followed by blanks. `export=1` and `exporter=1`
/// are assignments to those names, so the keyword needs a blank after it.
fn strip_export(text: &str, start: usize, end: usize) -> usize {
    let rest = &text[start..end];
    match rest.strip_prefix("export") {
        Some(after) if after.starts_with(is_blank) => {
            skip_blanks(text, start + "export".len(), end)
        }
        _ => start,
    }
}

/// Finds the `"` that closes a double-quoted value, skipping `\"`.
fn find_closing_double_quote(text: &str, from: usize) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text[from..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(from + i),
            _ => {}
        }
    }
    None
}

/// Returns how many lines the line breaks in `text` end: `\r\n`, `\n`
/// and a lone `\r` each end one.
fn count_line_breaks(text: &str) -> usize {
    text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count()
}

/// Decodes a double-quoted value into a zeroized buffer: `\n` and `\r`
/// become line breaks, as in dotenv, and line breaks become `\n`.
fn decode_double_quoted(raw: &str) -> SecretString {
    let mut value = Zeroizing::new(String::with_capacity(raw.len()));
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('n')) => {
                chars.next();
                value.push('\n');
            }
            ('\\', Some('r')) => {
                chars.next();
                value.push('\r');
            }
            ('\r', Some('\n')) => {}
            ('\r', _) => value.push('\n'),
            (other, _) => value.push(other),
        }
    }
    // The buffer never grows, because decoding only shortens the text, and
    // `From<&str>` allocates exactly the value's length. So no reallocation
    // leaves an unzeroized copy behind.
    SecretString::from(value.as_str())
}

/// Turns the `\r\n` and lone `\r` breaks of a multi-line literal value
/// into `\n`.
fn normalize_line_breaks(raw: &str) -> SecretString {
    if !raw.contains('\r') {
        return SecretString::from(raw);
    }
    // The buffer never grows, because the output is no longer than `raw`.
    let mut value = Zeroizing::new(String::with_capacity(raw.len()));
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\r', Some('\n')) => {}
            ('\r', _) => value.push('\n'),
            (other, _) => value.push(other),
        }
    }
    SecretString::from(value.as_str())
}
