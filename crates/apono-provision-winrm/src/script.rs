//! The fixed PowerShell scripts, one per action, and the only way data reaches them.
//!
//! **Architecture invariant: no data is ever spliced into script text.** Every action runs one
//! of the constant scripts below as `powershell.exe … -EncodedCommand <UTF-16LE base64 of the
//! script>`; the command line is therefore the same for every call of an action. The data —
//! account name, group, grant id, expiry, password — is one JSON object, base64-encoded and
//! written to the command's **stdin** (a WS-Management `Send` that ends the stream), where the
//! script's prelude reads it — through `$input`, as Ansible's WinRM bootstrap does, falling back
//! to `[Console]::In` — and decodes it; a missing or undecodable line exits 2 with a fixed
//! message that never quotes the input. Passing it on stdin rather than as a command-line argument
//! keeps the password out of process command lines, which Windows records in event 4688 when
//! command-line auditing is on. Base64 has no character PowerShell or JSON treats specially, and
//! names are validated against the Windows grammar before a payload is built.
//!
//! Every script runs with `$ErrorActionPreference = 'Stop'` and `Set-StrictMode -Version 2.0`;
//! a `trap` prints the exception's message (never the payload) and sets the exit code the
//! provisioner maps to an error kind: 2 bad payload, 3 account not managed by the connector,
//! 4 not found, 5 access denied, 1 anything else. Every action can be repeated: granting again
//! refreshes the same lease, and revoking or cleaning up what is gone succeeds.
//!
//! Well-known groups are resolved by SID (payload fields `groupSid`, a built-in alias, and
//! `groupRid`, a default domain group; see [`crate::groups`]), other groups by name. Sessions
//! are found through `Get-Process -IncludeUserName`, not `quser` (see `Disconnect-Sessions`).
//!
//! **Verification**: the scripts are parsed by tree-sitter-powershell in the crate's tests and
//! modelled by `apono_testkit::fakes::winrm`, which recognises them by their exact text; they
//! have never run on a real Windows host.

use data_encoding::BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

/// Read the payload from stdin, decode it, and define the helpers every script shares.
macro_rules! prelude {
    () => {
        r#"$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 2.0
# Exit codes: 0 done, 2 no or bad payload, 3 account not ours, 4 not found, 5 access denied, 1
# anything else. Errors print the exception's message only, never the payload or the script.
trap {
    $kind = $_.Exception.GetType().Name
    [Console]::Error.WriteLine($_.Exception.Message)
    if ($kind -eq 'UnauthorizedAccessException' -or $kind -eq 'AccessDeniedException') { exit 5 }
    exit 1
}
function Stop-Action([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { $null = $_ }
# The payload is the first non-empty line of stdin, which WinRS fills from the WS-Management
# Send and then closes. powershell.exe -EncodedCommand hands redirected stdin to the script as
# $input, line by line (Ansible's WinRM bootstrap reads its payload the same way); should the
# host hand nothing on, the line is read from the process's stdin directly.
$line = [string](@($input) | Where-Object { ([string]$_).Trim() } | Select-Object -First 1)
if (-not $line.Trim() -and [Console]::IsInputRedirected) { $line = [string][Console]::In.ReadLine() }
if (-not $line.Trim()) { Stop-Action 2 'no payload on stdin: expected one base64 JSON line' }
try {
    $p = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($line.Trim())) | ConvertFrom-Json
} catch { Stop-Action 2 'the payload on stdin is not base64-encoded JSON' }
Remove-Variable -Name line
if (-not ($p.mode -eq 'local' -or $p.mode -eq 'domain')) { Stop-Action 2 'the payload names no known mode' }
# The password, if the action has one, lives on only as a SecureString.
$Password = $null
if ($p.PSObject.Properties['password']) {
    $Password = ConvertTo-SecureString -String ([string]$p.password) -AsPlainText -Force
    $p.password = $null
}
$Marker = 'Managed by the Apono connector; do not edit'
$LeaseKey = 'HKLM:\SOFTWARE\Apono\Connector\Leases'
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture
$Utc = [System.Globalization.DateTimeStyles]'AdjustToUniversal, AssumeUniversal'
if ($p.mode -eq 'domain') { Import-Module ActiveDirectory } else { Import-Module Microsoft.PowerShell.LocalAccounts }
function Write-Result($value) { [Console]::Out.WriteLine(($value | ConvertTo-Json -Compress -Depth 4)) }
function Get-DomainName {
    if ($p.mode -eq 'domain') { [string](Get-ADDomain).NetBIOSName } else { [string]$env:COMPUTERNAME }
}
function Get-Account([string]$name) {
    if ($p.mode -eq 'domain') { Get-ADUser -Filter 'sAMAccountName -eq $name' -Properties 'Description', 'MemberOf', 'PrimaryGroup' }
    else { Get-LocalUser -Name $name -ErrorAction SilentlyContinue }
}
# The payload's group: by SID when it is a well-known group (groupSid: a built-in alias
# S-1-5-32-...; groupRid: a default domain group, relative to the domain's SID), because
# localised Windows gives those other names; by its exact name otherwise. $null when absent.
function Resolve-Group {
    $name = [string]$p.group
    if (-not $name) { return $null }
    $sid = [string]$p.groupSid
    if ($p.mode -eq 'domain') {
        if ([int]$p.groupRid -gt 0) { $sid = '{0}-{1}' -f (Get-ADDomain).DomainSID.Value, [int]$p.groupRid }
        if ($sid) {
            try { return Get-ADGroup -Identity $sid }
            catch { if ($_.Exception.GetType().Name -eq 'ADIdentityNotFoundException') { return $null } else { throw } }
        }
        $found = @(Get-ADGroup -Filter 'Name -eq $name')
    } elseif ($sid) {
        $found = @(Get-LocalGroup -SID $sid -ErrorAction SilentlyContinue)
    } else {
        $found = @(Get-LocalGroup -Name $name -ErrorAction SilentlyContinue)
    }
    if ($found.Count -gt 1) { Stop-Action 4 'the group name is ambiguous' }
    if ($found.Count -eq 0) { return $null }
    $found[0]
}
# Membership changes that succeed when there is nothing to do. Local groups are changed by
# SID, and not read with Get-LocalGroupMember, which fails on groups holding orphaned SIDs.
function Add-Membership($group, $account) {
    if ($p.mode -eq 'domain') {
        if ($account.MemberOf -contains $group.DistinguishedName -or $account.PrimaryGroup -eq $group.DistinguishedName) { return }
        Add-ADGroupMember -Identity $group -Members $account
    } else {
        try { Add-LocalGroupMember -SID $group.SID -Member $account }
        catch { if (-not ($_.Exception.GetType().Name -eq 'MemberExistsException' -or $_.FullyQualifiedErrorId -like 'MemberExists,*')) { throw } }
    }
}
function Remove-Membership($group, $account) {
    if ($p.mode -eq 'domain') {
        if ($account.MemberOf -contains $group.DistinguishedName) { Remove-ADGroupMember -Identity $group -Members $account -Confirm:$false }
    } else {
        try { Remove-LocalGroupMember -SID $group.SID -Member $account }
        catch { if (-not ($_.Exception.GetType().Name -eq 'MemberNotFoundException' -or $_.FullyQualifiedErrorId -like 'MemberNotFound,*')) { throw } }
    }
}
function Get-LeasePath([string]$name) { Join-Path $LeaseKey $name }
function Get-Leases([string]$name) {
    $leases = @{}
    $path = Get-LeasePath $name
    if (Test-Path -LiteralPath $path) {
        $key = Get-Item -LiteralPath $path
        foreach ($n in $key.GetValueNames()) { $leases[$n] = [string]$key.GetValue($n) }
    }
    $leases
}
function Get-LiveLeaseGroups([string]$name) {
    $now = [DateTime]::UtcNow
    $groups = @()
    foreach ($v in (Get-Leases $name).Values) {
        $parts = @($v -split '\|', 2)
        if ($parts.Count -eq 2 -and [DateTime]::Parse($parts[0], $Invariant, $Utc) -gt $now) { $groups += , $parts[1] }
    }
    , $groups
}
function Set-Password([string]$name) {
    if ($p.mode -eq 'domain') { Set-ADAccountPassword -Identity $name -Reset -NewPassword $Password }
    else { Set-LocalUser -Name $name -Password $Password }
}
# Logs off every session, active or disconnected, in which the account runs processes.
# Not quser: its output is localised and column-based, and with no one signed in it writes to
# stderr and exits 1, which with stderr redirected under $ErrorActionPreference = 'Stop' aborts
# Windows PowerShell 5.1. Nor WMI's Win32_LoggedOnUser: it maps to logon sessions, not to the
# Remote Desktop session ids logoff needs, and keeps stale entries. Get-Process -IncludeUserName
# (PowerShell 4+, needs the administrator rights the connector has anyway) gives each process's
# owner as DOMAIN\user, never localised, and its session id; every RDP session, disconnected
# ones too, keeps processes of its user (sihost, explorer, rdpclip), so the distinct non-zero
# session ids of the account's processes are exactly its sessions. logoff.exe takes the numeric
# id; its output and exit code are ignored (a session may end by itself meanwhile).
function Disconnect-Sessions([string]$name) {
    $owner = '{0}\{1}' -f (Get-DomainName), $name
    $ids = @(Get-Process -IncludeUserName | Where-Object { $_.SessionId -ne 0 -and $_.UserName -eq $owner } | ForEach-Object { [int]$_.SessionId } | Sort-Object -Unique)
    $ErrorActionPreference = 'Continue'
    foreach ($id in $ids) { $null = & logoff.exe $id 2>&1 }
}
"#
    };
}

/// `get-status`: who the connector is, where, and whether it is an administrator.
pub const STATUS: &str = concat!(
    prelude!(),
    r#"$id = [System.Security.Principal.WindowsIdentity]::GetCurrent()
$admin = ([System.Security.Principal.WindowsPrincipal]$id).IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
$result = @{ user = $id.Name; computer = $env:COMPUTERNAME; admin = $admin; domain = $env:COMPUTERNAME; dnsDomain = $null }
if ($p.mode -eq 'domain') {
    $d = Get-ADDomain
    $result.domain = [string]$d.NetBIOSName
    $result.dnsDomain = [string]$d.DNSRoot
}
Write-Result $result
"#
);

/// `list-resources`: the computer or domain and its groups, each with its SID (in `groupSids`,
/// the same order) so well-known groups are offered under one name in every language.
pub const DISCOVER: &str = concat!(
    prelude!(),
    r#"if ($p.mode -eq 'domain') {
    $d = Get-ADDomain
    $all = @(Get-ADGroup -Filter *)
    $result = @{ computer = $env:COMPUTERNAME; domain = [string]$d.NetBIOSName; dnsDomain = [string]$d.DNSRoot; domainSid = [string]$d.DomainSID.Value }
} else {
    $all = @(Get-LocalGroup)
    $result = @{ computer = $env:COMPUTERNAME; domain = $env:COMPUTERNAME; dnsDomain = $null; domainSid = $null }
}
$result.groups = [string[]]@(foreach ($g in $all) { [string]$g.Name })
$result.groupSids = [string[]]@(foreach ($g in $all) { [string]$g.SID.Value })
Write-Result $result
"#
);

/// `grant-access`: lease first (so revoke can always undo), then create or re-enable the
/// marked account with the new password and an expiry, then the membership. Granting twice
/// leaves the same state (with the newer password).
pub const GRANT: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$expires = [DateTime]::Parse([string]$p.expires, $Invariant, $Utc)
$account = Get-Account $name
if ($account -and $account.Description -ne $Marker) { Stop-Action 3 'account exists and is not managed by the connector' }
$group = Resolve-Group
if ($p.group -and -not $group) { Stop-Action 4 'group not found' }
$path = Get-LeasePath $name
if (-not (Test-Path -LiteralPath $path)) { New-Item -Path $path -Force | Out-Null }
New-ItemProperty -LiteralPath $path -Name ([string]$p.grant) -Value ('{0}|{1}' -f $expires.ToString('o'), [string]$p.group) -PropertyType String -Force | Out-Null
$latest = $expires
foreach ($v in (Get-Leases $name).Values) {
    $t = [DateTime]::Parse(@($v -split '\|', 2)[0], $Invariant, $Utc)
    if ($t -gt $latest) { $latest = $t }
}
$created = -not $account
if ($p.mode -eq 'domain') {
    if ($created) {
        New-ADUser -Name $name -SamAccountName $name -Description $Marker -AccountPassword $Password -Enabled $true -AccountExpirationDate $latest.ToLocalTime() -CannotChangePassword $true -PasswordNeverExpires $true
    } else {
        Set-ADAccountPassword -Identity $name -Reset -NewPassword $Password
        Set-ADUser -Identity $name -AccountExpirationDate $latest.ToLocalTime()
        Enable-ADAccount -Identity $name
    }
} else {
    if ($created) {
        New-LocalUser -Name $name -Description $Marker -Password $Password -AccountExpires $latest.ToLocalTime() -UserMayNotChangePassword -PasswordNeverExpires | Out-Null
    } else {
        Set-LocalUser -Name $name -Password $Password -AccountExpires $latest.ToLocalTime()
        Enable-LocalUser -Name $name
    }
}
if ($group) { Add-Membership $group (Get-Account $name) }
Write-Result @{ created = $created; domain = (Get-DomainName) }
"#
);

/// `revoke-access`: drop this grant's lease; keep what live leases still need; without any,
/// scramble the password, disable the account and log off its sessions. Revoking what is
/// already gone (the lease, the membership, the group, the account) succeeds.
pub const REVOKE: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$account = Get-Account $name
$path = Get-LeasePath $name
if (-not $account) {
    if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
    Write-Result @{ state = 'gone' }
    exit 0
}
if ($account.Description -ne $Marker) { Stop-Action 3 'account exists and is not managed by the connector' }
if (Test-Path -LiteralPath $path) {
    Remove-ItemProperty -LiteralPath $path -Name ([string]$p.grant) -ErrorAction SilentlyContinue
    if (@((Get-Item -LiteralPath $path).GetValueNames()).Count -eq 0) { Remove-Item -LiteralPath $path -Force }
}
$remaining = Get-LiveLeaseGroups $name
if ($p.group -and -not ($remaining -contains [string]$p.group)) {
    $group = Resolve-Group
    if ($group) { Remove-Membership $group $account }
}
if ($remaining.Count -gt 0) { Write-Result @{ state = 'kept' }; exit 0 }
Set-Password $name
if ($p.mode -eq 'domain') { Disable-ADAccount -Identity $name } else { Disable-LocalUser -Name $name }
Disconnect-Sessions $name
Write-Result @{ state = 'disabled' }
"#
);

/// `reset-credentials`: a new password for a marked account that holds the grant's lease.
pub const ROTATE: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$account = Get-Account $name
if (-not $account) { Stop-Action 4 'account not found' }
if ($account.Description -ne $Marker) { Stop-Action 3 'account exists and is not managed by the connector' }
if (-not (Get-Leases $name).ContainsKey([string]$p.grant)) { Stop-Action 4 'the grant holds no lease on this account' }
Set-Password $name
Write-Result @{ state = 'rotated'; domain = (Get-DomainName) }
"#
);

/// `delete-credentials`: delete a marked account that no live lease uses; deleting what is
/// gone succeeds.
pub const CLEANUP: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$account = Get-Account $name
$path = Get-LeasePath $name
if (-not $account) {
    if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
    Write-Result @{ state = 'gone' }
    exit 0
}
if ($account.Description -ne $Marker) { Stop-Action 3 'account exists and is not managed by the connector' }
if ((Get-LiveLeaseGroups $name).Count -gt 0) { Write-Result @{ state = 'in-use' }; exit 0 }
if ($p.mode -eq 'domain') { Remove-ADUser -Identity $name -Confirm:$false } else { Remove-LocalUser -Name $name }
if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
Write-Result @{ state = 'deleted' }
"#
);

/// The action a fixed script carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ScriptKind {
    /// [`STATUS`].
    Status,
    /// [`DISCOVER`].
    Discover,
    /// [`GRANT`].
    Grant,
    /// [`REVOKE`].
    Revoke,
    /// [`ROTATE`].
    Rotate,
    /// [`CLEANUP`].
    Cleanup,
}

impl ScriptKind {
    /// Every script.
    pub const ALL: [Self; 6] = [
        Self::Status,
        Self::Discover,
        Self::Grant,
        Self::Revoke,
        Self::Rotate,
        Self::Cleanup,
    ];

    /// The script's text.
    pub const fn text(self) -> &'static str {
        match self {
            Self::Status => STATUS,
            Self::Discover => DISCOVER,
            Self::Grant => GRANT,
            Self::Revoke => REVOKE,
            Self::Rotate => ROTATE,
            Self::Cleanup => CLEANUP,
        }
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Discover => "discover",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Rotate => "rotate",
            Self::Cleanup => "cleanup",
        }
    }
}

/// The program every command runs.
pub const PROGRAM: &str = "powershell.exe";

/// The arguments before the encoded script, the same for every action.
pub const FIXED_ARGUMENTS: [&str; 6] = [
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
];

/// `powershell.exe -EncodedCommand` takes base64 of the UTF-16LE script.
pub fn encode_script(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    BASE64.encode(&utf16)
}

/// One command, exactly as it is sent: a fixed program and argument list for the action, and a
/// stdin that is one base64 line. `Debug` hides the stdin, which may hold a password.
#[derive(Clone)]
pub struct RemoteCommand {
    /// Which script.
    pub kind: ScriptKind,
    /// The program ([`PROGRAM`]).
    pub program: &'static str,
    /// [`FIXED_ARGUMENTS`] followed by [`encode_script`] of the script.
    pub arguments: Vec<String>,
    /// The base64 JSON payload and `\r\n`.
    pub stdin: Zeroizing<String>,
}

impl std::fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCommand")
            .field("kind", &self.kind)
            .field("program", &self.program)
            .field("stdin", &apono_core::REDACTED)
            .finish_non_exhaustive()
    }
}

/// [`encode_script`] of each script, computed once.
fn encoded(kind: ScriptKind) -> &'static str {
    static ENCODED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = ENCODED.get_or_init(|| {
        ScriptKind::ALL
            .iter()
            .map(|k| encode_script(k.text()))
            .collect()
    });
    let index = ScriptKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    &all[index]
}

/// Builds the command for `kind` with `payload` (any serialisable value; the payload types of
/// this crate keep passwords as [`SecretString`] and serialise them only here).
pub fn command<T: Serialize>(kind: ScriptKind, payload: &T) -> RemoteCommand {
    // Serialising our own payload structs cannot fail (string and bool fields only).
    let json = Zeroizing::new(serde_json::to_vec(payload).unwrap_or_default());
    let mut stdin = Zeroizing::new(BASE64.encode(&json));
    stdin.push_str("\r\n");
    let mut arguments: Vec<String> = FIXED_ARGUMENTS.iter().map(|a| (*a).to_owned()).collect();
    arguments.push(encoded(kind).to_owned());
    RemoteCommand {
        kind,
        program: PROGRAM,
        arguments,
        stdin,
    }
}

/// Serialises a password into the payload (and nowhere else).
pub(crate) fn expose<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}
