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
//!
//! **The connector writes no policy.** The operator writes four fixed policies once
//! ([`install_policies`], [`GrantPolicy`]): one per permission on the mount, and one for
//! `secret` grants whose rules are templated on the grant's entity alias metadata, one segment
//! per template (`m/data/{{…apono_s2_0}}/{{…apono_s2_1}}`). Every rule is rooted in `m/`. The
//! connector's AppRole ([`connector_policy_hcl`]) can only attach those four to the users it
//! creates, so whoever holds it reaches at most the secrets of `m`. See `docs/vault-policy.md`.

use std::collections::BTreeMap;
use std::fmt;

use crate::client::{OpenBaoClient, check_kv_path, check_mount, check_name};
use crate::error::VaultError;

/// Prefix of every user and entity alias the integration creates; no other user or alias is ever
/// changed or deleted.
pub const NAME_PREFIX: &str = "apono-g-";

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

/// What one grant gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantScope {
    /// A permission on the whole mount (resource type `management`).
    Mount(VaultPermission),
    /// Read access to one secret (resource type `secret`).
    Secret(String),
}

impl GrantScope {
    /// The fixed policy that implements this scope.
    pub fn policy(&self) -> GrantPolicy {
        match self {
            Self::Mount(permission) => GrantPolicy::Mount(*permission),
            Self::Secret(_) => GrantPolicy::Secret,
        }
    }

    /// The alias `custom_metadata` keys the scope needs: for a secret `a/b/c`, the keys
    /// `apono_s3_0`, `apono_s3_1`, `apono_s3_2` holding `a`, `b`, `c`, which the `secret`
    /// policy's depth-3 rules read. Nothing for a mount scope. The path is checked
    /// ([`check_kv_path`]) and may have at most [`MAX_SECRET_DEPTH`] segments.
    pub fn alias_metadata(&self) -> Result<BTreeMap<String, String>, VaultError> {
        let mut metadata = BTreeMap::new();
        if let Self::Secret(path) = self {
            check_kv_path(path)?;
            let segments: Vec<&str> = path.split('/').collect();
            if segments.len() > MAX_SECRET_DEPTH {
                return Err(VaultError::InvalidName {
                    what: "secret path",
                    shown: crate::error::quote(path),
                    reason: "has more than 16 segments, the most a secret grant's policy covers",
                });
            }
            let depth = segments.len();
            for (i, segment) in segments.into_iter().enumerate() {
                metadata.insert(segment_key(depth, i), segment.to_owned());
            }
        }
        Ok(metadata)
    }
}

/// The deepest secret path (in `/`-separated segments) a `secret` grant can name.
///
/// OpenBao refuses `/` in a templated value, so the `secret` policy has one rule per depth with
/// one template per segment; a path deeper than this is refused at grant time.
pub const MAX_SECRET_DEPTH: usize = 16;

/// The alias `custom_metadata` key of segment `index` of a secret path of `depth` segments.
fn segment_key(depth: usize, index: usize) -> String {
    format!("apono_s{depth}_{index}")
}

/// Prefix of the four fixed grant policies' names. The connector can neither write nor delete
/// them (unlike [`NAME_PREFIX`], which names per-grant users).
pub const GRANT_POLICY_PREFIX: &str = "apono-grant-";

/// One of the four fixed ACL policies a grant's token carries. They are written once by the
/// operator ([`install_policies`]), never by the connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantPolicy {
    /// A `management` grant of this permission: the matrix on the whole mount.
    Mount(VaultPermission),
    /// A `secret` grant: read on the one secret the token's alias metadata names.
    Secret,
}

impl GrantPolicy {
    /// The four policies.
    pub const ALL: [Self; 4] = [
        Self::Mount(VaultPermission::Admin),
        Self::Mount(VaultPermission::ReadWrite),
        Self::Mount(VaultPermission::ReadOnly),
        Self::Secret,
    ];

    fn level(self) -> &'static str {
        match self {
            Self::Mount(VaultPermission::Admin) => "admin",
            Self::Mount(VaultPermission::ReadWrite) => "readwrite",
            Self::Mount(VaultPermission::ReadOnly) => "readonly",
            Self::Secret => "secret",
        }
    }

    /// The policy's name for kv-v2 mount `mount`: `apono-grant-<level>-<mount>` with level
    /// `admin`, `readwrite`, `readonly` or `secret`. OpenBao lower-cases policy names, so a
    /// mount with upper-case letters is refused rather than folded onto another mount's name.
    pub fn name(self, mount: &str) -> Result<String, VaultError> {
        check_mount(mount)?;
        let name = format!("{GRANT_POLICY_PREFIX}{}-{mount}", self.level());
        check_name("grant policy name", &name)?;
        Ok(name)
    }

    /// The policy's HCL for kv-v2 mount `mount`, where grantees log in through the userpass
    /// mount whose accessor is `userpass_accessor` (the `secret` policy's templates read that
    /// mount's alias metadata).
    ///
    /// Every rule's path starts with `<mount>/`, so whatever a template expands to, the rule
    /// stays inside the mount: OpenBao matches ACL paths literally, and refuses a template value
    /// holding `/`, `*` or `+` (the token then has no capability at all).
    pub fn hcl(self, mount: &str, userpass_accessor: &str) -> Result<String, VaultError> {
        check_mount(mount)?;
        check_name("mount accessor", userpass_accessor)?;
        let mut rules: Vec<(String, Vec<&str>)> = Vec::new();
        match self {
            Self::Secret => {
                for depth in 1..=MAX_SECRET_DEPTH {
                    let path: Vec<String> = (0..depth)
                        .map(|i| {
                            format!(
                                "{{{{identity.entity.aliases.{userpass_accessor}.custom_metadata.{}}}}}",
                                segment_key(depth, i)
                            )
                        })
                        .collect();
                    let path = path.join("/");
                    rules.push((format!("{mount}/data/{path}"), vec!["read"]));
                    rules.push((format!("{mount}/metadata/{path}"), vec!["read"]));
                }
            }
            Self::Mount(permission) => {
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
        let mut hcl = format!(
            "# Apono grant policy ({}) on {mount}; written by the operator, never by the connector.\n",
            self.level()
        );
        for (path, capabilities) in rules.into_iter().filter(|(_, c)| !c.is_empty()) {
            let caps: Vec<String> = capabilities.iter().map(|c| format!("\"{c}\"")).collect();
            hcl.push_str(&format!(
                "path \"{path}\" {{\n  capabilities = [{}]\n}}\n",
                caps.join(", ")
            ));
        }
        Ok(hcl)
    }
}

/// The connector's own AppRole policy for an `apono-vault` integration on kv-v2 mount `mount`,
/// with grantees on the userpass mount `userpass_mount` whose accessor is `userpass_accessor`.
///
/// It bounds what the holder of the AppRole can do to what grants need (see
/// `docs/vault-policy.md`):
/// * list secret paths (never read one);
/// * write userpass users named `apono-g-*`, whose `token_policies` can only be one of the four
///   fixed [`GrantPolicy`] names (`allowed_parameters`; any other parameter is refused);
/// * revoke the tokens of those users' logins;
/// * create or update entity aliases named `apono-g-*` on that userpass mount, with
///   `custom_metadata` only: without `canonical_id`, OpenBao gives each alias a fresh entity,
///   so a login can never be attached to an existing entity and its identity policies;
/// * look an entity up by such an alias, and delete an entity by id (revoke's cleanup);
/// * read `sys/auth` (which accessor the userpass mount has).
///
/// Nothing on `sys/policies`, `sys/mounts`, `auth/token/create*`, other auth mounts or other
/// secrets engines: whatever the holder writes, a token it can obtain carries at most the fixed
/// grant policies, which are all rooted in `<mount>/`.
pub fn connector_policy_hcl(
    mount: &str,
    userpass_mount: &str,
    userpass_accessor: &str,
) -> Result<String, VaultError> {
    check_mount(mount)?;
    check_mount(userpass_mount)?;
    check_name("mount accessor", userpass_accessor)?;
    let allowed: Vec<String> = GrantPolicy::ALL
        .into_iter()
        .map(|p| p.name(mount).map(|n| format!("\"{n}\"")))
        .collect::<Result<_, _>>()?;
    Ok(format!(
        r#"# The Apono connector's AppRole policy. It writes no ACL policy: grants use the fixed
# apono-grant-*-{mount} policies, the only ones it can attach.
path "{mount}/metadata" {{
  capabilities = ["list"]
}}
path "{mount}/metadata/*" {{
  capabilities = ["list"]
}}
path "auth/{userpass_mount}/users" {{
  capabilities = ["list"]
}}
path "auth/{userpass_mount}/users/{prefix}*" {{
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {{
    "password" = []
    "token_policies" = [{allowed}]
    "token_ttl" = []
    "token_max_ttl" = []
    "token_explicit_max_ttl" = []
  }}
}}
path "sys/leases/revoke-prefix/auth/{userpass_mount}/login/{prefix}*" {{
  capabilities = ["update", "sudo"]
}}
# No canonical_id: OpenBao gives the alias a fresh entity, never an existing one.
path "identity/entity-alias" {{
  capabilities = ["create", "update"]
  allowed_parameters = {{
    "name" = ["{prefix}*"]
    "mount_accessor" = ["{userpass_accessor}"]
    "custom_metadata" = []
  }}
}}
path "identity/lookup/entity" {{
  capabilities = ["update"]
  allowed_parameters = {{
    "alias_name" = ["{prefix}*"]
    "alias_mount_accessor" = ["{userpass_accessor}"]
  }}
}}
# Revoke deletes the grant's entity (and with it its alias).
path "identity/entity/id/*" {{
  capabilities = ["delete"]
}}
# The userpass mount's accessor.
path "sys/auth" {{
  capabilities = ["read"]
}}
"#,
        prefix = NAME_PREFIX,
        allowed = allowed.join(", "),
    ))
}

/// The four fixed grant policies of kv-v2 mount `mount` as `(name, HCL)` pairs, for an installer
/// that writes them with its own tool (`bao policy write <name> <file>`); grantees log in
/// through the userpass mount whose accessor is `userpass_accessor`.
pub fn grant_policies(
    mount: &str,
    userpass_accessor: &str,
) -> Result<Vec<(String, String)>, VaultError> {
    GrantPolicy::ALL
        .into_iter()
        .map(|p| Ok((p.name(mount)?, p.hcl(mount, userpass_accessor)?)))
        .collect()
}

/// Writes what an `apono-vault` integration needs into OpenBao, with `admin`'s token (an
/// operator's or installer's, never the connector's): the four fixed grant policies of `mount`
/// and the connector's AppRole policy under the name `connector_policy`. Reads the accessor of
/// `userpass_mount` first. Idempotent; run it again after re-enabling the userpass mount (its
/// accessor changes). Attaching `connector_policy` to the AppRole role stays the operator's.
///
/// ```no_run
/// use apono_vault_client::{ClientSettings, VaultError, policy::install_policies};
/// use secrecy::SecretString;
///
/// # async fn demo(operator_token: SecretString) -> Result<(), VaultError> {
/// let admin = ClientSettings::new("https://bao.internal:8200")
///     .connect()?
///     .client_with_token(operator_token);
/// install_policies(&admin, "apono-store", "userpass", "apono-connector").await?;
/// // Then, once: bao write auth/approle/role/apono-connector token_policies=apono-connector
/// # Ok(())
/// # }
/// ```
pub async fn install_policies(
    admin: &OpenBaoClient,
    mount: &str,
    userpass_mount: &str,
    connector_policy: &str,
) -> Result<(), VaultError> {
    let accessor = admin.auth_mount_accessor(userpass_mount).await?;
    for (name, hcl) in grant_policies(mount, &accessor)? {
        admin.policy_write(&name, &hcl).await?;
    }
    admin
        .policy_write(
            connector_policy,
            &connector_policy_hcl(mount, userpass_mount, &accessor)?,
        )
        .await
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
        let hcl = |p: GrantPolicy| p.hcl("kv", "auth_userpass_1a2b").unwrap();
        let ro = hcl(GrantPolicy::Mount(VaultPermission::ReadOnly));
        assert!(
            ro.contains("path \"kv/data/*\" {\n  capabilities = [\"read\"]"),
            "{ro}"
        );
        assert!(
            !ro.contains("\"create\"") && !ro.contains("\"update\"") && !ro.contains("\"delete\"")
        );
        let rw = hcl(GrantPolicy::Mount(VaultPermission::ReadWrite));
        assert!(
            rw.contains("\"create\", \"read\", \"update\", \"patch\""),
            "{rw}"
        );
        assert!(!rw.contains("\"delete\""), "{rw}");
        let admin = hcl(GrantPolicy::Mount(VaultPermission::Admin));
        assert!(admin.contains("kv/destroy/*"), "{admin}");
        assert!(GrantPolicy::Secret.hcl("k v", "auth_userpass_1").is_err());
        assert!(GrantPolicy::Secret.hcl("kv", "auth\"}").is_err());
    }

    #[test]
    fn every_rule_is_rooted_in_the_mount() {
        for policy in GrantPolicy::ALL {
            let hcl = policy.hcl("apono-store", "auth_userpass_1a2b").unwrap();
            let paths: Vec<&str> = hcl
                .lines()
                .filter_map(|l| l.strip_prefix("path \""))
                .collect();
            assert!(!paths.is_empty());
            for path in paths {
                assert!(path.starts_with("apono-store/"), "{policy:?}: {path}");
            }
        }
        let connector =
            connector_policy_hcl("apono-store", "userpass", "auth_userpass_1a2b").unwrap();
        assert!(!connector.contains("sys/policies") && !connector.contains("sys/policy/"));
        assert!(!connector.contains("auth/token"));
        assert!(!connector.contains("\"canonical_id\" ="));
        assert!(connector.contains(
            "\"token_policies\" = [\"apono-grant-admin-apono-store\", \"apono-grant-readwrite-apono-store\", \
             \"apono-grant-readonly-apono-store\", \"apono-grant-secret-apono-store\"]"
        ));
    }

    #[test]
    fn secret_rules_template_one_segment_each() {
        let hcl = GrantPolicy::Secret.hcl("kv", "auth_userpass_1a2b").unwrap();
        let key = |d, i| {
            format!(
                "{{{{identity.entity.aliases.auth_userpass_1a2b.custom_metadata.apono_s{d}_{i}}}}}"
            )
        };
        assert!(
            hcl.contains(&format!("path \"kv/data/{}\"", key(1, 0))),
            "{hcl}"
        );
        assert!(hcl.contains(&format!("path \"kv/metadata/{}/{}\"", key(2, 0), key(2, 1))));
        assert_eq!(hcl.matches("path \"").count(), 2 * MAX_SECRET_DEPTH);
        assert!(!hcl.contains('*') && !hcl.contains('+'));

        let scope = GrantScope::Secret("team/db".into());
        assert_eq!(scope.policy(), GrantPolicy::Secret);
        let meta = scope.alias_metadata().unwrap();
        assert_eq!(
            meta.into_iter().collect::<Vec<_>>(),
            [
                ("apono_s2_0".to_owned(), "team".to_owned()),
                ("apono_s2_1".to_owned(), "db".to_owned())
            ]
        );
        let deepest = vec!["a"; MAX_SECRET_DEPTH].join("/");
        assert!(GrantScope::Secret(deepest.clone()).alias_metadata().is_ok());
        let too_deep = format!("{deepest}/a");
        let err = GrantScope::Secret(too_deep).alias_metadata().unwrap_err();
        assert!(
            err.to_string().contains(&MAX_SECRET_DEPTH.to_string()),
            "{err}"
        );
        for bad in ["a/../b", "*", "a/+", "a\"}", ".."] {
            assert!(
                GrantScope::Secret(bad.into()).alias_metadata().is_err(),
                "{bad}"
            );
        }
        assert!(
            GrantScope::Mount(VaultPermission::Admin)
                .alias_metadata()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn names_are_fixed_per_mount() {
        let names: Vec<String> = GrantPolicy::ALL
            .into_iter()
            .map(|p| p.name("apono-store").unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "apono-grant-admin-apono-store",
                "apono-grant-readwrite-apono-store",
                "apono-grant-readonly-apono-store",
                "apono-grant-secret-apono-store"
            ]
        );
        // Outside the connector's `apono-g-*` names.
        assert!(names.iter().all(|n| !n.starts_with(NAME_PREFIX)));
        assert!(GrantPolicy::Secret.name("Store").is_err());
    }
}
