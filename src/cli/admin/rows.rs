//! The input of the bulk commands: a CSV file with a header row, read and checked row by row
//! before anything is sent. Pure: no I/O beyond the bytes given, no async.
//!
//! A row that cannot be used (bad email, empty name, bad group name, an email already on an
//! earlier row, bytes that are not UTF-8, more cells than the header has columns) becomes a
//! [`BadRow`] with its line number; the other rows go on. Blank rows (every cell empty, as spreadsheets export them) are skipped.

use std::collections::HashMap;

use crate::partner::wire;

/// The longest email the bridge accepts anywhere (RFC 5321's path limit).
const MAX_EMAIL_LEN: usize = 254;

/// A CSV file as read: its header names and its records with their line numbers.
pub struct Table {
    pub headers: Vec<String>,
    records: Vec<(u64, csv::ByteRecord)>,
}

/// A row that will not be sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// The email cell as given (may be empty or odd: it is what failed).
    pub email: String,
    pub reason: String,
}

/// A row of `import-csv` (or the one user of `add-user`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// `None` when the file has no groups column: the user's groups are left alone.
    pub groups: Option<Vec<String>>,
}

/// A row of `delete-csv`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRow {
    pub line: u64,
    pub email: String,
}

/// Where the columns of `import-csv` are.
#[derive(Debug, Clone, Copy)]
pub struct ImportColumns {
    pub email: usize,
    pub first_name: usize,
    pub last_name: usize,
    pub groups: Option<usize>,
}

impl Table {
    /// Parses `bytes` (a UTF-8 BOM is skipped) with `delimiter`. Rows may have fewer cells
    /// than the header (a missing cell reads as empty); a row with more is a bad row when its
    /// rows are checked (an unquoted `Analysts,Finance` would otherwise lose `Finance`). Fails only when the file as a
    /// whole cannot be read (no header row).
    pub fn parse(bytes: &[u8], delimiter: u8) -> Result<Table, String> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(bytes);
        let headers: Vec<String> = reader
            .byte_headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_owned())
            .collect();
        if headers.iter().all(String::is_empty) {
            return Err("the file has no header row".into());
        }
        let mut records = Vec::new();
        for record in reader.byte_records() {
            let record = record.map_err(|e| format!("cannot read the file: {e}"))?;
            if record.iter().all(|cell| cell.trim_ascii().is_empty()) {
                continue;
            }
            let line = record.position().map(|p| p.line()).unwrap_or_default();
            records.push((line, record));
        }
        Ok(Table { headers, records })
    }

    /// The index of the column named `name` (trimmed, case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        self.headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// Rows with data (blank rows are not counted).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The checked rows of `import-csv`, and the bad ones.
    pub fn import_rows(
        &self,
        columns: ImportColumns,
        groups_separator: char,
    ) -> (Vec<ImportRow>, Vec<BadRow>) {
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let mut seen = Seen::default();
        for (line, record) in &self.records {
            let line = *line;
            if let Some(reason) = self.extra_cells(record) {
                let email = cell(record, columns.email, "email").unwrap_or_else(|(e, _)| e);
                bad.push(BadRow {
                    line,
                    email,
                    reason,
                });
                continue;
            }
            let row = (|| {
                let email = cell(record, columns.email, "email")?;
                let first_name = cell(record, columns.first_name, "first name")?;
                let last_name = cell(record, columns.last_name, "last name")?;
                let groups = columns
                    .groups
                    .map(|i| cell(record, i, "groups"))
                    .transpose()?;
                Ok::<_, (String, String)>((email, first_name, last_name, groups))
            })();
            let (email, first_name, last_name, groups) = match row {
                Ok(r) => r,
                Err((email, reason)) => {
                    bad.push(BadRow {
                        line,
                        email,
                        reason,
                    });
                    continue;
                }
            };
            let checked = check_email(&email)
                .and_then(|()| check_name("first name", &first_name))
                .and_then(|()| check_name("last name", &last_name))
                .and_then(|()| {
                    groups
                        .as_deref()
                        .map(|g| parse_groups(g, groups_separator))
                        .transpose()
                })
                .and_then(|groups| seen.first(&email, line).map(|()| groups));
            match checked {
                Ok(groups) => rows.push(ImportRow {
                    line,
                    email,
                    first_name,
                    last_name,
                    groups,
                }),
                Err(reason) => bad.push(BadRow {
                    line,
                    email,
                    reason,
                }),
            }
        }
        (rows, bad)
    }

    /// The checked rows of `delete-csv` (emails in column `email`), and the bad ones.
    pub fn delete_rows(&self, email: usize) -> (Vec<DeleteRow>, Vec<BadRow>) {
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let mut seen = Seen::default();
        for (line, record) in &self.records {
            let line = *line;
            if let Some(reason) = self.extra_cells(record) {
                let email = cell(record, email, "email").unwrap_or_else(|(e, _)| e);
                bad.push(BadRow {
                    line,
                    email,
                    reason,
                });
                continue;
            }
            let checked = cell(record, email, "email").and_then(|e| {
                check_email(&e)
                    .and_then(|()| seen.first(&e, line))
                    .map(|()| e.clone())
                    .map_err(|reason| (e, reason))
            });
            match checked {
                Ok(email) => rows.push(DeleteRow { line, email }),
                Err((email, reason)) => bad.push(BadRow {
                    line,
                    email,
                    reason,
                }),
            }
        }
        (rows, bad)
    }
}

impl Table {
    /// Why `record` has cells past the header's last column, naming them; `None` when it has
    /// none, or only empty ones (a trailing delimiter).
    fn extra_cells(&self, record: &csv::ByteRecord) -> Option<String> {
        let extra: Vec<String> = record
            .iter()
            .skip(self.headers.len())
            .map(|c| String::from_utf8_lossy(c).trim().to_owned())
            .collect();
        if extra.iter().all(String::is_empty) {
            return None;
        }
        Some(format!(
            "the row has {} cells but the header has {} columns; extra: {} (a cell that holds \
             the delimiter must be quoted)",
            record.len(),
            self.headers.len(),
            extra
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Emails met so far (case-insensitively), with their line.
#[derive(Default)]
struct Seen(HashMap<String, u64>);

impl Seen {
    fn first(&mut self, email: &str, line: u64) -> Result<(), String> {
        match self.0.get(&email.to_lowercase()) {
            Some(first) => Err(format!("the email is already on line {first}")),
            None => {
                self.0.insert(email.to_lowercase(), line);
                Ok(())
            }
        }
    }
}

/// A cell, trimmed; empty when the row is short. `Err((email-ish text, reason))` when it is
/// not UTF-8.
fn cell(record: &csv::ByteRecord, index: usize, what: &str) -> Result<String, (String, String)> {
    let raw = record.get(index).unwrap_or_default();
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(_) => Err((
            String::from_utf8_lossy(raw).trim().to_owned(),
            format!("the {what} is not UTF-8 text"),
        )),
    }
}

/// An email the partner can be addressed with: what the partner client sends in a header
/// (`wire::validate_email`), with one `@` between a local part and a domain.
pub fn check_email(email: &str) -> Result<(), String> {
    if email.is_empty() {
        return Err("the email is empty".into());
    }
    wire::validate_email(email)?;
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "the email is longer than {MAX_EMAIL_LEN} characters"
        ));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err("the email must be local-part@domain".into()),
    }
}

/// A first or last name: required by the partner to create a user.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the {what} contains control characters"));
    }
    Ok(())
}

/// The group names of a cell, split on `separator`, trimmed, empty parts dropped, repeats
/// (case-insensitive) dropped; each must be a name the partner can address.
pub fn parse_groups(cell: &str, separator: char) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in cell
        .split(separator)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        wire::validate_group_name(name).map_err(|e| format!("{e} ({name:?})"))?;
        if !out.iter().any(|g| g.eq_ignore_ascii_case(name)) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn import(text: &str) -> (Vec<ImportRow>, Vec<BadRow>) {
        let t = Table::parse(text.as_bytes(), b',').unwrap();
        let columns = ImportColumns {
            email: t.column("email").unwrap(),
            first_name: t.column("first_name").unwrap(),
            last_name: t.column("last_name").unwrap(),
            groups: t.column("groups"),
        };
        t.import_rows(columns, ';')
    }

    #[test]
    fn good_rows_are_trimmed_and_groups_split() {
        let (rows, bad) = import(
            "\u{feff}Email, First_Name ,last_name,groups\n\
             ann@example.com , Ann,Lee, Analysts ; Sales;;analysts\n\
             ,,,\n\
             bob@example.com,Bob,Ray,\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].email, "ann@example.com");
        assert_eq!(rows[0].first_name, "Ann");
        assert_eq!(
            rows[0].groups.as_deref(),
            Some(&["Analysts".to_owned(), "Sales".to_owned()][..])
        );
        assert_eq!(rows[1].line, 4, "the blank row still counts as a line");
        assert_eq!(rows[1].groups.as_deref(), Some(&[][..]));
    }

    #[test]
    fn bad_rows_name_their_line_and_reason() {
        let (rows, bad) = import(
            "email,first_name,last_name,groups\n\
             not-an-email,A,B,\n\
             \"spa ce@example.com\",A,B,\n\
             ok@example.com,,B,\n\
             ok2@example.com,A,B,..\n\
             dup@example.com,A,B,\n\
             DUP@example.com,A,B,\n\
             short@example.com\n",
        );
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].email, "dup@example.com");
        let lines: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0].0, 2);
        assert!(lines[0].1.contains("local-part@domain"));
        assert_eq!(lines[1].0, 3);
        assert!(lines[1].1.contains("header"));
        assert!(lines[2].1.contains("first name is empty"));
        assert!(lines[3].1.contains("cannot be addressed"));
        assert_eq!(lines[4], (7, "the email is already on line 6"));
        assert_eq!(lines[5].0, 8);
        assert!(lines[5].1.contains("first name is empty"));
    }

    #[test]
    fn quoted_cells_may_hold_the_delimiter_and_newlines() {
        let (rows, bad) = import(
            "email,first_name,last_name,groups,note\n\
             a@example.com,\"Lee, Jr.\",A,x,\"two\nlines\"\n\
             b@example.com,B,B,,\n\
             c@example.com,C,\"Multi\nLine\",,\n",
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].first_name, "Lee, Jr.");
        assert_eq!(
            rows[1].line, 4,
            "line numbers follow the file, not the records"
        );
        assert_eq!(bad[0].line, 5);
        assert_eq!(bad[0].reason, "the last name contains control characters");
    }

    #[test]
    fn a_row_with_more_cells_than_columns_is_bad_and_names_the_extra_cells() {
        let (rows, bad) = import(
            "email,first_name,last_name,groups\n\
             ann@example.com,Ann,Lee,Analysts,Finance\n\
             bob@example.com,Bob,\"Ray, Jr.\",Analysts\n\
             cat@example.com,Cat,Cole,Analysts,\n",
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 2);
        assert_eq!(bad[0].email, "ann@example.com");
        assert!(
            bad[0]
                .reason
                .contains("5 cells but the header has 4 columns")
                && bad[0].reason.contains("extra: \"Finance\""),
            "{}",
            bad[0].reason
        );
        // Quoted, the delimiter is part of the cell; a trailing empty cell is no data.
        let emails: Vec<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["bob@example.com", "cat@example.com"]);
        let t = Table::parse(b"email\na@example.com,extra\n", b',').unwrap();
        let (rows, bad) = t.delete_rows(0);
        assert!(rows.is_empty());
        assert!(bad[0].reason.contains("extra: \"extra\""), "{bad:?}");
    }

    #[test]
    fn non_utf8_cells_are_bad_rows() {
        let t = Table::parse(b"email\na@example.com\n\xff@example.com\n", b',').unwrap();
        let (rows, bad) = t.delete_rows(0);
        assert_eq!(rows.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].reason.contains("UTF-8"));
    }

    #[test]
    fn a_file_without_header_is_refused() {
        assert!(Table::parse(b"", b',').is_err());
    }
}
