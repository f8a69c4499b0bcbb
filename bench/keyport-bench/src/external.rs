//! Reads the output of keyport-core's `vault_bench` and
//! `requestlog_bench` examples, which `bench/run.sh` runs before the
//! proxy benchmark.

/// Numbers from `vault_bench`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VaultNumbers {
    /// Rows of its table: operation and milliseconds.
    pub rows: Vec<(String, f64)>,
    pub peak_rss_mib: Option<f64>,
}

impl VaultNumbers {
    /// Milliseconds of the first row whose name starts with `prefix`.
    pub fn millis(&self, prefix: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, millis)| *millis)
    }
}

pub fn parse_vault(output: &str) -> VaultNumbers {
    let mut numbers = VaultNumbers::default();
    for line in output.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if let [name, millis] = cells[..] {
            if let Ok(millis) = millis.parse() {
                numbers.rows.push((name.to_string(), millis));
            }
        }
        if let Some(rest) = line.strip_prefix("peak RSS (VmHWM):") {
            numbers.peak_rss_mib = rest
                .split_whitespace()
                .next()
                .and_then(|value| value.parse().ok());
        }
    }
    numbers
}

/// One query of `requestlog_bench`'s first-page list.
#[derive(Debug, Clone, PartialEq)]
pub struct PageTiming {
    pub filter: String,
    pub millis: f64,
    pub rows: u32,
    /// SQLite's query plan, when printed.
    pub plan: String,
}

/// Numbers from `requestlog_bench`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestLogNumbers {
    /// The line that reports how many rows were inserted and how fast.
    pub inserted: Option<String>,
    pub pages: Vec<PageTiming>,
}

pub fn parse_requestlog(output: &str) -> RequestLogNumbers {
    let mut numbers = RequestLogNumbers::default();
    let mut in_pages = false;
    for line in output.lines() {
        if line.starts_with("inserted ") {
            numbers.inserted = Some(line.trim().to_string());
        }
        if line.starts_with("first page of") {
            in_pages = true;
            continue;
        }
        if in_pages {
            match parse_page_line(line) {
                Some(page) => numbers.pages.push(page),
                None => in_pages = false,
            }
        }
    }
    numbers
}

/// Parses `NAME   12.34 ms   50 rows  PLAN`; the name may contain spaces.
fn parse_page_line(line: &str) -> Option<PageTiming> {
    let (left, right) = line.split_once(" ms ")?;
    let (name, millis) = left.trim_end().rsplit_once(' ')?;
    let millis = millis.parse().ok()?;
    let right = right.trim_start();
    let (rows, plan) = right.split_once(" rows").unwrap_or((right, ""));
    Some(PageTiming {
        filter: name.trim().to_string(),
        millis,
        rows: rows.trim().parse().ok()?,
        plan: plan.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_output_parses() {
        let output = "| operation | time (ms) |\n|---|---:|\n| create (empty vault) | 612 |\n| set_key + save, 20 keys (median) | 120 |\n| unlock (median) | 598 |\n\nruns per median: 5\npeak RSS (VmHWM): 71.4 MiB\n";
        let numbers = parse_vault(output);
        assert_eq!(numbers.rows.len(), 3);
        assert_eq!(numbers.millis("unlock"), Some(598.0));
        assert_eq!(numbers.millis("set_key + save"), Some(120.0));
        assert_eq!(numbers.peak_rss_mib, Some(71.4));
    }

    #[test]
    fn requestlog_output_parses() {
        let output = "inserted 1000000 rows in 30.1 s (33222 rows/s), 0 dropped\ndatabase size 300.0 MiB\n\nfirst page of 50 rows, best of 5 runs:\nno filter                               0.12 ms   50 rows  SCAN requests USING INDEX idx_start\npath contains 'nowhere'               250.50 ms    0 rows  SCAN requests\npage after 21,000 rows                  0.20 ms   50 rows\n\ntotals over all rows:\nDay                                   900.00 ms   30 groups\n";
        let numbers = parse_requestlog(output);
        assert_eq!(numbers.pages.len(), 3);
        assert_eq!(numbers.pages[1].filter, "path contains 'nowhere'");
        assert_eq!(numbers.pages[1].millis, 250.5);
        assert_eq!(numbers.pages[1].rows, 0);
        assert_eq!(numbers.pages[0].plan, "SCAN requests USING INDEX idx_start");
        assert_eq!(numbers.pages[2].plan, "");
        assert!(numbers.inserted.unwrap().starts_with("inserted 1000000"));
    }
}
