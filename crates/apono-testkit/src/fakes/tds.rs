//! A SQL Server stand-in speaking TDS 7.x over plain TCP (no TLS: it answers PRELOGIN with
//! `ENCRYPT_NOT_SUP`), for the `mssql` provisioner, which no real SQL Server checks here.
//!
//! The wire format is real — PRELOGIN, LOGIN7 (with its password obfuscation), SQL batches,
//! RPC `sp_executesql` with `NVARCHAR` parameters, and the `COLMETADATA`, `ROW`, `DONE`,
//! `DONEINPROC`, `RETURNSTATUS`, `DONEPROC`, `LOGINACK`, `ENVCHANGE` and `ERROR` tokens — and
//! `tests/fake_tds.rs` checks it with `python-tds`, an independent client. What it does with
//! the SQL is a **model** of the security statements the provisioner sends (logins, server
//! roles, database users and roles, grants), recognised by their fixed forms; anything else is
//! refused with error 102, as SQL Server refuses what it cannot parse. The model is ours: it
//! shows the provisioner's conversation and bookkeeping, not SQL Server's semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::FakeError;

const FAKE: &str = "tds";

/// A login of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeLogin {
    /// Its password.
    pub password: String,
    /// Whether it may log in (`ALTER LOGIN … ENABLE`/`DISABLE`).
    pub enabled: bool,
}

/// One database of the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeDatabase {
    /// `(schema, table)` pairs discovery finds.
    pub tables: BTreeSet<(String, String)>,
    /// Database users.
    pub users: BTreeSet<String>,
    /// Database roles and their members.
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// The `GRANT` statements received, as sent.
    pub grants: Vec<String>,
}

/// The server's state, as the statements it received left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeSqlServerState {
    /// Logins by name.
    pub logins: BTreeMap<String, FakeLogin>,
    /// Server roles and their members.
    pub server_roles: BTreeMap<String, BTreeSet<String>>,
    /// Databases by name (`master` included).
    pub databases: BTreeMap<String, FakeDatabase>,
    /// Every SQL batch and RPC statement received, in order.
    pub statements: Vec<String>,
    /// Logins refused.
    pub failed_logins: Vec<String>,
}

/// A TDS server on `127.0.0.1` running the model; stopped when dropped.
pub struct FakeSqlServer {
    port: u16,
    state: Arc<Mutex<FakeSqlServerState>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for FakeSqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSqlServer")
            .field("port", &self.port)
            .finish()
    }
}

impl FakeSqlServer {
    /// Starts the server with one admin login (a member of `sysadmin`) and `tables` as
    /// `(database, schema, table)`.
    pub fn start(
        admin: &str,
        password: &str,
        tables: &[(&str, &str, &str)],
    ) -> Result<Self, FakeError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|source| FakeError::Start { fake: FAKE, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| FakeError::Start { fake: FAKE, source })?
            .port();
        let mut state = FakeSqlServerState::default();
        state.logins.insert(
            admin.to_owned(),
            FakeLogin {
                password: password.to_owned(),
                enabled: true,
            },
        );
        state
            .server_roles
            .insert("sysadmin".into(), [admin.to_owned()].into());
        state
            .databases
            .insert("master".into(), FakeDatabase::default());
        for (db, schema, table) in tables {
            state
                .databases
                .entry((*db).to_owned())
                .or_default()
                .tables
                .insert(((*schema).to_owned(), (*table).to_owned()));
        }
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = Session::new(stream, state).serve();
                });
            }
        });
        Ok(Self { port, state, stop })
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A copy of the model's state.
    pub fn state(&self) -> FakeSqlServerState {
        lock(&self.state).clone()
    }
}

impl Drop for FakeSqlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn lock(state: &Mutex<FakeSqlServerState>) -> MutexGuard<'_, FakeSqlServerState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------------ the wire

const PRELOGIN: u8 = 0x12;
const LOGIN7: u8 = 0x10;
const SQL_BATCH: u8 = 0x01;
const RPC: u8 = 0x03;
const REPLY: u8 = 0x04;
const ATTENTION: u8 = 0x06;
const PACKET: usize = 4096;

/// A value in a result row.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Int(i32),
}

/// A statement's answer: rows (with column names) or nothing, or an error.
enum Answer {
    Rows(Vec<&'static str>, Vec<Vec<Value>>),
    Done,
    Error(i32, String),
}

struct Session {
    stream: TcpStream,
    state: Arc<Mutex<FakeSqlServerState>>,
    database: String,
    login: String,
}

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn b_varchar(out: &mut Vec<u8>, text: &str) {
    let units = ucs2(text);
    out.push(u8::try_from(units.len() / 2).unwrap_or(u8::MAX));
    out.extend(units);
}

fn us_varchar(out: &mut Vec<u8>, text: &str) {
    let units = ucs2(text);
    out.extend(
        u16::try_from(units.len() / 2)
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend(units);
}

/// A token with a u16 length prefix.
fn sized(token: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![token];
    out.extend(u16::try_from(body.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend(body);
    out
}

fn done(token: u8, status: u16, count: Option<u64>) -> Vec<u8> {
    let mut out = vec![token];
    let status = status | if count.is_some() { 0x0010 } else { 0 };
    out.extend(status.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(count.unwrap_or(0).to_le_bytes());
    out
}

fn error_token(number: i32, class: u8, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(number.to_le_bytes());
    body.push(1); // state
    body.push(class);
    us_varchar(&mut body, message);
    b_varchar(&mut body, "FAKESQL");
    b_varchar(&mut body, "");
    body.extend(1i32.to_le_bytes());
    sized(0xAA, body)
}

/// `NVARCHAR(256)` and `INT` columns, Latin1_General_CI_AS.
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn rows_tokens(columns: &[&str], rows: &[Vec<Value>]) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend(u16::try_from(columns.len()).unwrap_or(0).to_le_bytes());
    let ints: Vec<bool> = (0..columns.len())
        .map(|i| {
            rows.first()
                .is_some_and(|r| matches!(r.get(i), Some(Value::Int(_))))
        })
        .collect();
    for (name, int) in columns.iter().zip(&ints) {
        out.extend(0u32.to_le_bytes()); // user type
        out.extend(0x0001u16.to_le_bytes()); // nullable
        if *int {
            out.extend([0x26, 4]);
        } else {
            out.push(0xE7);
            out.extend(512u16.to_le_bytes());
            out.extend(COLLATION);
        }
        b_varchar(&mut out, name);
    }
    for row in rows {
        out.push(0xD1);
        for value in row {
            match value {
                Value::Int(v) => {
                    out.push(4);
                    out.extend(v.to_le_bytes());
                }
                Value::Text(t) => {
                    let bytes = ucs2(t);
                    out.extend(u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
                    out.extend(bytes);
                }
            }
        }
    }
    out
}

impl Session {
    fn new(stream: TcpStream, state: Arc<Mutex<FakeSqlServerState>>) -> Self {
        Self {
            stream,
            state,
            database: "master".into(),
            login: String::new(),
        }
    }

    /// One message: the packets up to end-of-message.
    fn read_message(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let mut payload = Vec::new();
        loop {
            let mut header = [0u8; 8];
            match self.stream.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let mut body = vec![0u8; length.saturating_sub(8)];
            self.stream.read_exact(&mut body)?;
            payload.extend(body);
            if header[1] & 0x01 != 0 {
                return Ok(Some((header[0], payload)));
            }
        }
    }

    fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(PACKET - 8).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let length = u16::try_from(chunk.len() + 8).unwrap_or(u16::MAX);
            let status = u8::from(i == last);
            let mut packet = vec![REPLY, status];
            packet.extend(length.to_be_bytes());
            packet.extend([0, 0, u8::try_from((i + 1) % 256).unwrap_or(0), 0]);
            packet.extend(*chunk);
            self.stream.write_all(&packet)?;
        }
        self.stream.flush()
    }

    fn serve(mut self) -> std::io::Result<()> {
        while let Some((kind, payload)) = self.read_message()? {
            let reply = match kind {
                PRELOGIN => prelogin_reply(),
                LOGIN7 => match self.login(&payload) {
                    Some(reply) => reply,
                    None => {
                        let reply = [
                            error_token(18456, 14, "Login failed for user."),
                            done(0xFD, 0x0002, None),
                        ]
                        .concat();
                        self.send(&reply)?;
                        let _ = self.stream.shutdown(Shutdown::Both);
                        return Ok(());
                    }
                },
                SQL_BATCH => {
                    let text = from_ucs2(skip_headers(&payload));
                    self.answer(&text, &[], false)
                }
                RPC => match parse_rpc(&payload) {
                    Some((text, params)) => self.answer(&text, &params, true),
                    None => [
                        error_token(8009, 16, "The RPC request is malformed."),
                        done(0xFD, 0x0002, None),
                    ]
                    .concat(),
                },
                // An attention (cancel): acknowledged with DONE_ATTN.
                ATTENTION => done(0xFD, 0x0020, None),
                _ => [
                    error_token(4002, 16, "The incoming packet type is not supported."),
                    done(0xFD, 0x0002, None),
                ]
                .concat(),
            };
            self.send(&reply)?;
        }
        Ok(())
    }

    /// Checks LOGIN7's user and password against the model.
    fn login(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let field = |at: usize| -> Option<Vec<u8>> {
            let offset = usize::from(u16::from_le_bytes([
                *payload.get(at)?,
                *payload.get(at + 1)?,
            ]));
            let chars = usize::from(u16::from_le_bytes([
                *payload.get(at + 2)?,
                *payload.get(at + 3)?,
            ]));
            payload.get(offset..offset + chars * 2).map(<[u8]>::to_vec)
        };
        let version = payload.get(4..8)?;
        let user = from_ucs2(&field(40)?);
        let obfuscated = field(44)?;
        let clear: Vec<u8> = obfuscated
            .iter()
            .map(|b| {
                let x = b ^ 0xA5;
                x.rotate_left(4)
            })
            .collect();
        let password = from_ucs2(&clear);
        let database = field(68).map(|d| from_ucs2(&d)).unwrap_or_default();
        let mut state = lock(&self.state);
        let ok = state
            .logins
            .get(&user)
            .is_some_and(|l| l.enabled && l.password == password);
        if !ok {
            state.failed_logins.push(user);
            return None;
        }
        if !database.is_empty() {
            self.database = database;
        }
        self.login = user;
        drop(state);
        let mut env = Vec::new();
        env.push(1);
        b_varchar(&mut env, &self.database);
        b_varchar(&mut env, "master");
        let mut size = vec![4];
        b_varchar(&mut size, "4096");
        b_varchar(&mut size, "4096");
        let mut ack = vec![1];
        ack.extend([version[3], version[2], version[1], version[0]]);
        b_varchar(&mut ack, "Microsoft SQL Server");
        ack.extend([16, 0, 0x10, 0x00]);
        Some(
            [
                sized(0xE3, env),
                sized(0xE3, size),
                sized(0xAD, ack),
                done(0xFD, 0, None),
            ]
            .concat(),
        )
    }

    fn answer(&mut self, text: &str, params: &[String], rpc: bool) -> Vec<u8> {
        lock(&self.state).statements.push(text.to_owned());
        let answer = self.run(text.trim(), params);
        // In an RPC's answer DONEINPROC is followed by RETURNSTATUS and DONEPROC: DONE_MORE.
        let (main, more, end) = if rpc {
            (0xFF, 0x0001, true)
        } else {
            (0xFD, 0, false)
        };
        let mut out = match answer {
            Answer::Rows(columns, rows) => {
                let count = rows.len() as u64;
                [rows_tokens(&columns, &rows), done(main, more, Some(count))].concat()
            }
            Answer::Done => done(main, more, None),
            Answer::Error(number, message) => [
                error_token(number, 16, &message),
                done(main, more | 0x0002, None),
            ]
            .concat(),
        };
        if end {
            out.push(0x79);
            out.extend(0i32.to_le_bytes());
            out.extend(done(0xFE, 0, None));
        }
        out
    }

    /// The model: our statements' fixed forms, and the catalog queries' shapes.
    fn run(&mut self, text: &str, params: &[String]) -> Answer {
        let p = |i: usize| params.get(i).cloned().unwrap_or_default();
        let mut state = lock(&self.state);
        let names = bracketed(text);
        let name = |i: usize| names.get(i).cloned().unwrap_or_default();
        let db = self.database.clone();
        let text_rows = |values: Vec<String>| {
            values
                .into_iter()
                .map(|v| vec![Value::Text(v)])
                .collect::<Vec<_>>()
        };
        let count = |n: usize| vec![vec![Value::Int(i32::try_from(n).unwrap_or(0))]];
        // Catalog queries (parameterised, or fixed).
        if text.contains("AS marked") {
            let login = p(0);
            let found = state.logins.contains_key(&login);
            let marked = state
                .server_roles
                .get("apono_managed")
                .is_some_and(|m| m.contains(&login));
            return Answer::Rows(
                vec!["found", "marked"],
                vec![vec![
                    Value::Int(i32::from(found)),
                    Value::Int(i32::from(marked)),
                ]],
            );
        }
        if text.contains("LIKE N'apono\\_grant\\_\\_%'") {
            let login = p(0);
            let roles = state
                .server_roles
                .iter()
                .filter(|(r, m)| r.starts_with("apono_grant__") && m.contains(&login))
                .map(|(r, _)| r.clone())
                .collect();
            return Answer::Rows(vec!["name"], text_rows(roles));
        }
        if text.starts_with("SELECT session_id FROM sys.dm_exec_sessions") {
            return Answer::Rows(vec!["session_id"], Vec::new());
        }
        if text.starts_with("SELECT name FROM sys.databases") {
            let dbs = state
                .databases
                .keys()
                .filter(|d| !["master", "model", "msdb", "tempdb"].contains(&d.as_str()))
                .cloned()
                .collect();
            return Answer::Rows(vec!["name"], text_rows(dbs));
        }
        let here = state.databases.entry(db.clone()).or_default();
        if text.starts_with("SELECT s.name FROM sys.schemas AS s") && text.contains("o.type <> 'R'")
        {
            let schemas: BTreeSet<String> = here.tables.iter().map(|(s, _)| s.clone()).collect();
            return Answer::Rows(vec!["name"], text_rows(schemas.into_iter().collect()));
        }
        if text.starts_with("SELECT s.name AS schema_name") {
            let rows = here
                .tables
                .iter()
                .map(|(s, t)| vec![Value::Text(s.clone()), Value::Text(t.clone())])
                .collect();
            return Answer::Rows(vec!["schema_name", "table_name"], rows);
        }
        if text.starts_with("SELECT CAST(COUNT(*) AS INT) FROM sys.schemas") {
            let n = here
                .tables
                .iter()
                .filter(|(s, _)| *s == p(0))
                .count()
                .min(1);
            return Answer::Rows(vec![""], count(n));
        }
        if text.starts_with("SELECT CAST(COUNT(*) AS INT) FROM sys.objects") {
            let n = usize::from(here.tables.contains(&(p(0), p(1))));
            return Answer::Rows(vec![""], count(n));
        }
        if text.contains("FROM sys.database_principals") && text.contains("type = 'R'") {
            return Answer::Rows(vec![""], count(usize::from(here.roles.contains_key(&p(0)))));
        }
        if text.contains("FROM sys.database_principals") && text.contains("type = 'S'") {
            return Answer::Rows(vec![""], count(usize::from(here.users.contains(&p(0)))));
        }
        if text.starts_with("SELECT s.name FROM sys.schemas AS s") {
            return Answer::Rows(vec!["name"], Vec::new());
        }
        if text.contains("HAS_PERMS_BY_NAME") {
            let admin = state
                .server_roles
                .get("sysadmin")
                .is_some_and(|m| m.contains(&self.login));
            return Answer::Rows(vec![""], count(usize::from(admin)));
        }
        if text.starts_with("SELECT name FROM sys.server_principals WHERE name = @P1") {
            let found = state.server_roles.contains_key(&p(0));
            return Answer::Rows(
                vec!["name"],
                text_rows(if found { vec![p(0)] } else { vec![] }),
            );
        }
        // Statements.
        let missing = |what: &str, n: &str| {
            Answer::Error(
                15151,
                format!(
                    "Cannot find the {what} '{n}', because it does not exist or you do not have permission."
                ),
            )
        };
        if text.starts_with(
            "IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'apono_managed'",
        ) {
            state
                .server_roles
                .entry("apono_managed".into())
                .or_default();
            return Answer::Done;
        }
        if text.starts_with("CREATE LOGIN [") && text.contains("] WITH PASSWORD = N'") {
            if state.logins.contains_key(&name(0)) {
                return Answer::Error(
                    15025,
                    format!("The server principal '{}' already exists.", name(0)),
                );
            }
            let password = literal(text).unwrap_or_default();
            state.logins.insert(
                name(0),
                FakeLogin {
                    password,
                    enabled: true,
                },
            );
            return Answer::Done;
        }
        if let Some(rest) = text.strip_prefix("ALTER LOGIN [") {
            let Some(login) = state.logins.get_mut(&name(0)) else {
                return missing("login", &name(0));
            };
            if rest.ends_with("] DISABLE") {
                login.enabled = false;
            } else if rest.ends_with("] ENABLE") {
                login.enabled = true;
            } else if rest.contains("] WITH PASSWORD = N'") {
                login.password = literal(text).unwrap_or_default();
            } else {
                return syntax();
            }
            return Answer::Done;
        }
        if text.starts_with("CREATE SERVER ROLE [") {
            if state.server_roles.contains_key(&name(0)) {
                return Answer::Error(
                    15025,
                    format!("The server principal '{}' already exists.", name(0)),
                );
            }
            state.server_roles.insert(name(0), BTreeSet::new());
            return Answer::Done;
        }
        if text.starts_with("ALTER SERVER ROLE [") {
            let member = name(1);
            if !state.logins.contains_key(&member) {
                return missing("login", &member);
            }
            let Some(members) = state.server_roles.get_mut(&name(0)) else {
                return missing("server role", &name(0));
            };
            if text.contains("] ADD MEMBER [") {
                members.insert(member);
            } else if text.contains("] DROP MEMBER [") {
                members.remove(&member);
            } else {
                return syntax();
            }
            return Answer::Done;
        }
        if text.starts_with("DROP SERVER ROLE [") {
            return match state.server_roles.remove(&name(0)) {
                Some(_) => Answer::Done,
                None => missing("server role", &name(0)),
            };
        }
        if text.starts_with("DROP LOGIN [") {
            return match state.logins.remove(&name(0)) {
                Some(_) => {
                    for members in state.server_roles.values_mut() {
                        members.remove(&name(0));
                    }
                    Answer::Done
                }
                None => missing("login", &name(0)),
            };
        }
        if text.starts_with("USE [") {
            if !state.databases.contains_key(&name(0)) {
                return Answer::Error(911, format!("Database '{}' does not exist.", name(0)));
            }
            self.database = name(0);
            return Answer::Done;
        }
        if text.starts_with("KILL ") {
            return Answer::Done;
        }
        let logins: BTreeSet<String> = state.logins.keys().cloned().collect();
        let here = state.databases.entry(db).or_default();
        if text.starts_with("CREATE USER [") && text.contains("] FOR LOGIN [") {
            if !logins.contains(&name(1)) {
                return missing("login", &name(1));
            }
            here.users.insert(name(0));
            return Answer::Done;
        }
        if text.starts_with("CREATE ROLE [") {
            here.roles.insert(name(0), BTreeSet::new());
            return Answer::Done;
        }
        if let Some(rest) = text.strip_prefix("ALTER ROLE ") {
            // `ALTER ROLE [g] ADD MEMBER [user]` or `ALTER ROLE db_datareader ADD MEMBER [g]`.
            let (role, member) = if rest.starts_with('[') {
                (name(0), name(1))
            } else {
                (rest.split(' ').next().unwrap_or("").to_owned(), name(0))
            };
            let known = here.users.contains(&member) || here.roles.contains_key(&member);
            if !known {
                return missing("user", &member);
            }
            let members = here.roles.entry(role).or_default();
            if text.contains(" ADD MEMBER [") {
                members.insert(member);
            } else if text.contains(" DROP MEMBER [") {
                members.remove(&member);
            } else {
                return syntax();
            }
            return Answer::Done;
        }
        if text.starts_with("GRANT ") && text.contains(" TO [") {
            here.grants.push(text.to_owned());
            return Answer::Done;
        }
        if text.starts_with("DROP ROLE [") {
            let role = name(0);
            here.grants
                .retain(|g| !g.ends_with(&format!(" TO [{}]", role.replace(']', "]]"))));
            for members in here.roles.values_mut() {
                members.remove(&role);
            }
            return match here.roles.remove(&role) {
                Some(_) => Answer::Done,
                None => missing("role", &role),
            };
        }
        if text.starts_with("DROP USER [") {
            for members in here.roles.values_mut() {
                members.remove(&name(0));
            }
            return if here.users.remove(&name(0)) {
                Answer::Done
            } else {
                missing("user", &name(0))
            };
        }
        if text.starts_with("ALTER AUTHORIZATION ON SCHEMA::[") {
            return Answer::Done;
        }
        syntax()
    }
}

fn syntax() -> Answer {
    Answer::Error(102, "Incorrect syntax near the statement.".into())
}

/// The bracketed identifiers of a statement, `]]` read as `]`, in order; none inside
/// `N'…'` literals.
fn bracketed(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut in_literal = false;
    while let Some(c) = chars.next() {
        if in_literal {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    in_literal = false;
                }
            }
            continue;
        }
        match c {
            '\'' => in_literal = true,
            '[' => {
                let mut name = String::new();
                while let Some(c) = chars.next() {
                    if c == ']' {
                        if chars.peek() == Some(&']') {
                            chars.next();
                            name.push(']');
                        } else {
                            break;
                        }
                    } else {
                        name.push(c);
                    }
                }
                out.push(name);
            }
            _ => {}
        }
    }
    out
}

/// The first `N'…'` literal of a statement, `''` read as `'`.
fn literal(text: &str) -> Option<String> {
    let start = text.find("N'")? + 2;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn prelogin_reply() -> Vec<u8> {
    // VERSION, ENCRYPTION (not supported), INSTOPT, MARS, then the terminator.
    let options: [(u8, Vec<u8>); 4] = [
        (0x00, vec![16, 0, 0x10, 0x00, 0, 0]),
        (0x01, vec![0x02]),
        (0x02, vec![0x00]),
        (0x04, vec![0x00]),
    ];
    let mut offset = options.len() * 5 + 1;
    let mut head = Vec::new();
    let mut data = Vec::new();
    for (token, value) in &options {
        head.push(*token);
        head.extend(u16::try_from(offset).unwrap_or(0).to_be_bytes());
        head.extend(u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
        offset += value.len();
        data.extend(value);
    }
    head.push(0xFF);
    [head, data].concat()
}

/// Skips ALL_HEADERS (a u32 total length that includes itself).
fn skip_headers(payload: &[u8]) -> &[u8] {
    let total = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    payload.get(total..).unwrap_or(&[])
}

/// An RPC request to `sp_executesql`: the statement and the values of `@P1`, `@P2`, … (all
/// `NVARCHAR`, as the provisioner and python-tds send strings).
fn parse_rpc(payload: &[u8]) -> Option<(String, Vec<String>)> {
    let mut rest = skip_headers(payload);
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head.to_vec())
    };
    let name_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    if name_len == 0xFFFF {
        let id = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
        if id != 10 {
            return None;
        }
    } else {
        let name = from_ucs2(&take(&mut rest, usize::from(name_len) * 2)?);
        if !name.eq_ignore_ascii_case("sp_executesql") {
            return None;
        }
    }
    take(&mut rest, 2)?; // option flags
    let mut values = Vec::new();
    while !rest.is_empty() {
        let name_chars = usize::from(take(&mut rest, 1)?[0]);
        take(&mut rest, name_chars * 2)?;
        take(&mut rest, 1)?; // status flags
        let kind = take(&mut rest, 1)?[0];
        if kind != 0xE7 && kind != 0xEF {
            return None;
        }
        let max = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
        take(&mut rest, 5)?; // collation
        let value = if max == 0xFFFF {
            // PLP: total length, then chunks ending with a zero-length one.
            let total = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
            let mut bytes = Vec::new();
            if total != u64::MAX {
                loop {
                    let chunk = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
                    if chunk == 0 {
                        break;
                    }
                    bytes.extend(take(&mut rest, chunk)?);
                }
            }
            bytes
        } else {
            let len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
            if len == 0xFFFF {
                Vec::new()
            } else {
                take(&mut rest, usize::from(len))?
            }
        };
        values.push(from_ucs2(&value));
    }
    let mut values = values.into_iter();
    let statement = values.next()?;
    let _declarations = values.next();
    Some((statement, values.collect()))
}
