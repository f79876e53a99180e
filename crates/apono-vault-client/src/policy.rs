//! Apono Vault permissions and the OpenBao ACL policies that implement them.
//!
//! | permission | list | create | fetch | update | delete |
//! |---|---|---|---|---|---|
//! | `Admin` | yes | yes | yes | yes | yes |
//! | `ReadWrite` | yes | yes | yes | yes | no |
//! | `ReadOnly` | yes | no | yes | no | no |
//!
//! On kv-v2 mount `m`: *list* is `list` on `m/metadata/*`; *fetch* is `read` on `m/data/*` and
//! `m/metadata/*` (versions); *create* is `create` on `m/data/*` (a path that does not exist
//! yet); *update* is `update` and `patch` on `m/data/*` (an existing path); *delete* is
//! `delete` on `m/data/*` and `m/metadata/*` plus `update` on `m/delete/*`, `m/undelete/*` and
//! `m/destroy/*`. A `secret` grant is `read` on that one secret's `data/` and `metadata/` paths.

use std::fmt;

use crate::client::{check_kv_path, check_mount};
use crate::error::VaultError;

/// A vault operation the permission matrix speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VaultOperation {
    /// List secrets.
    List,
    /// Create a secret.
    Create,
    /// Fetch a secret.
    Fetch,
    /// Update a secret.
    Update,
    /// Delete a secret.
    Delete,
}

impl VaultOperation {
    /// Every operation, in the reference's column order.
    pub const ALL: [Self; 5] = [
        Self::List,
        Self::Create,
        Self::Fetch,
        Self::Update,
        Self::Delete,
    ];

    /// The operation's name (`list`, `create`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "create",
            Self::Fetch => "fetch",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for VaultOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission of the `management` resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VaultPermission {
    /// Everything.
    Admin,
    /// Everything but delete.
    ReadWrite,
    /// List and fetch.
    ReadOnly,
}

impl VaultPermission {
    /// Every permission.
    pub const ALL: [Self; 3] = [Self::Admin, Self::ReadWrite, Self::ReadOnly];

    /// The permission's name as Apono spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::ReadWrite => "ReadWrite",
            Self::ReadOnly => "ReadOnly",
        }
    }

    /// Parses Apono's spelling.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Whether the permission allows `operation` (the reference's matrix).
    pub const fn allows(self, operation: VaultOperation) -> bool {
        use VaultOperation::*;
        match self {
            Self::Admin => true,
            Self::ReadWrite => !matches!(operation, Delete),
            Self::ReadOnly => matches!(operation, List | Fetch),
        }
    }
}

impl fmt::Display for VaultPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one grant gives, before it becomes a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantScope {
    /// A permission on the whole mount (resource type `management`).
    Mount(VaultPermission),
    /// Read access to one secret (resource type `secret`).
    Secret(String),
}

/// The HCL of the ACL policy for `scope` on kv-v2 mount `mount`.
///
/// The mount and path are checked first, so nothing can escape the quoted policy paths.
pub fn policy_hcl(mount: &str, scope: &GrantScope) -> Result<String, VaultError> {
    check_mount(mount)?;
    let mut rules: Vec<(String, Vec<&str>)> = Vec::new();
    match scope {
        GrantScope::Secret(path) => {
            check_kv_path(path)?;
            rules.push((format!("{mount}/data/{path}"), vec!["read"]));
            rules.push((format!("{mount}/metadata/{path}"), vec!["read"]));
        }
        GrantScope::Mount(permission) => {
            let allows = |op| permission.allows(op);
            let mut data = Vec::new();
            let mut metadata = Vec::new();
            if allows(VaultOperation::Create) {
                data.push("create");
            }
            if allows(VaultOperation::Fetch) {
                data.push("read");
                metadata.push("read");
            }
            if allows(VaultOperation::Update) {
                data.extend(["update", "patch"]);
            }
            if allows(VaultOperation::Delete) {
                data.push("delete");
                metadata.push("delete");
            }
            if allows(VaultOperation::List) {
                metadata.push("list");
                rules.push((format!("{mount}/metadata"), vec!["list"]));
                rules.push((format!("{mount}/metadata/"), vec!["list"]));
            }
            rules.push((format!("{mount}/data/*"), data));
            rules.push((format!("{mount}/metadata/*"), metadata));
            if allows(VaultOperation::Delete) {
                for sub in ["delete", "undelete", "destroy"] {
                    rules.push((format!("{mount}/{sub}/*"), vec!["update"]));
                }
            }
        }
    }
    let mut hcl =
        String::from("# Written by the Apono connector for one grant; deleted at revoke.\n");
    for (path, capabilities) in rules.into_iter().filter(|(_, c)| !c.is_empty()) {
        let caps: Vec<String> = capabilities.iter().map(|c| format!("\"{c}\"")).collect();
        hcl.push_str(&format!(
            "path \"{path}\" {{\n  capabilities = [{}]\n}}\n",
            caps.join(", ")
        ));
    }
    Ok(hcl)
}

/// The least-privilege policy of the connector's own AppRole for an `apono-vault` integration
/// on kv-v2 mount `mount` and userpass mount `userpass_mount`: discovery (list only, never read),
/// the `apono-g-*` policies, userpass users and identity entities, revoking those users' tokens,
/// and reading which accessor the userpass mount has.
///
/// Two paths cannot be narrowed by name: `identity/entity-alias` (aliases are created by id) and
/// `sys/auth` (read only). The connector never reads or writes a secret.
pub fn connector_policy_hcl(mount: &str, userpass_mount: &str) -> Result<String, VaultError> {
    check_mount(mount)?;
    check_mount(userpass_mount)?;
    Ok(format!(
        r#"# The Apono connector's AppRole policy.
path "{mount}/metadata" {{
  capabilities = ["list"]
}}
path "{mount}/metadata/*" {{
  capabilities = ["list"]
}}
path "sys/policies/acl/{prefix}*" {{
  capabilities = ["create", "read", "update", "delete"]
}}
path "sys/policy/{prefix}*" {{
  capabilities = ["create", "read", "update", "delete"]
}}
path "auth/{userpass_mount}/users" {{
  capabilities = ["list"]
}}
path "auth/{userpass_mount}/users/{prefix}*" {{
  capabilities = ["create", "read", "update", "delete"]
}}
path "sys/leases/revoke-prefix/auth/{userpass_mount}/login/{prefix}*" {{
  capabilities = ["update", "sudo"]
}}
# The per-grant identity entity, so that revoke leaves no entity behind.
path "identity/entity/name/{prefix}*" {{
  capabilities = ["create", "read", "update", "delete"]
}}
path "identity/entity-alias" {{
  capabilities = ["create", "update"]
}}
# The userpass mount's accessor, which the entity's alias names.
path "sys/auth" {{
  capabilities = ["read"]
}}
"#,
        prefix = crate::integration::NAME_PREFIX,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_is_the_reference() {
        let row = |p: VaultPermission| VaultOperation::ALL.map(|op| p.allows(op));
        assert_eq!(row(VaultPermission::Admin), [true; 5]);
        assert_eq!(
            row(VaultPermission::ReadWrite),
            [true, true, true, true, false]
        );
        assert_eq!(
            row(VaultPermission::ReadOnly),
            [true, false, true, false, false]
        );
    }

    #[test]
    fn policies_follow_the_matrix() {
        let ro = policy_hcl("kv", &GrantScope::Mount(VaultPermission::ReadOnly)).unwrap();
        assert!(
            ro.contains("path \"kv/data/*\" {\n  capabilities = [\"read\"]"),
            "{ro}"
        );
        assert!(
            !ro.contains("\"create\"") && !ro.contains("\"update\"") && !ro.contains("\"delete\"")
        );
        let rw = policy_hcl("kv", &GrantScope::Mount(VaultPermission::ReadWrite)).unwrap();
        assert!(
            rw.contains("\"create\", \"read\", \"update\", \"patch\""),
            "{rw}"
        );
        assert!(!rw.contains("\"delete\""), "{rw}");
        let admin = policy_hcl("kv", &GrantScope::Mount(VaultPermission::Admin)).unwrap();
        assert!(admin.contains("kv/destroy/*"), "{admin}");
        let one = policy_hcl("kv", &GrantScope::Secret("a/b".into())).unwrap();
        assert!(
            one.contains("\"kv/data/a/b\"") && !one.contains('*'),
            "{one}"
        );
        assert!(policy_hcl("kv", &GrantScope::Secret("a\"}".into())).is_err());
        assert!(policy_hcl("k v", &GrantScope::Secret("a".into())).is_err());
    }
}
