//! `[[identity_providers]]`: OpenID Connect providers people sign in with.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigProblem, HumanDuration, User};

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_algorithms() -> Vec<String> {
    vec![
        "RS256".into(),
        "ES256".into(),
        "PS256".into(),
        "EdDSA".into(),
    ]
}
fn default_groups_max_age() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15 * 60))
}
fn default_session_max_age() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(12 * 3600))
}

/// What happens to the grants of someone the identity provider no longer knows or has
/// disabled (found when their session is refreshed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisabledUserGrants {
    /// Their active grants are revoked at once and their pending requests withdrawn.
    #[default]
    Revoke,
    /// Their grants run until they expire; they can no longer act.
    KeepUntilExpiry,
}

/// `[[identity_providers]]`: an OpenID Connect provider (Okta, Entra ID, Google, Keycloak…).
///
/// People who sign in through it are users of the connector with the email and groups the
/// provider's ID token carries, checked again at least every `groups_max_age`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// A short name (`[a-z0-9-]`, 1 to 40 characters) used in URLs and the CLI (`--provider`).
    pub name: String,
    /// What the sign-in button says: "Sign in with {display_name}" (default: the name).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The issuer URL; `{issuer}/.well-known/openid-configuration` is read at first use.
    pub issuer: String,
    /// The client id registered at the provider (the ID token's audience).
    pub client_id: String,
    /// Where the client secret is kept: a secret in one of the secret stores (the same shape
    /// as an integration's `secret_store`) with a field `client_secret`. Read at each use,
    /// never written in this file.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub client_secret: apono_core::SecretStoreRef,
    /// Scopes asked for (`openid` is required; `offline_access` gets a refresh token).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim holding the email.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// The ID-token claim holding the groups (a list of names).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The provider's group names mapped to the names access flows use; a group not listed
    /// keeps its name.
    #[serde(default)]
    pub group_mapping: BTreeMap<String, String>,
    /// Groups (after mapping) whose members are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Email domains allowed to sign in (empty: any). An email outside them is refused.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// ID-token signature algorithms accepted (asymmetric only: HMAC and `none` are refused).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The oldest the groups may be when they matter (a request, an approval, any call):
    /// past it the connector refreshes them with the provider's refresh token, or refuses.
    #[serde(default = "default_groups_max_age")]
    pub groups_max_age: HumanDuration,
    /// The longest a session (the connector's token from a sign-in) lasts, whatever the
    /// provider allows; it also ends when the provider refuses a refresh.
    #[serde(default = "default_session_max_age")]
    pub session_max_age: HumanDuration,
    /// What happens to the grants of someone the provider no longer knows or has disabled.
    #[serde(default)]
    pub disabled_user_grants: DisabledUserGrants,
    /// Static `[[users]]` who are the same person as the provider's user with that email: a
    /// sign-in with such an email is that user (with the provider's groups added). Any other
    /// static user's email is refused through this provider.
    #[serde(default)]
    pub same_person: Vec<String>,
}

impl IdentityProvider {
    /// The name the sign-in button shows.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// Whether `email` may sign in through this provider (its domain is allowed).
    pub(crate) fn domain_allowed(&self, email: &str) -> bool {
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        self.allowed_email_domains.is_empty()
            || self
                .allowed_email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The provider's group names as the names flows use.
    pub(crate) fn map_groups(&self, groups: &[String]) -> Vec<String> {
        let mut out: Vec<String> = groups
            .iter()
            .map(|g| {
                self.group_mapping
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| g.clone())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn is_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks the providers against each other and the static users; every problem is reported.
pub(crate) fn check(providers: &[IdentityProvider], users: &[User]) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String| problems.push(ConfigProblem { key, message });
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let key = format!("identity_providers[{i}]");
        if !is_name(&p.name) {
            problem(
                format!("{key}.name"),
                format!("{:?} is not 1 to 40 of a-z, 0-9 and -", p.name),
            );
        }
        if !names.insert(p.name.clone()) {
            problem(format!("{key}.name"), format!("{} is used twice", p.name));
        }
        match url::Url::parse(&p.issuer) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u)
                if u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => {}
            _ => problem(
                format!("{key}.issuer"),
                format!(
                    "{:?} is not an https:// URL (plain http only on loopback)",
                    p.issuer
                ),
            ),
        }
        if p.client_id.trim().is_empty() {
            problem(format!("{key}.client_id"), "is empty".into());
        }
        if !p.scopes.iter().any(|s| s == "openid") {
            problem(format!("{key}.scopes"), "must include \"openid\"".into());
        }
        for alg in &p.algorithms {
            if super::oidc::algorithm(alg).is_none() {
                problem(
                    format!("{key}.algorithms"),
                    format!(
                        "{alg:?} is not an accepted signature algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA; never HS* or none)"
                    ),
                );
            }
        }
        if p.algorithms.is_empty() {
            problem(format!("{key}.algorithms"), "names no algorithm".into());
        }
        if p.groups_max_age.0.is_zero() {
            problem(
                format!("{key}.groups_max_age"),
                "must be more than 0".into(),
            );
        }
        if p.session_max_age.0.is_zero() {
            problem(
                format!("{key}.session_max_age"),
                "must be more than 0".into(),
            );
        }
        for email in &p.same_person {
            if !users.iter().any(|u| u.email.eq_ignore_ascii_case(email)) {
                problem(
                    format!("{key}.same_person"),
                    format!("{email} is not a configured user"),
                );
            }
        }
        for d in &p.allowed_email_domains {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                problem(
                    format!("{key}.allowed_email_domains"),
                    format!("{d:?} is not a domain such as example.com"),
                );
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &str) -> Result<IdentityProvider, toml::de::Error> {
        toml::from_str(&format!(
            "name = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"apono\"\nclient_secret = {{ apono = {{ parameters = {{ client_secret = \"s\" }} }} }}\n{extra}"
        ))
    }

    #[test]
    fn defaults_mapping_and_domains() {
        let p = provider(
            "group_mapping = { \"okta-sre\" = \"sre\" }\nallowed_email_domains = [\"example.com\"]",
        )
        .unwrap();
        assert_eq!(p.groups_max_age.0.as_secs(), 900);
        assert_eq!(p.disabled_user_grants, DisabledUserGrants::Revoke);
        assert_eq!(
            p.map_groups(&["okta-sre".into(), "dev".into(), "okta-sre".into()]),
            vec!["dev".to_owned(), "sre".to_owned()]
        );
        assert!(p.domain_allowed("a@EXAMPLE.com"));
        assert!(!p.domain_allowed("a@example.com.evil.net"));
        assert!(!p.domain_allowed("no-at-sign"));
        assert!(check(&[p], &[]).is_empty());
    }

    #[test]
    fn bad_providers_are_named() {
        let p = provider(
            "algorithms = [\"HS256\", \"none\"]\nscopes = [\"email\"]\nsame_person = [\"x@y\"]",
        )
        .unwrap();
        let mut bad = p.clone();
        bad.name = "Corp!".into();
        bad.issuer = "http://idp.example.com".into();
        let problems: Vec<String> = check(&[p, bad], &[])
            .iter()
            .map(ToString::to_string)
            .collect();
        let text = problems.join("\n");
        for needle in [
            "identity_providers[0].algorithms: \"HS256\"",
            "identity_providers[0].algorithms: \"none\"",
            "identity_providers[0].scopes",
            "identity_providers[0].same_person: x@y",
            "identity_providers[1].name",
            "identity_providers[1].issuer",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(provider("client_secret_plain = \"s\"").is_err());
    }
}
