//! The fixed PowerShell scripts, one per action, and the only way data reaches them.
//!
//! **Architecture invariant: no data is ever spliced into script text.** Every action runs one
//! of the constant scripts below as `powershell.exe … -EncodedCommand <UTF-16LE base64 of the
//! script>`; the command line is therefore the same for every call of an action. The data —
//! account name, group, grant id, expiry, password — is one JSON object, base64-encoded and
//! written to the command's **stdin** (a WS-Management `Send`), where the script's prelude reads
//! it with `$input` and decodes it. Passing it on stdin rather than as a command-line argument
//! keeps the password out of process command lines, which Windows records in event 4688 when
//! command-line auditing is on. Base64 has no character PowerShell or JSON treats specially, and
//! names are validated against the Windows grammar before a payload is built.
//!
//! These scripts have been verified against `apono_testkit::fakes::winrm` — a model that
//! recognises them by their exact text — **only**, never against a real Windows host.

use data_encoding::BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

/// Read the payload from stdin, decode it, and define the helpers every script shares.
macro_rules! prelude {
    () => {
        r#"$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
trap {
    [Console]::Error.WriteLine($_.Exception.Message)
    if ($_.Exception -is [System.UnauthorizedAccessException]) { exit 5 }
    exit 1
}
$line = [string]($input | Select-Object -First 1)
$p = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($line.Trim())) | ConvertFrom-Json
$Marker = 'Managed by the Apono connector; do not edit'
$LeaseKey = 'HKLM:\SOFTWARE\Apono\Connector\Leases'
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture
$Utc = [System.Globalization.DateTimeStyles]'AdjustToUniversal, AssumeUniversal'
if ($p.mode -eq 'domain') { Import-Module ActiveDirectory }
function Write-Result($value) { [Console]::Out.WriteLine(($value | ConvertTo-Json -Compress -Depth 4)) }
function Stop-Action([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
function Get-DomainName {
    if ($p.mode -eq 'domain') { (Get-ADDomain).NetBIOSName } else { $env:COMPUTERNAME }
}
function Get-Account([string]$name) {
    if ($p.mode -eq 'domain') { Get-ADUser -Filter 'sAMAccountName -eq $name' -Properties Description }
    else { Get-LocalUser -Name $name -ErrorAction SilentlyContinue }
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
        $parts = $v -split '\|', 2
        if ([DateTime]::Parse($parts[0], $Invariant, $Utc) -gt $now) { $groups += , $parts[1] }
    }
    , $groups
}
function Set-Password([string]$name, [string]$plain) {
    $secure = ConvertTo-SecureString -String $plain -AsPlainText -Force
    if ($p.mode -eq 'domain') { Set-ADAccountPassword -Identity $name -Reset -NewPassword $secure }
    else { Set-LocalUser -Name $name -Password $secure }
}
function Test-Member([string]$group, [string]$name) {
    if ($p.mode -eq 'domain') { [bool](Get-ADGroupMember -Identity $group | Where-Object { $_.SamAccountName -eq $name }) }
    else { [bool](Get-LocalGroupMember -Group $group | Where-Object { ($_.Name -split '\\')[-1] -eq $name }) }
}
function Disconnect-Sessions([string]$name) {
    foreach ($row in @(quser.exe 2>$null | Select-Object -Skip 1)) {
        $fields = ($row.Trim() -replace '^>', '') -split '\s+'
        if ($fields[0] -eq $name) {
            $id = $fields | Where-Object { $_ -match '^\d+$' } | Select-Object -First 1
            if ($id) { logoff.exe $id }
        }
    }
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
    $result.domain = $d.NetBIOSName
    $result.dnsDomain = $d.DNSRoot
}
Write-Result $result
"#
);

/// `list-resources`: the computer or domain and its groups.
pub const DISCOVER: &str = concat!(
    prelude!(),
    r#"if ($p.mode -eq 'domain') {
    $d = Get-ADDomain
    $groups = @(Get-ADGroup -Filter * | Select-Object -ExpandProperty Name)
    Write-Result @{ computer = $env:COMPUTERNAME; domain = $d.NetBIOSName; dnsDomain = $d.DNSRoot; groups = $groups }
} else {
    $groups = @(Get-LocalGroup | Select-Object -ExpandProperty Name)
    Write-Result @{ computer = $env:COMPUTERNAME; domain = $env:COMPUTERNAME; dnsDomain = $null; groups = $groups }
}
"#
);

/// `grant-access`: lease first (so revoke can always undo), then create or re-enable the
/// marked account with the new password and an expiry, then the membership.
pub const GRANT: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$group = [string]$p.group
$expires = [DateTime]::Parse([string]$p.expires, $Invariant, $Utc)
$account = Get-Account $name
if ($account -and $account.Description -ne $Marker) { Stop-Action 3 'account exists and is not managed by the connector' }
if ($group) {
    if ($p.mode -eq 'domain') { $found = Get-ADGroup -Filter 'Name -eq $group' }
    else { $found = Get-LocalGroup -Name $group -ErrorAction SilentlyContinue }
    if (-not $found) { Stop-Action 4 'group not found' }
}
$path = Get-LeasePath $name
if (-not (Test-Path -LiteralPath $path)) { New-Item -Path $path -Force | Out-Null }
New-ItemProperty -LiteralPath $path -Name ([string]$p.grant) -Value ('{0}|{1}' -f $expires.ToString('o'), $group) -PropertyType String -Force | Out-Null
$latest = $expires
foreach ($v in (Get-Leases $name).Values) {
    $t = [DateTime]::Parse(($v -split '\|', 2)[0], $Invariant, $Utc)
    if ($t -gt $latest) { $latest = $t }
}
$secure = ConvertTo-SecureString -String ([string]$p.password) -AsPlainText -Force
$created = -not $account
if ($p.mode -eq 'domain') {
    if ($created) {
        New-ADUser -Name $name -SamAccountName $name -Description $Marker -AccountPassword $secure -Enabled $true -AccountExpirationDate $latest.ToLocalTime() -CannotChangePassword $true -PasswordNeverExpires $true
    } else {
        Set-ADAccountPassword -Identity $name -Reset -NewPassword $secure
        Set-ADUser -Identity $name -AccountExpirationDate $latest.ToLocalTime()
        Enable-ADAccount -Identity $name
    }
    if ($group -and -not (Test-Member $group $name)) { Add-ADGroupMember -Identity $group -Members $name }
} else {
    if ($created) {
        New-LocalUser -Name $name -Description $Marker -Password $secure -AccountExpires $latest.ToLocalTime() -UserMayNotChangePassword -PasswordNeverExpires | Out-Null
    } else {
        Set-LocalUser -Name $name -Password $secure -AccountExpires $latest.ToLocalTime()
        Enable-LocalUser -Name $name
    }
    if ($group -and -not (Test-Member $group $name)) { Add-LocalGroupMember -Group $group -Member $name }
}
Write-Result @{ created = $created; domain = (Get-DomainName) }
"#
);

/// `revoke-access`: drop this grant's lease; keep what live leases still need; without any,
/// scramble the password, disable the account and log off its sessions.
pub const REVOKE: &str = concat!(
    prelude!(),
    r#"$name = [string]$p.user
$group = [string]$p.group
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
if ($group -and -not ($remaining -contains $group) -and (Test-Member $group $name)) {
    if ($p.mode -eq 'domain') { Remove-ADGroupMember -Identity $group -Members $name -Confirm:$false }
    else { Remove-LocalGroupMember -Group $group -Member $name }
}
if ($remaining.Count -gt 0) { Write-Result @{ state = 'kept' }; exit 0 }
Set-Password $name ([string]$p.password)
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
Set-Password $name ([string]$p.password)
Write-Result @{ state = 'rotated'; domain = (Get-DomainName) }
"#
);

/// `delete-credentials`: delete a marked account that no live lease uses.
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
