//! Grammars of the Rancher identifiers that end up in request paths and bodies. Everything is
//! checked before the first request, so a hostile id never reaches Rancher.

use apono_core::NameError;

/// The id of Rancher's management cluster, which the dedicated user cannot reach.
pub(crate) const LOCAL_CLUSTER: &str = "local";

/// An RFC 1123 label: lower-case letters, digits and `-`, starting and ending with a letter or
/// digit, at most 63 characters. Kubernetes object names in Rancher (`c-m-abc12`, `u-x7k2p`,
/// `token-abcde`) follow it.
fn is_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// An RFC 1123 subdomain (labels joined by `.`), at most 253 characters: role template names.
fn is_subdomain(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.split('.').all(is_label)
}

fn refuse(what: &str, input: &str, reason: &str) -> NameError {
    NameError::new(format!("Rancher {what}"), input, reason)
}

/// A downstream cluster id, such as `c-m-abc12`; never `local`.
pub(crate) fn cluster_id(id: &str) -> Result<&str, NameError> {
    if !is_label(id) {
        return Err(refuse(
            "cluster id",
            id,
            "must be 1-63 characters of a-z, 0-9 and '-'",
        ));
    }
    if id == LOCAL_CLUSTER {
        return Err(refuse(
            "cluster id",
            id,
            "is the management cluster, which this integration does not manage",
        ));
    }
    Ok(id)
}

/// A project id `{cluster}:{project}`, such as `c-m-abc12:p-xyz34`; returns the cluster id.
pub(crate) fn project_id(id: &str) -> Result<&str, NameError> {
    let Some((cluster, project)) = id.split_once(':') else {
        return Err(refuse("project id", id, "must look like c-xxxxx:p-xxxxx"));
    };
    if !is_label(project) {
        return Err(refuse(
            "project id",
            id,
            "must be two names of a-z, 0-9 and '-' joined by ':'",
        ));
    }
    cluster_id(cluster).map_err(|_| {
        refuse(
            "project id",
            id,
            "must be in a downstream cluster (c-xxxxx:p-xxxxx)",
        )
    })
}

/// A role template id, such as `cluster-owner` or `rt-abc12`.
pub(crate) fn role_template_id(id: &str) -> Result<&str, NameError> {
    if is_subdomain(id) {
        Ok(id)
    } else {
        Err(refuse(
            "role template",
            id,
            "must be a name of a-z, 0-9, '-' and '.'",
        ))
    }
}

/// An object name: a user id, a token name, a global role binding id.
pub(crate) fn object_name<'a>(what: &str, id: &'a str) -> Result<&'a str, NameError> {
    if is_label(id) {
        Ok(id)
    } else {
        Err(refuse(
            what,
            id,
            "must be 1-63 characters of a-z, 0-9 and '-'",
        ))
    }
}

/// A namespaced object id `{namespace}:{name}`: a role template binding.
pub(crate) fn namespaced_id<'a>(what: &str, id: &'a str) -> Result<&'a str, NameError> {
    match id.split_once(':') {
        Some((ns, name)) if is_label(ns) && is_label(name) => Ok(id),
        _ => Err(refuse(what, id, "must be two names joined by ':'")),
    }
}

/// A local username the connector creates: starts with a letter, then letters, digits, `_`
/// and `-`, at most 63 characters.
pub(crate) fn username(name: &str) -> Result<&str, NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(refuse(
            "username",
            name,
            "must start with a-z and contain only a-z, 0-9, '_' and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars() {
        assert!(cluster_id("c-m-abc12").is_ok());
        assert_eq!(project_id("c-m-abc12:p-xyz34").unwrap(), "c-m-abc12");
        assert!(role_template_id("cluster-owner").is_ok());
        assert!(role_template_id("custom.role-1").is_ok());
        assert!(namespaced_id("binding", "c-1:crtb-abc").is_ok());
        for bad in [
            "", "local", "C-1", "c-1/../x", "c 1", "c-1?x", "-c", "c-", "c%2f", "c\n", "ｃ",
        ] {
            assert!(cluster_id(bad).is_err(), "{bad:?}");
        }
        for bad in ["c-1", "local:p-1", "c-1:p/1", "c-1:p-1:x", ":p-1", "c-1:"] {
            assert!(project_id(bad).is_err(), "{bad:?}");
        }
        for bad in ["Cluster-Owner", "a/b", "a..b", "", "a b"] {
            assert!(role_template_id(bad).is_err(), "{bad:?}");
        }
        for bad in ["Alice", "1a", "a b", "a;b", "a/b", "_a"] {
            assert!(username(bad).is_err(), "{bad:?}");
        }
    }
}
