//! Every statement the SQL Server provisioner sends, checked by the best T-SQL tooling that
//! installs here: `sqlfluff parse --dialect tsql` (sqlfluff 4, PyPI; in the workspace venv).
//! No SQL Server runs on this machine, so this checks syntax, not behaviour.
//!
//! sqlfluff's T-SQL grammar has gaps: it cannot parse `ALTER LOGIN`, `DROP LOGIN`,
//! `ALTER SERVER ROLE`, `DROP SERVER ROLE` and `KILL`, nor a bracketed identifier holding `[` or `]]` (both valid T-SQL).
//! Statements of those kinds are listed in [`SQLFLUFF_GAPS`]; for each the test checks that
//! sqlfluff still fails on it (so the list shrinks when sqlfluff learns them) and that its text
//! is exactly the fixed form with the quoted identifiers the quoting module produced.
#![cfg(feature = "mssql")]

use std::path::Path;
use std::process::Command;

use apono_provision_sql::mssql::plan;
use apono_provision_sql::quote::{Dialect, Sql, quote_ident};
use apono_provision_sql::{Level, Scope};
use secrecy::SecretString;

/// Statement kinds sqlfluff 4.5's T-SQL grammar cannot parse, with the text between the
/// identifiers each must have.
const SQLFLUFF_GAPS: &[&str] = &[
    "ALTER LOGIN ",
    "DROP LOGIN ",
    "ALTER SERVER ROLE ",
    "DROP SERVER ROLE ",
    "KILL ",
];

fn sqlfluff() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/sqlfluff");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test.sh (it installs scripts/requirements-test.txt)",
        venv.display()
    );
    venv
}

/// The parse errors sqlfluff reports for `statements`, one batch each (`GO` between them),
/// as (statement, message).
fn parse_errors(statements: &[String]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("statements.sql");
    let mut text = String::new();
    let mut first_lines = Vec::new();
    let mut line = 1;
    for s in statements {
        first_lines.push(line);
        text.push_str(s);
        text.push_str("\nGO\n");
        line += s.lines().count() + 1;
    }
    std::fs::write(&file, &text).expect("write");
    let out = Command::new(sqlfluff())
        .args([
            "lint",
            "--dialect",
            "tsql",
            "--rules",
            "CP01",
            "--format",
            "json",
        ])
        .arg(&file)
        .output()
        .expect("sqlfluff runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sqlfluff printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut errors = Vec::new();
    for violation in report[0]["violations"].as_array().expect("violations") {
        if violation["code"] != "PRS" {
            continue;
        }
        let at = violation["start_line_no"].as_u64().expect("line") as usize;
        let index = first_lines
            .iter()
            .rposition(|&l| l <= at)
            .expect("a statement");
        errors.push((
            statements[index].clone(),
            violation["description"].as_str().unwrap_or("").to_owned(),
        ));
    }
    errors
}

/// Everything the provisioner can send for one set of names.
fn every_statement(login: &str, role: &str, db: &str, schema: &str, table: &str) -> Vec<Sql> {
    let password = SecretString::from("P'a\"s;--w/*rd\\");
    let mut out = vec![plan::create_marker_role(), plan::kill(57)];
    out.extend(plan::create_login(login, &password).unwrap());
    out.extend(plan::set_password(login, &password).unwrap());
    out.push(plan::disable_login(login).unwrap());
    out.push(plan::use_database(db).unwrap());
    out.extend(plan::create_grant_record(role, login).unwrap());
    out.extend(plan::drop_grant_record(role, login).unwrap());
    out.push(plan::create_user(login).unwrap());
    out.push(plan::create_role(role).unwrap());
    let scopes = [
        Scope::Cluster,
        Scope::Database(db.into()),
        Scope::Schema {
            database: db.into(),
            schema: schema.into(),
        },
        Scope::Table {
            database: db.into(),
            schema: Some(schema.into()),
            table: table.into(),
        },
    ];
    for scope in &scopes {
        for level in [Level::ReadOnly, Level::ReadWrite, Level::Admin] {
            out.extend(plan::privileges(scope, &level, role, login).unwrap());
        }
    }
    out.extend(plan::drop_role(role, login).unwrap());
    out.push(plan::reassign_schema(schema, "dbo").unwrap());
    out.push(plan::drop_user(login).unwrap());
    out.extend(plan::drop_login(login).unwrap());
    out
}

/// For a statement sqlfluff cannot parse: the fixed text around its bracketed identifiers is
/// one of the known forms, and each identifier is exactly a quoted name.
fn is_fixed_form(text: &str, names: &[&str]) -> bool {
    let mut rest = text.to_owned();
    for name in names {
        let quoted = quote_ident(Dialect::Mssql, name).unwrap();
        rest = rest.replace(&quoted, "{}");
    }
    [
        "ALTER LOGIN {} DISABLE",
        "ALTER LOGIN {} ENABLE",
        "ALTER LOGIN {} WITH PASSWORD = N'P''a\"s;--w/*rd\\'",
        "DROP LOGIN {}",
        "ALTER SERVER ROLE {} ADD MEMBER {}",
        "ALTER SERVER ROLE {} DROP MEMBER {}",
        "ALTER SERVER ROLE [apono_managed] ADD MEMBER {}",
        "ALTER SERVER ROLE [apono_managed] DROP MEMBER {}",
        "DROP SERVER ROLE {}",
        "KILL 57",
    ]
    .contains(&rest.as_str())
}

#[test]
fn every_statement_parses_as_tsql_or_is_a_known_fixed_form() {
    let name_sets: [[&str; 5]; 3] = [
        [
            "alice",
            "apono_grant__abcdefghijklmnop",
            "sales",
            "dbo",
            "orders",
        ],
        [
            "john_smith__k5x2q7mbe3",
            "apono_grant__zzzzzzzzzzzzzzzz",
            "app db",
            "sales team",
            "order lines",
        ],
        // Hostile, short of `[` and `]` (sqlfluff cannot lex them inside brackets; the quoting
        // property tests cover them).
        [
            "o'brien",
            "apono_grant__q",
            "db'; DROP DATABASE x; --",
            "s\"c/*h",
            "t(1) é 𝕏 x",
        ],
    ];
    let mut checked = Vec::new();
    let mut gaps = Vec::new();
    for [login, role, db, schema, table] in name_sets {
        for sql in every_statement(login, role, db, schema, table) {
            let text = sql.text().to_owned();
            if SQLFLUFF_GAPS.iter().any(|p| text.starts_with(p)) {
                assert!(
                    is_fixed_form(&text, &[login, role, db, schema, table]),
                    "not a known fixed form: {text}"
                );
                gaps.push(text);
            } else {
                checked.push(text);
            }
        }
    }
    checked.extend(plan::QUERIES.iter().map(|q| (*q).to_owned()));
    checked.sort();
    checked.dedup();
    let errors = parse_errors(&checked);
    assert!(errors.is_empty(), "sqlfluff cannot parse: {errors:#?}");
    // The gaps are real: sqlfluff fails on each kind (one at a time, so that one unparsable
    // section cannot hide another).
    for kind in SQLFLUFF_GAPS {
        let text = gaps
            .iter()
            .find(|g| g.starts_with(kind))
            .unwrap_or_else(|| panic!("no statement of kind {kind}"));
        assert!(
            !parse_errors(std::slice::from_ref(text)).is_empty(),
            "sqlfluff now parses {text}: move {kind:?} out of SQLFLUFF_GAPS"
        );
    }
    assert!(checked.len() > 40, "{} statements checked", checked.len());
}
