//! A fake WinRM (WS-Management) endpoint with an in-memory Windows account model behind it.
//!
//! The wire protocol is the real one — the `cmd` shell resource of MS-WSMV: `Create` (a shell),
//! `Command`, `Send` (stdin), `Receive` (base64 `stdout`/`stderr` streams, `CommandState` and
//! `ExitCode`), `Signal` and `Delete`, in SOAP 1.2 envelopes shaped like those Windows Server
//! returns, behind HTTP Basic authentication (`401` with `WWW-Authenticate: Negotiate` and
//! `Basic realm="WSMAN"`, as Windows answers), on plain HTTP or HTTPS.
//!
//! What runs *inside* a command is a model, not PowerShell: the fake knows the provisioner's
//! fixed scripts only by their exact text ([`FakeWinrm::recognise`]) and carries out the
//! [`ScriptBehaviour`] registered for each, reading the script's base64 JSON payload from
//! stdin and changing an in-memory directory of accounts, groups, grant leases and logon
//! sessions. Any other PowerShell script exits 1 with an error on stderr; of `cmd` commands only
//! `hostname`, `whoami` and `echo` exist. Tests observe the directory directly
//! ([`FakeWinrm::snapshot`], [`FakeWinrm::can_log_on`], …), never through the client under test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use data_encoding::BASE64;
use serde_json::{Value, json};

use super::server::{Common, FakeState, Recorded, RecordedRequest, ServerHandle, lock};
use super::tls::self_signed_localhost;
use super::{FakeError, TestCa};

const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

/// What the fake does when it recognises one of the provisioner's fixed scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ScriptBehaviour {
    /// Report the caller, computer, domain and whether the caller is an administrator.
    Status,
    /// List the groups (local groups, or the domain's groups).
    Discover,
    /// Create or re-enable a marked account, set its password and expiry, add the membership
    /// and record the grant's lease.
    Grant,
    /// Drop the grant's lease; without remaining leases, remove the membership, scramble the
    /// password, disable the account and log off its sessions.
    Revoke,
    /// Set a new password on a marked account that holds the grant's lease.
    Rotate,
    /// Delete a marked account without live leases.
    Cleanup,
}

/// Whether the fake is a member server (local accounts) or a domain controller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeWindowsKind {
    /// A stand-alone or member server: local users and groups (`Get-LocalUser`).
    Server {
        /// `$env:COMPUTERNAME`.
        computer: String,
    },
    /// A domain controller: Active Directory users and groups (`Get-ADUser`).
    DomainController {
        /// The domain's NetBIOS name, such as `CORP`.
        netbios: String,
        /// The domain's DNS name, such as `corp.example`.
        dns: String,
    },
}

/// The transport the fake listens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeWinrmTls {
    /// Plain HTTP (the WinRM `5985` listener).
    None,
    /// HTTPS with a server certificate for `localhost`/`127.0.0.1` from a fresh [`TestCa`].
    TestCa,
    /// HTTPS with a self-signed certificate for `localhost`/`127.0.0.1`.
    SelfSigned,
    /// HTTPS with a certificate from a fresh test CA, issued for `wrong.example` only.
    WrongName,
}

/// One account of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakeAccount {
    /// The description (the connector's marker, for its own accounts).
    pub description: String,
    /// Whether the account is enabled.
    pub enabled: bool,
    /// The password, as last set.
    pub password: String,
    /// The account expiry as the script passed it (RFC 3339), if any.
    pub expires: Option<String>,
    /// Open logon sessions.
    pub sessions: u32,
}

#[derive(Debug, Default)]
struct Directory {
    accounts: BTreeMap<String, FakeAccount>,
    groups: BTreeMap<String, BTreeSet<String>>,
    /// user → grant id → `"<expires>|<group>"` (the registry key the scripts keep).
    leases: BTreeMap<String, BTreeMap<String, String>>,
}

/// One command a client ran, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedCommand {
    /// `rsp:Command`.
    pub command: String,
    /// `rsp:Arguments`, in order.
    pub arguments: Vec<String>,
    /// Everything sent on stdin.
    pub stdin: Vec<u8>,
}

#[derive(Debug)]
struct RunningCommand {
    index: usize,
    caller: String,
    stdin_closed: bool,
    output: Option<(Vec<u8>, Vec<u8>, i32)>,
    delivered: bool,
}

#[derive(Debug, Default)]
struct Shells {
    next_id: u64,
    shells: BTreeMap<String, BTreeMap<String, RunningCommand>>,
}

#[derive(Debug)]
struct WinrmState {
    common: Common,
    kind: FakeWindowsKind,
    admins: Mutex<BTreeMap<String, (String, bool)>>,
    scripts: Mutex<BTreeMap<String, ScriptBehaviour>>,
    directory: Mutex<Directory>,
    shells: Mutex<Shells>,
    commands: Mutex<Vec<RecordedCommand>>,
}

impl FakeState for WinrmState {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// A fake WinRM listener; see the [module docs](self). Stops when dropped.
#[derive(Debug)]
pub struct FakeWinrm {
    state: Arc<WinrmState>,
    server: ServerHandle,
    ca_pem: Option<String>,
    https: bool,
}

impl FakeWinrm {
    /// Starts the fake on `127.0.0.1` with a free port. It knows no administrator and no script
    /// yet; the directory holds the built-in groups and the `Administrator` account.
    pub fn start(kind: FakeWindowsKind, tls: FakeWinrmTls) -> Result<Self, FakeError> {
        let mut directory = Directory::default();
        let groups: &[&str] = match kind {
            FakeWindowsKind::Server { .. } => &[
                "Administrators",
                "Backup Operators",
                "Remote Desktop Users",
                "Users",
            ],
            FakeWindowsKind::DomainController { .. } => &[
                "Domain Admins",
                "Domain Users",
                "Remote Desktop Users",
                "Server Operators",
            ],
        };
        for group in groups {
            directory
                .groups
                .insert((*group).to_owned(), BTreeSet::new());
        }
        directory.accounts.insert(
            "Administrator".to_owned(),
            FakeAccount {
                description: "Built-in account for administering the computer/domain".into(),
                enabled: true,
                password: "not-known-to-tests".into(),
                expires: None,
                sessions: 0,
            },
        );
        if let Some(admins) = directory.groups.get_mut(match kind {
            FakeWindowsKind::Server { .. } => "Administrators",
            FakeWindowsKind::DomainController { .. } => "Domain Admins",
        }) {
            admins.insert("Administrator".to_owned());
        }
        let state = Arc::new(WinrmState {
            common: Common::default(),
            kind,
            admins: Mutex::default(),
            scripts: Mutex::default(),
            directory: Mutex::new(directory),
            shells: Mutex::default(),
            commands: Mutex::default(),
        });
        let (config, ca_pem) = match tls {
            FakeWinrmTls::None => (None, None),
            FakeWinrmTls::TestCa | FakeWinrmTls::WrongName => {
                let ca = if tls == FakeWinrmTls::WrongName {
                    TestCa::generate_for(&["wrong.example"])?
                } else {
                    TestCa::generate()?
                };
                (Some(ca.server_config()?), Some(ca.ca_pem().to_owned()))
            }
            FakeWinrmTls::SelfSigned => {
                let (config, pem) = self_signed_localhost()?;
                (Some(config), Some(pem))
            }
        };
        let router = Router::new()
            .route("/wsman", post(wsman))
            .with_state(state.clone());
        let https = config.is_some();
        let server = ServerHandle::spawn("winrm", router, config)?;
        Ok(Self {
            state,
            server,
            ca_pem,
            https,
        })
    }

    /// The port the fake listens on (WinRM's 5985/5986 stand-in).
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// `http(s)://127.0.0.1:{port}/wsman`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/wsman", self.server.addr())
    }

    /// The PEM certificate that signed (or is) the server certificate, for HTTPS fakes: the test
    /// CA, the self-signed certificate itself, or the CA of the wrong-name certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Accepts `user`/`password` with HTTP Basic; `admin` says whether the user is in the
    /// Administrators group (what `get-status` reports).
    pub fn add_admin(&self, user: &str, password: &str, admin: bool) {
        lock(&self.state.admins).insert(user.to_owned(), (password.to_owned(), admin));
    }

    /// Makes the fake run `behaviour` when a client runs exactly `script` (as
    /// `powershell.exe … -EncodedCommand <UTF-16LE base64 of script>`).
    pub fn recognise(&self, behaviour: ScriptBehaviour, script: &str) {
        lock(&self.state.scripts).insert(script.to_owned(), behaviour);
    }

    /// Adds an empty group.
    pub fn add_group(&self, group: &str) {
        lock(&self.state.directory)
            .groups
            .entry(group.to_owned())
            .or_default();
    }

    /// Adds an account that the connector did not create (its own description), enabled, in
    /// `groups`.
    pub fn add_account(&self, name: &str, description: &str, password: &str, groups: &[&str]) {
        let mut dir = lock(&self.state.directory);
        dir.accounts.insert(
            name.to_owned(),
            FakeAccount {
                description: description.to_owned(),
                enabled: true,
                password: password.to_owned(),
                expires: None,
                sessions: 0,
            },
        );
        for group in groups {
            dir.groups
                .entry((*group).to_owned())
                .or_default()
                .insert(name.to_owned());
        }
    }

    /// Deletes an account behind the connector's back (memberships go with it; leases stay, as
    /// the registry is not touched).
    pub fn remove_account(&self, name: &str) {
        let mut dir = lock(&self.state.directory);
        dir.accounts.remove(name);
        for members in dir.groups.values_mut() {
            members.remove(name);
        }
    }

    /// Opens a logon session for `name` (as if the user had signed in over RDP).
    pub fn open_session(&self, name: &str) {
        if let Some(account) = lock(&self.state.directory).accounts.get_mut(name) {
            account.sessions += 1;
        }
    }

    /// The account `name`, if it exists.
    pub fn account(&self, name: &str) -> Option<FakeAccount> {
        lock(&self.state.directory).accounts.get(name).cloned()
    }

    /// Whether `name` is a member of `group`.
    pub fn is_member(&self, name: &str, group: &str) -> bool {
        lock(&self.state.directory)
            .groups
            .get(group)
            .is_some_and(|m| m.contains(name))
    }

    /// Whether `name` can sign in with `password` now: the account exists, is enabled, the
    /// password matches and the expiry (if any) is in the future.
    pub fn can_log_on(&self, name: &str, password: &str) -> bool {
        let dir = lock(&self.state.directory);
        let Some(account) = dir.accounts.get(name) else {
            return false;
        };
        let not_expired = account.expires.as_deref().is_none_or(|e| {
            chrono_like_after_now(e).unwrap_or(false) // unparseable expiry: refuse
        });
        account.enabled && account.password == password && not_expired
    }

    /// Everything grants can change, one line per fact, sorted: accounts (with their state,
    /// never their password), memberships, leases.
    pub fn snapshot(&self) -> Vec<String> {
        let dir = lock(&self.state.directory);
        let mut lines = Vec::new();
        for (name, a) in &dir.accounts {
            lines.push(format!(
                "account {name} enabled={} description={:?} expires={:?} sessions={}",
                a.enabled, a.description, a.expires, a.sessions
            ));
        }
        for (group, members) in &dir.groups {
            lines.push(format!("group {group}"));
            for m in members {
                lines.push(format!("member {group} {m}"));
            }
        }
        for (user, leases) in &dir.leases {
            for (grant, value) in leases {
                lines.push(format!("lease {user} {grant} {value}"));
            }
        }
        lines.sort();
        lines
    }

    /// The commands run so far.
    pub fn commands(&self) -> Vec<RecordedCommand> {
        lock(&self.state.commands).clone()
    }

    /// The HTTP requests answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.common.requests()
    }

    /// Open shells (created and not deleted).
    pub fn open_shells(&self) -> usize {
        lock(&self.state.shells).shells.len()
    }
}

/// Parses an RFC 3339 UTC instant (`YYYY-MM-DDTHH:MM:SSZ`, optional fraction) and compares it
/// with the system clock, without a date library.
fn chrono_like_after_now(text: &str) -> Option<bool> {
    let secs = rfc3339_to_unix(text)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(secs > now)
}

fn rfc3339_to_unix(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------------------------
// XML helpers: enough to read WS-Management requests, which are small and regular.

/// Every element whose local name is `local`: its attribute text and inner text.
fn elements<'a>(xml: &'a str, local: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.starts_with('/') || name.starts_with('?') || name.starts_with('!') {
            continue;
        }
        let local_name = name.rsplit(':').next().unwrap_or(name);
        if local_name != local {
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let attrs = &rest[name_end..gt];
        if attrs.ends_with('/') {
            found.push((attrs.trim_end_matches('/'), ""));
            rest = &rest[gt + 1..];
            continue;
        }
        let body = &rest[gt + 1..];
        let close = format!("</{name}>");
        let Some(end) = body.find(&close) else { break };
        found.push((attrs, &body[..end]));
        rest = &body[end..];
    }
    found
}

fn element_text<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    elements(xml, local).first().map(|(_, text)| text.trim())
}

fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let pattern = format!("{name}=\"");
    let start = attrs.find(&pattern)? + pattern.len();
    let end = attrs[start..].find('"')?;
    Some(&attrs[start..start + end])
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn selector_shell_id(xml: &str) -> Option<String> {
    elements(xml, "Selector")
        .into_iter()
        .find(|(attrs, _)| attribute(attrs, "Name") == Some("ShellId"))
        .map(|(_, text)| text.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Responses shaped like Windows Server 2022's.

fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    let message_id = uuid_like(now_unix() as u64 ^ body.len() as u64);
    format!(
        concat!(
            r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" "#,
            r#"xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" "#,
            r#"xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" "#,
            r#"xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" "#,
            r#"xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" "#,
            r#"xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">"#,
            r#"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{message_id}</a:MessageID>"#,
            r#"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"#,
            r#"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        ),
        action = action,
        message_id = message_id,
        relates_to = xml_escape(relates_to),
        body = body,
    )
}

fn uuid_like(seed: u64) -> String {
    let a = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = a.rotate_left(17) ^ 0x5851_F42D_4C95_7F2D;
    format!(
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a as u16,
        (b >> 48) as u16,
        b & 0xFFFF_FFFF_FFFF
    )
}

fn soap_response(status: StatusCode, xml: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/soap+xml;charset=UTF-8")],
        xml,
    )
        .into_response()
}

/// A WS-Management fault, as Windows sends it (HTTP 500).
fn fault(relates_to: &str, subcode: &str, code: u32, message: &str) -> Response {
    let body = format!(
        concat!(
            r#"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>{subcode}</s:Value>"#,
            r#"</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{message}</s:Text></s:Reason>"#,
            r#"<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsmanfault" "#,
            r#"Code="{code}" Machine="127.0.0.1"><f:Message>{message}</f:Message></f:WSManFault>"#,
            r#"</s:Detail></s:Fault>"#
        ),
        subcode = subcode,
        code = code,
        message = xml_escape(message),
    );
    soap_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        envelope(
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
            relates_to,
            &body,
        ),
    )
}

fn unauthorized() -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    let headers = response.headers_mut();
    headers.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Negotiate"),
    );
    headers.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"WSMAN\""),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// The endpoint.

async fn wsman(State(state): State<Arc<WinrmState>>, request: Recorded) -> Response {
    state.common.maybe_stall().await;
    let Some(caller) = authenticated(&state, &request.headers) else {
        return unauthorized();
    };
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/soap+xml") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let xml = String::from_utf8_lossy(&request.body).into_owned();
    let message_id = element_text(&xml, "MessageID").unwrap_or("").to_owned();
    let action = element_text(&xml, "Action").unwrap_or("").to_owned();
    let resource = element_text(&xml, "ResourceURI").unwrap_or("");
    if resource != RESOURCE_CMD {
        return fault(
            &message_id,
            "w:DestinationUnreachable",
            2_150_858_770,
            "The WS-Management service cannot process the request because the resource URI is not supported.",
        );
    }
    match action.as_str() {
        ACTION_CREATE => create_shell(&state, &message_id, &xml),
        ACTION_COMMAND => command(&state, &caller, &message_id, &xml),
        ACTION_SEND => send(&state, &message_id, &xml),
        ACTION_RECEIVE => receive(&state, &message_id, &xml),
        ACTION_SIGNAL => signal(&state, &message_id, &xml),
        ACTION_DELETE => delete_shell(&state, &message_id, &xml),
        _ => fault(
            &message_id,
            "a:ActionNotSupported",
            2_150_858_753,
            "The WS-Management service cannot process the request. The action is not supported.",
        ),
    }
}

/// The Basic-authenticated user, if the credentials are known.
fn authenticated(state: &WinrmState, headers: &HeaderMap) -> Option<String> {
    let encoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim().as_bytes()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    lock(&state.admins)
        .get(user)
        .is_some_and(|(p, _)| p == password)
        .then(|| user.to_owned())
}

fn invalid_shell(message_id: &str) -> Response {
    fault(
        message_id,
        "w:InvalidSelectors",
        2_150_858_843,
        "The request for the Windows Remote Shell with ShellId failed because the shell was not found on the server.",
    )
}

fn create_shell(state: &WinrmState, message_id: &str, xml: &str) -> Response {
    let input = element_text(xml, "InputStreams").unwrap_or("");
    let output = element_text(xml, "OutputStreams").unwrap_or("");
    if elements(xml, "Shell").is_empty() || output.split_whitespace().count() == 0 {
        return fault(
            message_id,
            "w:SchemaValidationError",
            2_150_858_817,
            "The SOAP XML in the message does not match the corresponding XML schema definition.",
        );
    }
    let shell_id = {
        let mut shells = lock(&state.shells);
        shells.next_id += 1;
        let id = uuid_like(shells.next_id ^ 0xA5A5);
        shells.shells.insert(id.clone(), BTreeMap::new());
        id
    };
    let body = format!(
        concat!(
            r#"<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"#,
            r#"<w:ResourceURI>{resource}</w:ResourceURI><w:SelectorSet>"#,
            r#"<w:Selector Name="ShellId">{id}</w:Selector></w:SelectorSet></a:ReferenceParameters>"#,
            r#"</x:ResourceCreated><rsp:Shell xmlns:rsp="{ns}"><rsp:ShellId>{id}</rsp:ShellId>"#,
            r#"<rsp:ResourceUri>{resource}</rsp:ResourceUri><rsp:Owner>apono</rsp:Owner>"#,
            r#"<rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"#,
            r#"<rsp:InputStreams>{input}</rsp:InputStreams><rsp:OutputStreams>{output}</rsp:OutputStreams>"#,
            r#"<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"#,
            r#"</rsp:Shell>"#
        ),
        resource = RESOURCE_CMD,
        id = shell_id,
        ns = NS_SHELL,
        input = xml_escape(input),
        output = xml_escape(output),
    );
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
            message_id,
            &body,
        ),
    )
}

fn command(state: &WinrmState, caller: &str, message_id: &str, xml: &str) -> Response {
    let Some(shell_id) = selector_shell_id(xml) else {
        return invalid_shell(message_id);
    };
    let Some(command) = element_text(xml, "Command") else {
        return fault(
            message_id,
            "w:SchemaValidationError",
            2_150_858_817,
            "The SOAP XML in the message does not match the corresponding XML schema definition.",
        );
    };
    let command = xml_unescape(command);
    let arguments: Vec<String> = elements(xml, "Arguments")
        .into_iter()
        .map(|(_, text)| xml_unescape(text))
        .collect();
    let mut shells = lock(&state.shells);
    let next = shells.next_id + 1;
    shells.next_id = next;
    let Some(shell) = shells.shells.get_mut(&shell_id) else {
        return invalid_shell(message_id);
    };
    let command_id = uuid_like(next ^ 0x5A5A);
    let index = {
        let mut commands = lock(&state.commands);
        commands.push(RecordedCommand {
            command,
            arguments,
            stdin: Vec::new(),
        });
        commands.len() - 1
    };
    shell.insert(
        command_id.clone(),
        RunningCommand {
            index,
            caller: caller.to_owned(),
            stdin_closed: false,
            output: None,
            delivered: false,
        },
    );
    let body = format!(
        r#"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"#
    );
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
            message_id,
            &body,
        ),
    )
}

fn send(state: &WinrmState, message_id: &str, xml: &str) -> Response {
    let Some(shell_id) = selector_shell_id(xml) else {
        return invalid_shell(message_id);
    };
    let mut shells = lock(&state.shells);
    let Some(shell) = shells.shells.get_mut(&shell_id) else {
        return invalid_shell(message_id);
    };
    for (attrs, text) in elements(xml, "Stream") {
        if attribute(attrs, "Name") != Some("stdin") {
            continue;
        }
        let Some(running) = attribute(attrs, "CommandId").and_then(|id| shell.get_mut(id)) else {
            return invalid_shell(message_id);
        };
        let Ok(data) = BASE64.decode(text.trim().as_bytes()) else {
            return fault(
                message_id,
                "w:SchemaValidationError",
                2_150_858_817,
                "The stream data is not valid base64.",
            );
        };
        lock(&state.commands)[running.index]
            .stdin
            .extend_from_slice(&data);
        if attribute(attrs, "End") == Some("true") {
            running.stdin_closed = true;
        }
    }
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
            message_id,
            "<rsp:SendResponse/>",
        ),
    )
}

fn receive(state: &WinrmState, message_id: &str, xml: &str) -> Response {
    let Some(shell_id) = selector_shell_id(xml) else {
        return invalid_shell(message_id);
    };
    let Some(command_id) = elements(xml, "DesiredStream")
        .first()
        .and_then(|(attrs, _)| attribute(attrs, "CommandId"))
        .map(str::to_owned)
    else {
        return invalid_shell(message_id);
    };
    let mut shells = lock(&state.shells);
    let Some(running) = shells
        .shells
        .get_mut(&shell_id)
        .and_then(|s| s.get_mut(&command_id))
    else {
        return invalid_shell(message_id);
    };
    if running.output.is_none() {
        let recorded = lock(&state.commands)[running.index].clone();
        let needs_stdin = is_recognised_script(state, &recorded);
        if needs_stdin && !running.stdin_closed {
            // A real command blocks on stdin until OperationTimeout; say so at once.
            return fault(
                message_id,
                "w:TimedOut",
                2_150_858_793,
                "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
            );
        }
        running.output = Some(execute(state, &running.caller, &recorded));
    }
    let (stdout, stderr, code) = running.output.clone().unwrap_or_default();
    let mut body = String::from("<rsp:ReceiveResponse>");
    let stream = |name: &str, data: &[u8], end: bool| {
        let end = if end { r#" End="true""# } else { "" };
        if data.is_empty() {
            format!(r#"<rsp:Stream Name="{name}" CommandId="{command_id}"{end}></rsp:Stream>"#)
        } else {
            format!(
                r#"<rsp:Stream Name="{name}" CommandId="{command_id}"{end}>{}</rsp:Stream>"#,
                BASE64.encode(data)
            )
        }
    };
    if running.delivered {
        body.push_str(&stream("stdout", &[], true));
        body.push_str(&stream("stderr", &[], true));
    } else {
        if !stdout.is_empty() {
            body.push_str(&stream("stdout", &stdout, false));
        }
        body.push_str(&stream("stdout", &[], true));
        if !stderr.is_empty() {
            body.push_str(&stream("stderr", &stderr, false));
        }
        body.push_str(&stream("stderr", &[], true));
        running.delivered = true;
    }
    body.push_str(&format!(
        r#"<rsp:CommandState CommandId="{command_id}" State="{STATE_DONE}"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"#
    ));
    body.push_str("</rsp:ReceiveResponse>");
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
            message_id,
            &body,
        ),
    )
}

fn signal(state: &WinrmState, message_id: &str, xml: &str) -> Response {
    let Some(shell_id) = selector_shell_id(xml) else {
        return invalid_shell(message_id);
    };
    let command_id = elements(xml, "Signal")
        .first()
        .and_then(|(attrs, _)| attribute(attrs, "CommandId"))
        .map(str::to_owned);
    let mut shells = lock(&state.shells);
    let Some(shell) = shells.shells.get_mut(&shell_id) else {
        return invalid_shell(message_id);
    };
    if let Some(id) = command_id {
        shell.remove(&id);
    }
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
            message_id,
            "<rsp:SignalResponse/>",
        ),
    )
}

fn delete_shell(state: &WinrmState, message_id: &str, xml: &str) -> Response {
    let Some(shell_id) = selector_shell_id(xml) else {
        return invalid_shell(message_id);
    };
    if lock(&state.shells).shells.remove(&shell_id).is_none() {
        return invalid_shell(message_id);
    }
    soap_response(
        StatusCode::OK,
        envelope(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
            message_id,
            "",
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Running commands.

/// The script of a `powershell[.exe] … -EncodedCommand <b64>` command line, if it is one.
fn encoded_script(command: &RecordedCommand) -> Option<String> {
    // The cmd shell runs `Command Arguments…` as one command line (pywinrm sends all arguments
    // in one `rsp:Arguments`, winrm-rs one element each).
    let mut words: Vec<&str> = command.command.split_whitespace().collect();
    words.extend(command.arguments.iter().flat_map(|a| a.split_whitespace()));
    let program = words.first()?.to_ascii_lowercase();
    if program != "powershell" && program != "powershell.exe" {
        return None;
    }
    let position = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case("-EncodedCommand"))?;
    let encoded = words.get(position + 1)?;
    let bytes = BASE64.decode(encoded.as_bytes()).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn is_recognised_script(state: &WinrmState, command: &RecordedCommand) -> bool {
    encoded_script(command).is_some_and(|s| lock(&state.scripts).contains_key(&s))
}

type Output = (Vec<u8>, Vec<u8>, i32);

fn failure(code: i32, message: &str) -> Output {
    (Vec::new(), format!("{message}\r\n").into_bytes(), code)
}

fn execute(state: &WinrmState, caller: &str, command: &RecordedCommand) -> Output {
    if let Some(script) = encoded_script(command) {
        let behaviour = lock(&state.scripts).get(&script).copied();
        return match behaviour {
            Some(behaviour) => run_script(state, caller, behaviour, &command.stdin),
            None => failure(
                1,
                "fake WinRM: this PowerShell script is not one the fake recognises",
            ),
        };
    }
    let words: Vec<String> = std::iter::once(command.command.as_str())
        .chain(command.arguments.iter().map(String::as_str))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect();
    let program = words
        .first()
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_default();
    match program.as_str() {
        "hostname" => (
            format!("{}\r\n", computer(state)).into_bytes(),
            Vec::new(),
            0,
        ),
        "whoami" => (
            format!("{}\\administrator\r\n", netbios(state).to_lowercase()).into_bytes(),
            Vec::new(),
            0,
        ),
        "echo" => (
            format!("{}\r\n", words[1..].join(" ")).into_bytes(),
            Vec::new(),
            0,
        ),
        _ => failure(
            1,
            &format!(
                "'{}' is not recognized as an internal or external command,\r\noperable program or batch file.",
                words.first().map_or("", String::as_str)
            ),
        ),
    }
}

fn computer(state: &WinrmState) -> String {
    match &state.kind {
        FakeWindowsKind::Server { computer } => computer.clone(),
        FakeWindowsKind::DomainController { netbios, .. } => format!("{netbios}-DC1"),
    }
}

fn netbios(state: &WinrmState) -> String {
    match &state.kind {
        FakeWindowsKind::Server { computer } => computer.clone(),
        FakeWindowsKind::DomainController { netbios, .. } => netbios.clone(),
    }
}

/// The connector's marker, as the scripts write it into the account description.
const MARKER: &str = "Managed by the Apono connector; do not edit";

fn run_script(
    state: &WinrmState,
    caller: &str,
    behaviour: ScriptBehaviour,
    stdin: &[u8],
) -> Output {
    // `$input | Select-Object -First 1`: the first line of stdin.
    let text = String::from_utf8_lossy(stdin);
    let line = text.lines().next().unwrap_or("").trim();
    let Ok(json) = BASE64.decode(line.as_bytes()) else {
        return failure(1, "Exception calling \"FromBase64String\": invalid base64");
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&json) else {
        return failure(1, "ConvertFrom-Json : Invalid JSON primitive");
    };
    let domain = matches!(state.kind, FakeWindowsKind::DomainController { .. });
    let mode = payload["mode"].as_str().unwrap_or("");
    if (mode == "domain") != domain || !(mode == "domain" || mode == "local") {
        return failure(
            1,
            if domain {
                "The term 'Get-LocalUser' is not recognized on a domain controller"
            } else {
                "The term 'Get-ADUser' is not recognized as the name of a cmdlet"
            },
        );
    }
    let field = |name: &str| payload[name].as_str().unwrap_or("").to_owned();
    let mut dir = lock(&state.directory);
    match behaviour {
        ScriptBehaviour::Status => {
            let admin = lock(&state.admins).get(caller).is_some_and(|(_, a)| *a);
            ok(json!({
                "user": format!("{}\\{caller}", netbios(state)),
                "computer": computer(state),
                "domain": netbios(state),
                "dnsDomain": match &state.kind {
                    FakeWindowsKind::DomainController { dns, .. } => Value::from(dns.as_str()),
                    FakeWindowsKind::Server { .. } => Value::Null,
                },
                "admin": admin,
            }))
        }
        ScriptBehaviour::Discover => ok(json!({
            "computer": computer(state),
            "domain": netbios(state),
            "dnsDomain": match &state.kind {
                FakeWindowsKind::DomainController { dns, .. } => Value::from(dns.as_str()),
                FakeWindowsKind::Server { .. } => Value::Null,
            },
            "groups": dir.groups.keys().cloned().collect::<Vec<_>>(),
        })),
        ScriptBehaviour::Grant => {
            let (user, group, grant) = (field("user"), field("group"), field("grant"));
            let expires = field("expires");
            if user.is_empty() || grant.is_empty() || rfc3339_to_unix(&expires).is_none() {
                return failure(1, "Cannot bind argument: a required payload field is empty");
            }
            if dir
                .accounts
                .get(&user)
                .is_some_and(|a| a.description != MARKER)
            {
                return failure(3, "account exists and is not managed by the connector");
            }
            if !group.is_empty() && !dir.groups.contains_key(&group) {
                return failure(4, &format!("Group {group} was not found."));
            }
            dir.leases
                .entry(user.clone())
                .or_default()
                .insert(grant, format!("{expires}|{group}"));
            let latest = dir.leases[&user]
                .values()
                .filter_map(|v| v.split_once('|').map(|(e, _)| e.to_owned()))
                .max_by_key(|e| rfc3339_to_unix(e).unwrap_or(0))
                .unwrap_or(expires);
            let created = !dir.accounts.contains_key(&user);
            let account = dir.accounts.entry(user.clone()).or_insert(FakeAccount {
                description: MARKER.to_owned(),
                enabled: true,
                password: String::new(),
                expires: None,
                sessions: 0,
            });
            account.password = field("password");
            account.enabled = true;
            account.expires = Some(latest);
            if !group.is_empty() {
                dir.groups.entry(group).or_default().insert(user);
            }
            ok(json!({ "created": created, "domain": netbios(state) }))
        }
        ScriptBehaviour::Revoke => {
            let (user, group, grant) = (field("user"), field("group"), field("grant"));
            let Some(account) = dir.accounts.get(&user) else {
                dir.leases.remove(&user);
                return ok(json!({ "state": "gone" }));
            };
            if account.description != MARKER {
                return failure(3, "account exists and is not managed by the connector");
            }
            if let Some(leases) = dir.leases.get_mut(&user) {
                leases.remove(&grant);
            }
            let now = now_unix();
            let remaining: Vec<String> = dir
                .leases
                .get(&user)
                .map(|l| {
                    l.values()
                        .filter_map(|v| v.split_once('|'))
                        .filter(|(e, _)| rfc3339_to_unix(e).is_some_and(|t| t > now))
                        .map(|(_, g)| g.to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if dir.leases.get(&user).is_some_and(BTreeMap::is_empty) {
                dir.leases.remove(&user);
            }
            if !group.is_empty()
                && !remaining.contains(&group)
                && let Some(members) = dir.groups.get_mut(&group)
            {
                members.remove(&user);
            }
            if remaining.is_empty() {
                let account = dir.accounts.get_mut(&user).expect("checked above");
                account.password = field("password");
                account.enabled = false;
                account.sessions = 0;
                ok(json!({ "state": "disabled" }))
            } else {
                ok(json!({ "state": "kept" }))
            }
        }
        ScriptBehaviour::Rotate => {
            let (user, grant) = (field("user"), field("grant"));
            let Some(account) = dir.accounts.get(&user) else {
                return failure(4, "account not found");
            };
            if account.description != MARKER {
                return failure(3, "account exists and is not managed by the connector");
            }
            if !dir
                .leases
                .get(&user)
                .is_some_and(|l| l.contains_key(&grant))
            {
                return failure(4, "the grant holds no lease on this account");
            }
            let account = dir.accounts.get_mut(&user).expect("checked above");
            account.password = field("password");
            ok(json!({ "state": "rotated", "domain": netbios(state) }))
        }
        ScriptBehaviour::Cleanup => {
            let user = field("user");
            let Some(account) = dir.accounts.get(&user) else {
                dir.leases.remove(&user);
                return ok(json!({ "state": "gone" }));
            };
            if account.description != MARKER {
                return failure(3, "account exists and is not managed by the connector");
            }
            let now = now_unix();
            let live = dir.leases.get(&user).is_some_and(|l| {
                l.values().any(|v| {
                    v.split_once('|')
                        .and_then(|(e, _)| rfc3339_to_unix(e))
                        .is_some_and(|t| t > now)
                })
            });
            if live {
                return ok(json!({ "state": "in-use" }));
            }
            dir.accounts.remove(&user);
            dir.leases.remove(&user);
            for members in dir.groups.values_mut() {
                members.remove(&user);
            }
            ok(json!({ "state": "deleted" }))
        }
    }
}

fn ok(value: Value) -> Output {
    (format!("{value}\r\n").into_bytes(), Vec::new(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses() {
        assert_eq!(rfc3339_to_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_unix("2000-03-01T00:00:01.5Z"), Some(951_868_801));
        assert_eq!(rfc3339_to_unix("2000-03-01"), None);
    }

    #[test]
    fn elements_are_found_by_local_name() {
        let xml = r#"<s:Body><rsp:CommandLine><rsp:Command>a &amp; b</rsp:Command><rsp:Arguments>-x</rsp:Arguments><rsp:Arguments>y</rsp:Arguments></rsp:CommandLine><w:Selector Name="ShellId">S1</w:Selector></s:Body>"#;
        assert_eq!(element_text(xml, "Command"), Some("a &amp; b"));
        assert_eq!(elements(xml, "Arguments").len(), 2);
        assert_eq!(selector_shell_id(xml).as_deref(), Some("S1"));
    }
}
