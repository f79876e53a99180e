//! **The audited quoting module**: every byte of SQL text this crate sends that is not a
//! `&'static str` written in this crate passes through one of the two functions here.
//!
//! * [`quote_ident`] quotes an identifier (a database, schema, table, role or user name) the
//!   way the engine's own quoting does it: PostgreSQL `"…"` with `"` doubled (what
//!   `quote_ident`/`format('%I')` produce for a name that needs quoting), MySQL/MariaDB
//!   `` `…` `` with `` ` `` doubled, SQL Server `[…]` with `]` doubled (what `QUOTENAME`
//!   produces).
//! * [`quote_literal`] quotes a string literal, for the few values an engine does not accept as
//!   a bound parameter — above all the password in `CREATE ROLE … PASSWORD`, `CREATE USER …
//!   IDENTIFIED BY` and `CREATE LOGIN … WITH PASSWORD`: PostgreSQL `E'…'` with `\` and `'`
//!   doubled (the same meaning whatever `standard_conforming_strings` says), MySQL/MariaDB
//!   `'…'` with `\` and `'` doubled (sessions of this crate run without
//!   `NO_BACKSLASH_ESCAPES`, see the MySQL module), SQL Server `N'…'` with `'` doubled.
//!
//! Both refuse NUL and every other control character (PostgreSQL cannot store NUL in text, and
//! T-SQL removes a backslash followed by a line break inside a literal), refuse the empty
//! identifier, and refuse identifiers longer than the engine keeps (PostgreSQL would silently
//! truncate them to 63 bytes). Everything else — quotes, backslashes, `$$`, `;`, comments,
//! any Unicode — is quoted so that the engine reads back exactly the input: the property tests
//! below check the text, and the live tests (`tests/postgres.rs`, `tests/mysql.rs`) send
//! hostile strings to the real servers and read them back.
//!
//! [`Sql`] is the only way this crate builds a statement: static fragments, quoted
//! identifiers and quoted literals, nothing else. A statement holding a secret says so
//! ([`Sql::holds_secret`]); its `Debug` shows no text, and errors about it carry no server
//! message (servers quote statement text in syntax errors).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// The SQL dialect a statement is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// Microsoft SQL Server (T-SQL).
    Mssql,
}

impl Dialect {
    /// The longest identifier the engine keeps, in bytes (PostgreSQL) or characters.
    fn max_ident(self) -> (usize, bool) {
        match self {
            Self::Postgres => (63, true),
            Self::MySql => (64, false),
            Self::Mssql => (128, false),
        }
    }
}

/// A name or value that cannot be quoted safely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The identifier is empty.
    #[error("an empty identifier cannot be quoted")]
    EmptyIdentifier,
    /// The identifier is longer than the engine keeps.
    #[error("identifier is longer than the {0} the engine keeps")]
    TooLong(&'static str),
    /// The text holds NUL or another control character.
    #[error("text with a control character cannot be quoted")]
    ControlCharacter,
}

fn check_text(text: &str) -> Result<(), QuoteError> {
    if text.chars().any(char::is_control) {
        Err(QuoteError::ControlCharacter)
    } else {
        Ok(())
    }
}

/// Quotes an identifier for `dialect`; see the [module docs](self).
pub fn quote_ident(dialect: Dialect, name: &str) -> Result<String, QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::EmptyIdentifier);
    }
    check_text(name)?;
    let (max, bytes) = dialect.max_ident();
    let len = if bytes {
        name.len()
    } else {
        name.chars().count()
    };
    if len > max {
        return Err(QuoteError::TooLong(match dialect {
            Dialect::Postgres => "63 bytes",
            Dialect::MySql => "64 characters",
            Dialect::Mssql => "128 characters",
        }));
    }
    let (open, close) = match dialect {
        Dialect::Postgres => ('"', '"'),
        Dialect::MySql => ('`', '`'),
        Dialect::Mssql => ('[', ']'),
    };
    let mut out = String::with_capacity(name.len() + 2);
    out.push(open);
    for c in name.chars() {
        if c == close {
            out.push(close);
        }
        out.push(c);
    }
    out.push(close);
    Ok(out)
}

/// Quotes a string literal for `dialect`; see the [module docs](self).
pub fn quote_literal(dialect: Dialect, value: &str) -> Result<String, QuoteError> {
    check_text(value)?;
    let mut out = String::with_capacity(value.len() + 4);
    match dialect {
        Dialect::Postgres => out.push_str("E'"),
        Dialect::MySql => out.push('\''),
        Dialect::Mssql => out.push_str("N'"),
    }
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if dialect != Dialect::Mssql => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// One SQL statement, built only from static fragments, [`quote_ident`] and
/// [`quote_literal`].
#[derive(Clone)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    secret: bool,
}

impl Sql {
    /// Starts a statement with a fixed fragment.
    pub fn new(dialect: Dialect, fragment: &'static str) -> Self {
        Self {
            dialect,
            text: fragment.to_owned(),
            secret: false,
        }
    }

    /// Appends a fixed fragment.
    pub fn push(mut self, fragment: &'static str) -> Self {
        self.text.push_str(fragment);
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(mut self, name: &str) -> Result<Self, QuoteError> {
        self.text.push_str(&quote_ident(self.dialect, name)?);
        Ok(self)
    }

    /// Appends quoted identifiers separated by `.` (`schema.table`).
    pub fn path(mut self, names: &[&str]) -> Result<Self, QuoteError> {
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                self.text.push('.');
            }
            self = self.ident(name)?;
        }
        Ok(self)
    }

    /// Appends a number.
    pub fn number(mut self, value: u64) -> Self {
        self.text.push_str(&value.to_string());
        self
    }

    /// Appends a quoted literal that is not secret (a date, a marker).
    pub fn literal(mut self, value: &str) -> Result<Self, QuoteError> {
        self.text.push_str(&quote_literal(self.dialect, value)?);
        Ok(self)
    }

    /// Appends a quoted secret literal (a password); the statement then holds a secret.
    pub fn secret(mut self, value: &SecretString) -> Result<Self, QuoteError> {
        self.text
            .push_str(&quote_literal(self.dialect, value.expose_secret())?);
        self.secret = true;
        Ok(self)
    }

    /// Joins statements into one multi-statement batch (`;` and a line break between them),
    /// sent in one round trip. Empty batches are refused by the servers; callers pass at
    /// least one statement.
    pub fn batch(statements: impl IntoIterator<Item = Sql>) -> Sql {
        let mut statements = statements.into_iter();
        let mut out = statements.next().unwrap_or(Sql {
            dialect: Dialect::Postgres,
            text: String::new(),
            secret: false,
        });
        for sql in statements {
            debug_assert_eq!(sql.dialect, out.dialect, "one dialect per batch");
            out.text.push_str(";\n");
            out.text.push_str(&sql.text);
            out.secret |= sql.secret;
        }
        out
    }

    /// Whether the text holds a secret.
    pub fn holds_secret(&self) -> bool {
        self.secret
    }

    /// The statement text. It may hold a secret ([`Self::holds_secret`]): never log it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The statement for sqlx, which accepts only `&'static str` or text asserted safe: this
    /// is the one place that asserts it.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn into_sqlx(self) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.text)
    }
}

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("Sql(<holds a secret>)")
        } else {
            f.debug_tuple("Sql").field(&self.text).finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Reads a quoted token back the way the engine's lexer does; `None` if the token does not
    /// span the whole text (something escaped the quotes).
    fn unquote(dialect: Dialect, text: &str, literal: bool) -> Option<String> {
        let (prefix, close, backslash) = match (dialect, literal) {
            (Dialect::Postgres, false) => ("\"", '"', false),
            (Dialect::MySql, false) => ("`", '`', false),
            (Dialect::Mssql, false) => ("[", ']', false),
            (Dialect::Postgres, true) => ("E'", '\'', true),
            (Dialect::MySql, true) => ("'", '\'', true),
            (Dialect::Mssql, true) => ("N'", '\'', false),
        };
        let body = text.strip_prefix(prefix)?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if backslash && c == '\\' {
                out.push(chars.next()?);
            } else if c == close {
                match chars.next() {
                    Some(next) if next == close => out.push(close),
                    Some(_) => return None,
                    None => return Some(out),
                }
            } else {
                out.push(c);
            }
        }
        None
    }

    fn hostile() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("`".to_owned()),
            Just("]".to_owned()),
            Just("[".to_owned()),
            Just("\\".to_owned()),
            Just("$$".to_owned()),
            Just("$tag$".to_owned()),
            Just(";".to_owned()),
            Just("--".to_owned()),
            Just("/*".to_owned()),
            Just("\0".to_owned()),
            Just("\n".to_owned()),
            Just("\\\n".to_owned()),
            Just("é".to_owned()),
            Just("\u{2019}".to_owned()),
            Just("\u{ff07}".to_owned()),
            Just("𝕏".to_owned()),
            "[a-zA-Z0-9 ]{0,4}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
    }

    const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Mssql];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn literals_read_back_exactly_or_are_refused(value in hostile()) {
            for dialect in DIALECTS {
                match quote_literal(dialect, &value) {
                    Ok(quoted) => prop_assert_eq!(unquote(dialect, &quoted, true), Some(value.clone())),
                    Err(e) => {
                        prop_assert_eq!(e, QuoteError::ControlCharacter);
                        prop_assert!(value.chars().any(char::is_control));
                    }
                }
            }
        }

        #[test]
        fn identifiers_read_back_exactly_or_are_refused(name in hostile()) {
            for dialect in DIALECTS {
                match quote_ident(dialect, &name) {
                    Ok(quoted) => prop_assert_eq!(unquote(dialect, &quoted, false), Some(name.clone())),
                    Err(QuoteError::ControlCharacter) => prop_assert!(name.chars().any(char::is_control)),
                    Err(QuoteError::EmptyIdentifier) => prop_assert!(name.is_empty()),
                    Err(QuoteError::TooLong(_)) => prop_assert!(name.len() > 63),
                }
            }
        }

        /// A statement built from hostile names and values holds exactly one token per
        /// quoted piece: the fixed fragments around them are unchanged.
        #[test]
        fn statements_keep_their_fixed_text(name in hostile(), value in hostile()) {
            for dialect in DIALECTS {
                let built = Sql::new(dialect, "ALTER ROLE ")
                    .ident(&name)
                    .and_then(|s| s.push(" PASSWORD ").literal(&value));
                if let Ok(sql) = built {
                    let rest = sql.text().strip_prefix("ALTER ROLE ").expect("prefix kept");
                    let ident = quote_ident(dialect, &name).expect("quoted above");
                    let rest = rest.strip_prefix(ident.as_str()).expect("identifier kept");
                    let rest = rest.strip_prefix(" PASSWORD ").expect("middle kept");
                    prop_assert_eq!(unquote(dialect, rest, true), Some(value.clone()));
                }
            }
        }
    }

    #[test]
    fn examples() {
        let check = |d, v: &str, want: &str| assert_eq!(quote_literal(d, v).unwrap(), want);
        check(Dialect::Postgres, r"it's \x", r"E'it''s \\x'");
        check(Dialect::MySql, r"it's \x", r"'it''s \\x'");
        check(Dialect::Mssql, r"it's \x", r"N'it''s \x'");
        assert_eq!(
            quote_ident(Dialect::Postgres, "a\"b").unwrap(),
            "\"a\"\"b\""
        );
        assert_eq!(quote_ident(Dialect::MySql, "a`b").unwrap(), "`a``b`");
        assert_eq!(quote_ident(Dialect::Mssql, "a]b[").unwrap(), "[a]]b[]");
        assert_eq!(
            quote_ident(Dialect::Postgres, &"é".repeat(32)),
            Err(QuoteError::TooLong("63 bytes"))
        );
        assert!(quote_literal(Dialect::Postgres, "a\0b").is_err());
        let secret = Sql::new(Dialect::Postgres, "ALTER ROLE x PASSWORD ")
            .secret(&SecretString::from("canary-77"))
            .unwrap();
        assert!(secret.holds_secret());
        assert!(!format!("{secret:?}").contains("canary"));
    }
}
