//! Validated names for target systems, and the derivation of an account name from a grantee.
//!
//! Every name that reaches a shell, PowerShell or SQL is first parsed into one of these types,
//! whose grammar is strict enough that quoting it by construction is trivially safe. The target
//! system is a type parameter ([`Linux`], [`Windows`], [`PostgreSql`], [`MySql`]), so a
//! provisioner cannot be handed a name checked against another system's rules.
//!
//! # Account name derivation
//!
//! [`AccountNaming::derive`] maps a grantee's identity (email, or id) to an account name. It is
//! **deterministic** (the same identity always gives the same name, across restarts and
//! replicas, so revoke and cleanup find the account again) and **injective** (two identities
//! never share an account):
//!
//! * The identity is normalised: surrounding whitespace trimmed, lower-cased.
//! * A *clean* identity keeps a readable name: its domain is the configured home domain (or it
//!   has no `@` and no home domain is configured), its local part is ASCII letters and digits
//!   separated by single `.` or `-`, starts with a letter, fits the target's length limit and is
//!   not a reserved name. `john.smith@corp.example` becomes `john_smith`.
//! * Every other identity becomes a sanitised, shortened local part, then `__`, then ten base32
//!   characters of a SHA-256 of the whole normalised identity: `john_smith__k5x2q7mbe3`.
//!
//! Clean names never contain `__` (their separators are single) and hashed names always do, so
//! the two sets cannot meet; clean names map one-to-one to local parts of one domain; hashed
//! names differ whenever their 50-bit hashes do.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

pub use crate::error::NameError;
use crate::grant::Grantee;

mod sealed {
    pub trait Sealed {}
}

/// A target system whose account and group names have their own grammar.
///
/// Sealed: the grammars live here, next to the derivation that must satisfy them.
pub trait NameKind: sealed::Sealed + Copy + fmt::Debug + Send + Sync + 'static {
    /// The system's name for messages, such as `Linux`.
    const SYSTEM: &'static str;
    /// Longest account name the system accepts.
    const MAX_ACCOUNT_LEN: usize;
    /// Checks an account name; returns why it is refused.
    fn check_account(name: &str) -> Result<(), &'static str>;
    /// Checks a group (or role) name; returns why it is refused.
    fn check_group(name: &str) -> Result<(), &'static str>;
}

/// Linux (POSIX) users and groups: `^[a-z_][a-z0-9_-]{0,31}$`, not all digits; account names
/// also not reserved system names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Linux;

/// Windows local and Active Directory accounts (`sAMAccountName`, at most 20 characters) and
/// groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Windows;

/// PostgreSQL roles (at most 63 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PostgreSql;

/// MySQL and MariaDB users (at most 32 characters) and roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MySql;

impl sealed::Sealed for Linux {}
impl sealed::Sealed for Windows {}
impl sealed::Sealed for PostgreSql {}
impl sealed::Sealed for MySql {}

/// Accounts that exist on stock systems or belong to services; never derived, never accepted.
const RESERVED_LINUX: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "_apt",
    "messagebus",
    "sshd",
    "postgres",
    "mysql",
    "apono",
    "admin",
    "administrator",
    "operator",
    "halt",
    "shutdown",
    "ftp",
    "adm",
    "wheel",
    "sudo",
    "guest",
    "polkitd",
    "syslog",
    "tss",
    "uuidd",
    "tcpdump",
    "avahi",
    "dnsmasq",
    "ntp",
    "chrony",
    "_chrony",
    "lxd",
    "ubuntu",
    "debian",
    "ec2-user",
    "centos",
    "fedora",
    "azureuser",
    "ssm-user",
    "docker",
    "git",
    "nfsnobody",
];
const RESERVED_WINDOWS: &[&str] = &[
    "administrator",
    "guest",
    "krbtgt",
    "defaultaccount",
    "wdagutilityaccount",
    "apono",
    "system",
    "localsystem",
    "networkservice",
    "localservice",
];
const RESERVED_POSTGRES: &[&str] = &[
    "postgres",
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
    "apono",
];
const RESERVED_MYSQL: &[&str] = &[
    "root",
    "mysql",
    "mariadb",
    "public",
    "apono",
    "debian-sys-maint",
];

/// `^[a-z_][a-z0-9_-]{0,max-1}$`.
fn lower_ident(name: &str, max: usize) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err("is empty"),
        Some(b) if !(b.is_ascii_lowercase() || *b == b'_') => {
            return Err("must start with a lower-case letter or '_'");
        }
        Some(_) => {}
    }
    if bytes.len() > max {
        return Err("is too long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
    {
        return Err("may contain only a-z, 0-9, '_' and '-'");
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Err("must not be all digits");
    }
    Ok(())
}

fn not_reserved(name: &str, reserved: &[&str]) -> Result<(), &'static str> {
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) || name.starts_with("systemd-") {
        Err("is a reserved name")
    } else {
        Ok(())
    }
}

impl NameKind for Linux {
    const SYSTEM: &'static str = "Linux";
    const MAX_ACCOUNT_LEN: usize = 32;

    fn check_account(name: &str) -> Result<(), &'static str> {
        lower_ident(name, Self::MAX_ACCOUNT_LEN)?;
        not_reserved(name, RESERVED_LINUX)
    }

    fn check_group(name: &str) -> Result<(), &'static str> {
        lower_ident(name, 32)
    }
}

/// Characters Windows forbids in account and group names.
const WINDOWS_FORBIDDEN: &str = "\"/\\[]:;|=,+*?<>@";

impl NameKind for Windows {
    const SYSTEM: &'static str = "Windows";
    const MAX_ACCOUNT_LEN: usize = 20;

    fn check_account(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("is empty");
        }
        if name.len() > Self::MAX_ACCOUNT_LEN {
            return Err("is too long");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("may contain only A-Z, a-z, 0-9, '.', '_' and '-'");
        }
        if name.starts_with(['-', '.']) || name.ends_with('.') {
            return Err("must not start with '-' or '.' nor end with '.'");
        }
        not_reserved(name, RESERVED_WINDOWS)
    }

    fn check_group(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("is empty");
        }
        if name.chars().count() > 256 {
            return Err("is too long");
        }
        if name
            .chars()
            .any(|c| c.is_control() || WINDOWS_FORBIDDEN.contains(c))
        {
            return Err("contains a character Windows forbids in group names");
        }
        if name.starts_with([' ', '-']) || name.ends_with([' ', '.']) {
            return Err("must not start with ' ' or '-' nor end with ' ' or '.'");
        }
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || " ._-'()&".contains(c))
        {
            return Err("may contain only letters, digits, spaces and . _ - ' ( ) &");
        }
        Ok(())
    }
}

impl NameKind for PostgreSql {
    const SYSTEM: &'static str = "PostgreSQL";
    const MAX_ACCOUNT_LEN: usize = 63;

    fn check_account(name: &str) -> Result<(), &'static str> {
        lower_ident(name, Self::MAX_ACCOUNT_LEN)?;
        if name.starts_with("pg_") {
            return Err("must not start with 'pg_'");
        }
        not_reserved(name, RESERVED_POSTGRES)
    }

    fn check_group(name: &str) -> Result<(), &'static str> {
        lower_ident(name, Self::MAX_ACCOUNT_LEN)
    }
}

impl NameKind for MySql {
    const SYSTEM: &'static str = "MySQL";
    const MAX_ACCOUNT_LEN: usize = 32;

    fn check_account(name: &str) -> Result<(), &'static str> {
        lower_ident(name, Self::MAX_ACCOUNT_LEN)?;
        if name.starts_with("mysql.") || name.starts_with("mariadb.") {
            return Err("is a reserved name");
        }
        not_reserved(name, RESERVED_MYSQL)
    }

    fn check_group(name: &str) -> Result<(), &'static str> {
        if name.is_empty() || name.len() > 32 {
            return Err("must be 1-32 characters");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("may contain only A-Z, a-z, 0-9 and '_'");
        }
        Ok(())
    }
}

macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident, $check:ident, $label:literal) => {
        $(#[$meta])*
        pub struct $name<K: NameKind> {
            name: String,
            kind: PhantomData<K>,
        }

        impl<K: NameKind> $name<K> {
            /// Checks `name` against the system's grammar.
            pub fn parse(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                match K::$check(&name) {
                    Ok(()) => Ok(Self { name, kind: PhantomData }),
                    Err(reason) => Err(NameError::new(
                        format!("{} {}", K::SYSTEM, $label),
                        &name,
                        reason,
                    )),
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.name
            }

            /// The name as an owned string.
            pub fn into_string(self) -> String {
                self.name
            }
        }

        impl<K: NameKind> Clone for $name<K> {
            fn clone(&self) -> Self {
                Self { name: self.name.clone(), kind: PhantomData }
            }
        }

        impl<K: NameKind> PartialEq for $name<K> {
            fn eq(&self, other: &Self) -> bool {
                self.name == other.name
            }
        }

        impl<K: NameKind> Eq for $name<K> {}

        impl<K: NameKind> Hash for $name<K> {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.name.hash(state);
            }
        }

        impl<K: NameKind> PartialOrd for $name<K> {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl<K: NameKind> Ord for $name<K> {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.name.cmp(&other.name)
            }
        }

        impl<K: NameKind> fmt::Debug for $name<K> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}<{}>({:?})", stringify!($name), K::SYSTEM, self.name)
            }
        }

        impl<K: NameKind> fmt::Display for $name<K> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.name)
            }
        }

        impl<K: NameKind> AsRef<str> for $name<K> {
            fn as_ref(&self) -> &str {
                &self.name
            }
        }

        impl<K: NameKind> std::str::FromStr for $name<K> {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl<K: NameKind> Serialize for $name<K> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.name)
            }
        }

        impl<'de, K: NameKind> Deserialize<'de> for $name<K> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// An account name that passed the grammar of system `K`.
    AccountName,
    check_account,
    "account name"
);

validated_name!(
    /// A group (or role) name that passed the grammar of system `K`.
    GroupName,
    check_group,
    "group name"
);

/// A Linux username.
pub type LinuxUsername = AccountName<Linux>;
/// A Linux group name.
pub type LinuxGroupName = GroupName<Linux>;
/// A Windows `sAMAccountName`.
pub type SamAccountName = AccountName<Windows>;
/// A PostgreSQL role that can log in.
pub type PostgresRoleName = AccountName<PostgreSql>;
/// A MySQL or MariaDB user name.
pub type MySqlUserName = AccountName<MySql>;

/// How grantee identities become account names; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountNaming {
    /// Identities in this email domain whose local part is clean keep it as their account name
    /// (`alice@corp.example` → `alice`); all others get a hash suffix.
    #[serde(default)]
    pub home_domain: Option<String>,
}

/// Length of the hash suffix, in base32 characters (5 bits each).
const HASH_CHARS: usize = 10;
/// Separator between a sanitised base and the hash; never appears in clean names.
const HASH_SEPARATOR: &str = "__";
/// Domain-separation prefix of the hash, versioned so the scheme can change deliberately.
const HASH_CONTEXT: &[u8] = b"apono-account-name-v1\0";

impl AccountNaming {
    /// Derivation with no home domain: only identities without `@` stay readable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the home domain.
    pub fn with_home_domain(mut self, domain: impl Into<String>) -> Self {
        self.home_domain = Some(domain.into().trim().to_lowercase());
        self
    }

    /// The account name for a grantee.
    pub fn account_for<K: NameKind>(&self, grantee: &Grantee) -> AccountName<K> {
        self.derive(grantee.identity())
    }

    /// The account name for an identity (an email, or any id).
    pub fn derive<K: NameKind>(&self, identity: &str) -> AccountName<K> {
        let normalised = identity.trim().to_lowercase();
        let (local, domain) = match normalised.rsplit_once('@') {
            Some((local, domain)) => (local, Some(domain)),
            None => (normalised.as_str(), None),
        };
        let home = self.home_domain.as_deref().map(str::trim);
        let home = home.map(str::to_lowercase);
        if domain == home.as_deref() && is_clean_local(local) {
            let candidate = local.replace('.', "_");
            if candidate.len() <= K::MAX_ACCOUNT_LEN && K::check_account(&candidate).is_ok() {
                return AccountName {
                    name: candidate,
                    kind: PhantomData,
                };
            }
        }
        hashed_name(&normalised, local, K::MAX_ACCOUNT_LEN)
    }
}

/// Letters and digits in runs separated by single `.` or `-`, starting with a letter.
fn is_clean_local(local: &str) -> bool {
    let bytes = local.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    first.is_ascii_lowercase()
        && !matches!(bytes.last(), Some(b'.' | b'-'))
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && !bytes
            .windows(2)
            .any(|w| matches!(w[0], b'.' | b'-') && matches!(w[1], b'.' | b'-'))
}

fn hashed_name<K: NameKind>(normalised: &str, local: &str, max_len: usize) -> AccountName<K> {
    let digest = Sha256::new()
        .chain_update(HASH_CONTEXT)
        .chain_update(normalised.as_bytes())
        .finalize();
    let hash = BASE32_NOPAD.encode(&digest).to_ascii_lowercase();
    let hash = &hash[..HASH_CHARS];

    let max_base = max_len - HASH_SEPARATOR.len() - HASH_CHARS;
    let mut base = String::with_capacity(max_base);
    for c in local.chars() {
        let mapped = match c {
            'a'..='z' | '0'..='9' => c,
            '-' => '-',
            '.' | '_' | '+' => '_',
            _ => continue,
        };
        let separator = matches!(mapped, '-' | '_');
        if base.is_empty() && !mapped.is_ascii_lowercase() {
            continue; // must start with a letter
        }
        if separator && base.ends_with(['-', '_']) {
            continue; // single separators only, so the base never contains "__"
        }
        if base.len() == max_base {
            break;
        }
        base.push(mapped);
    }
    while base.ends_with(['-', '_']) {
        base.pop();
    }
    if base.is_empty() {
        base.push('u');
    }
    let mut name = format!("{base}{HASH_SEPARATOR}{hash}");
    if K::check_account(&name).is_err() {
        // A prefix the target reserves (such as PostgreSQL's `pg_`): the hash alone carries the
        // identity, so a neutral base keeps the name unique.
        name = format!("u{HASH_SEPARATOR}{hash}");
    }
    AccountName {
        name,
        kind: PhantomData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<K: NameKind>(naming: &AccountNaming, identity: &str, expected: &str) {
        let derived: AccountName<K> = naming.derive(identity);
        assert_eq!(derived.as_str(), expected, "{identity} on {}", K::SYSTEM);
        AccountName::<K>::parse(derived.as_str()).expect("derived names pass their grammar");
    }

    #[test]
    fn clean_identities_stay_readable() {
        let naming = AccountNaming::new().with_home_domain("Corp.Example");
        check::<Linux>(&naming, "alice@corp.example", "alice");
        check::<Linux>(&naming, " John.Smith@CORP.example ", "john_smith");
        check::<Linux>(&naming, "mary-ann@corp.example", "mary-ann");
        check::<Windows>(&naming, "alice@corp.example", "alice");
        check::<PostgreSql>(&naming, "j.doe2@corp.example", "j_doe2");
    }

    #[test]
    fn everything_else_gets_a_hash_suffix() {
        let naming = AccountNaming::new().with_home_domain("corp.example");
        for identity in [
            "alice@other.example",
            "john_smith@corp.example",
            "root@corp.example",
            "a..b@corp.example",
            "1abc@corp.example",
            "alice",
            "",
            "@corp.example",
            "Ünïcödé@corp.example",
        ] {
            let name: LinuxUsername = naming.derive(identity);
            assert!(name.as_str().contains("__"), "{identity} -> {name}");
        }
        let long: SamAccountName = naming.derive("averyveryverylongname@corp.example");
        assert_eq!(long.as_str().len(), 20);
        assert!(long.as_str().starts_with("averyver__"), "{long}");
    }

    #[test]
    fn same_local_part_in_other_domains_never_collides() {
        let naming = AccountNaming::new().with_home_domain("corp.example");
        let a: LinuxUsername = naming.derive("alice@corp.example");
        let b: LinuxUsername = naming.derive("alice@evil.example");
        let c: LinuxUsername = naming.derive("alice");
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_ne!(a, c);
    }

    #[test]
    fn without_home_domain_plain_ids_stay_readable() {
        let naming = AccountNaming::new();
        check::<Linux>(&naming, "alice", "alice");
        let emailed: LinuxUsername = naming.derive("alice@corp.example");
        assert!(emailed.as_str().starts_with("alice__"), "{emailed}");
    }

    #[test]
    fn linux_grammar() {
        for good in ["alice", "_svc", "a-b_c9", &"a".repeat(32)] {
            assert!(LinuxUsername::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Alice",
            "9lives",
            "-rf",
            "a b",
            "a;b",
            "a$(id)",
            "a`id`",
            "a\nb",
            "a\0b",
            "ａlice",
            "a\u{2019}b",
            &"a".repeat(33),
            "root",
            "systemd-network",
            "12345",
        ] {
            let err = LinuxUsername::parse(bad).unwrap_err();
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        assert!(LinuxGroupName::parse("sudo").is_ok());
        assert!(LinuxGroupName::parse("Sudo").is_err());
    }

    #[test]
    fn windows_grammar() {
        assert!(SamAccountName::parse("Alice.Smith").is_ok());
        for bad in [
            "a/b",
            "a\\b",
            "a b",
            "administrator",
            "Guest",
            "x.",
            "-x",
            "a@b",
        ] {
            assert!(SamAccountName::parse(bad).is_err(), "{bad}");
        }
        assert!(GroupName::<Windows>::parse("Remote Desktop Users").is_ok());
        for bad in ["a;b", "a\"b", "a\nb", " x", "x ", "a$b"] {
            assert!(GroupName::<Windows>::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_grammars() {
        assert!(PostgresRoleName::parse("alice").is_ok());
        assert!(PostgresRoleName::parse("pg_signal_backend").is_err());
        assert!(GroupName::<PostgreSql>::parse("pg_read_all_data").is_ok());
        assert!(MySqlUserName::parse("alice").is_ok());
        assert!(MySqlUserName::parse("mysql.sys").is_err());
        assert!(GroupName::<MySql>::parse("app_readers").is_ok());
        assert!(GroupName::<MySql>::parse("app`readers").is_err());
    }

    #[test]
    fn errors_escape_hostile_input() {
        let err = LinuxUsername::parse("x\n; rm -rf /").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Linux account name \"x\\n; rm -rf /\" may contain only a-z, 0-9, '_' and '-'"
        );
        let parsed: Result<LinuxUsername, _> = serde_json::from_str("\"root\"");
        assert!(parsed.is_err());
    }
}
