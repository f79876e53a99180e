//! What a grant is on ([`Scope`]) and what it gives there ([`Level`]), parsed from a grant's
//! resource and permission; and resource ids.

use apono_core::{Permission, ProvisionError, Resource};

use crate::{permission, resource_type};

/// The object a grant is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole server.
    Cluster,
    /// One database.
    Database(String),
    /// One schema of a database (PostgreSQL, SQL Server).
    Schema {
        /// The database.
        database: String,
        /// The schema.
        schema: String,
    },
    /// One table (or view). `schema` is `None` on MySQL, where databases are schemas.
    Table {
        /// The database.
        database: String,
        /// The schema, where the engine has them.
        schema: Option<String>,
        /// The table.
        table: String,
    },
}

impl Scope {
    /// Parses a grant's resource; `with_schemas` says whether the engine has schemas.
    pub fn from_resource(resource: &Resource, with_schemas: bool) -> Result<Self, ProvisionError> {
        let parts = decode_id(&resource.id)
            .ok_or_else(|| ProvisionError::InvalidGrant("malformed resource id".into()))?;
        let bad = || {
            ProvisionError::InvalidGrant(format!(
                "resource id does not fit resource type {:?}",
                resource.resource_type.as_str()
            ))
        };
        let mut parts = parts.into_iter();
        let mut next = || parts.next().ok_or_else(bad);
        let scope = match resource.resource_type.as_str() {
            resource_type::CLUSTER if resource.id == "cluster" => return Ok(Self::Cluster),
            resource_type::CLUSTER => return Err(bad()),
            resource_type::DATABASE => Self::Database(next()?),
            resource_type::SCHEMA if with_schemas => Self::Schema {
                database: next()?,
                schema: next()?,
            },
            resource_type::TABLE if with_schemas => Self::Table {
                database: next()?,
                schema: Some(next()?),
                table: next()?,
            },
            resource_type::TABLE => Self::Table {
                database: next()?,
                schema: None,
                table: next()?,
            },
            other => {
                return Err(ProvisionError::InvalidGrant(format!(
                    "unknown resource type {other:?}"
                )));
            }
        };
        if next().is_ok() {
            return Err(bad());
        }
        Ok(scope)
    }

    /// The database, unless the scope is the whole server.
    pub fn database(&self) -> Option<&str> {
        match self {
            Self::Cluster => None,
            Self::Database(d)
            | Self::Schema { database: d, .. }
            | Self::Table { database: d, .. } => Some(d),
        }
    }

    /// The resource type of this scope.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Self::Cluster => resource_type::CLUSTER,
            Self::Database(_) => resource_type::DATABASE,
            Self::Schema { .. } => resource_type::SCHEMA,
            Self::Table { .. } => resource_type::TABLE,
        }
    }

    /// The resource id of this scope.
    pub fn id(&self) -> String {
        match self {
            Self::Cluster => "cluster".to_owned(),
            Self::Database(d) => encode_id(&[d]),
            Self::Schema { database, schema } => encode_id(&[database, schema]),
            Self::Table {
                database,
                schema: Some(schema),
                table,
            } => encode_id(&[database, schema, table]),
            Self::Table {
                database,
                schema: None,
                table,
            } => encode_id(&[database, table]),
        }
    }

    /// A display name: the names joined by `.`.
    pub fn display_name(&self, server: &str) -> String {
        match self {
            Self::Cluster => server.to_owned(),
            Self::Database(d) => d.clone(),
            Self::Schema { database, schema } => format!("{database}.{schema}"),
            Self::Table {
                database,
                schema,
                table,
            } => match schema {
                Some(schema) => format!("{database}.{schema}.{table}"),
                None => format!("{database}.{table}"),
            },
        }
    }
}

/// What a grant gives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// `read-only`.
    ReadOnly,
    /// `read-write`.
    ReadWrite,
    /// `admin`.
    Admin,
    /// One of the integration's listed `roles` (on `cluster` only).
    Role(String),
}

impl Level {
    /// Parses a permission: one of the three levels, or a listed role on the cluster.
    pub fn parse(
        permission: &Permission,
        scope: &Scope,
        roles: &[String],
    ) -> Result<Self, ProvisionError> {
        Ok(match permission.as_str() {
            permission::READ_ONLY => Self::ReadOnly,
            permission::READ_WRITE => Self::ReadWrite,
            permission::ADMIN => Self::Admin,
            role if *scope == Scope::Cluster && roles.iter().any(|r| r == role) => {
                Self::Role(role.to_owned())
            }
            _ => {
                return Err(ProvisionError::InvalidGrant(format!(
                    "permission {:?} is not offered on {}",
                    permission.as_str(),
                    scope.resource_type()
                )));
            }
        })
    }
}

/// Joins names into a resource id: `/` between them, `%` and `/` inside them written `%25`
/// and `%2F`.
pub(crate) fn encode_id(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.replace('%', "%25").replace('/', "%2F"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Splits a resource id back into names; `None` if it is not one [`encode_id`] writes.
pub(crate) fn decode_id(id: &str) -> Option<Vec<String>> {
    id.split('/')
        .map(|part| {
            let mut out = Vec::with_capacity(part.len());
            let bytes = part.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    match bytes.get(i + 1..i + 3) {
                        Some(b"25") => out.push(b'%'),
                        Some(b"2F") => out.push(b'/'),
                        _ => return None,
                    }
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            let name = String::from_utf8(out).ok()?;
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn ids_round_trip(parts in prop::collection::vec("[a-z/%2F5 .é]{1,8}", 1..4)) {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            prop_assert_eq!(decode_id(&encode_id(&refs)), Some(parts.clone()));
        }
    }

    fn resource(kind: &str, id: &str) -> Resource {
        Resource {
            integration: "db".into(),
            resource_type: kind.into(),
            id: id.into(),
            name: id.into(),
            tags: Default::default(),
        }
    }

    #[test]
    fn scopes_and_levels() {
        let table = Scope::from_resource(&resource("table", "app/public/t%2Fx"), true).unwrap();
        assert_eq!(
            table,
            Scope::Table {
                database: "app".into(),
                schema: Some("public".into()),
                table: "t/x".into()
            }
        );
        assert_eq!(table.id(), "app/public/t%2Fx");
        for (kind, id, schemas) in [
            ("table", "app/t", true),
            ("schema", "app/s", false),
            ("database", "a/b", true),
            ("cluster", "x", true),
            ("database", "a%zz", true),
            ("database", "", true),
            ("view", "a", true),
        ] {
            assert!(
                Scope::from_resource(&resource(kind, id), schemas).is_err(),
                "{kind} {id}"
            );
        }
        let roles = ["reporting".to_owned()];
        let cluster = Scope::Cluster;
        assert_eq!(
            Level::parse(&"reporting".into(), &cluster, &roles).unwrap(),
            Level::Role("reporting".into())
        );
        assert!(Level::parse(&"reporting".into(), &table, &roles).is_err());
        assert!(Level::parse(&"superuser".into(), &cluster, &roles).is_err());
    }
}
