//! No injection, by construction: every command is the action's fixed command line plus one
//! base64 line on stdin, whatever the input; hostile names are refused before anything is sent.

mod common;

use std::collections::BTreeMap;

use apono_core::secrecy::{ExposeSecret, SecretString};
use apono_core::{ErrorKind, GrantId, GrantSpec, GrantState, Grantee, Provisioner, Resource};
use apono_provision_winrm::groups;
use apono_provision_winrm::script::{self, ScriptKind};
use apono_provision_winrm::{WindowsConfig, WindowsTarget, WinrmProvisioner};
use apono_testkit::fakes::winrm::FakeWinrmTls;
use data_encoding::BASE64;
use proptest::prelude::*;

fn provisioner() -> WinrmProvisioner {
    let mut config = WindowsConfig::new("rdp1.corp.example");
    config.account_naming = apono_core::AccountNaming::new().with_home_domain("corp.example");
    WinrmProvisioner::new("windows", WindowsTarget::Rdp, config).unwrap()
}

fn spec(identity: &str, permission: &str) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new("g-1").unwrap(),
        grantee: Grantee {
            id: identity.into(),
            email: identity.into(),
            display_name: String::new(),
            groups: vec![],
        },
        resource: Resource {
            integration: "windows".into(),
            resource_type: "rdp-server".into(),
            id: "rdp1.corp.example".into(),
            name: "rdp1".into(),
            tags: BTreeMap::new(),
        },
        permission: permission.into(),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        custom_parameters: BTreeMap::new(),
    }
}

/// The command line every grant uses, built independently of the provisioner.
fn fixed_grant_arguments() -> &'static [String] {
    static ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ARGS.get_or_init(|| {
        let mut args: Vec<String> = script::FIXED_ARGUMENTS
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        args.push(script::encode_script(script::GRANT));
        args
    })
}

/// Strings built to look like trouble: PowerShell and cmd metacharacters, quotes, control
/// characters, Unicode look-alikes, plus arbitrary text.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        ";",
        "$(",
        ")",
        "`",
        "'",
        "\"",
        "\n",
        "\r",
        "\0",
        "-",
        "|",
        "&",
        "<",
        ">",
        "%",
        "@",
        "{",
        "}",
        "#",
        "\u{2019}",
        "\u{201c}",
        "\u{ff1b}",
        "\u{2013}",
        "\u{0430}",
        " ",
        "Remote Desktop Users",
        "Administrator",
        "alice",
        "x",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat()),
        any::<String>(),
        "[A-Za-z ._-]{1,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_command_is_the_fixed_script_plus_a_base64_payload(
        identity in hostile_text(),
        permission in hostile_text(),
        password in any::<String>(),
    ) {
        let p = provisioner();
        let password = SecretString::from(password);
        match p.grant_command(&spec(&identity, &permission), &password) {
            // Refused before anything is built: only name errors.
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
            Ok(command) => {
                prop_assert_eq!(command.program, "powershell.exe");
                prop_assert_eq!(command.arguments.as_slice(), fixed_grant_arguments());
                let line = command.stdin.strip_suffix("\r\n").expect("one CRLF-terminated line");
                prop_assert!(line.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
                let json: serde_json::Value =
                    serde_json::from_slice(&BASE64.decode(line.as_bytes()).unwrap()).unwrap();
                // The payload carries exactly the validated data, unchanged.
                let user = json["user"].as_str().unwrap();
                prop_assert!(apono_provision_winrm::SamAccountName::parse(user).is_ok());
                let group = json["group"].as_str().unwrap();
                prop_assert!(group == "Remote Desktop Users" || group == permission);
                // A well-known group travels with its SID as well, taken from the fixed table.
                let expected_sid = groups::by_name(WindowsTarget::Rdp, group)
                    .and_then(|g| g.builtin_sid())
                    .unwrap_or_default();
                prop_assert_eq!(json["groupSid"].as_str().unwrap(), expected_sid.as_str());
                prop_assert_eq!(json["groupRid"].as_u64(), Some(0));
                prop_assert_eq!(json["password"].as_str().unwrap(), password.expose_secret());
                prop_assert_eq!(json.as_object().unwrap().len(), 8);
            }
        }
    }
}

#[test]
fn every_action_has_one_distinct_fixed_script() {
    let texts: std::collections::BTreeSet<_> = ScriptKind::ALL.iter().map(|k| k.text()).collect();
    assert_eq!(texts.len(), ScriptKind::ALL.len());
    for kind in ScriptKind::ALL {
        // The payload only ever enters through the prelude's stdin decoding.
        assert!(kind.text().contains("[string](@($input) | Where-Object"));
        assert!(kind.text().contains("[Console]::In.ReadLine()"));
        assert!(!kind.text().contains("Invoke-Expression") && !kind.text().contains("iex "));
    }
}

/// `&`, `(` and `)` are legitimate in Windows group names (`R&D (EU)`) and harmless here, as
/// names travel base64-encoded; they are accepted, so they are not in this corpus.
const CORPUS: &[&str] = &[
    "a;b",
    "$(calc)",
    "a`b",
    "o'brien",
    "say \"hi\"",
    "line\nbreak",
    "nul\0byte",
    "-Force",
    "Remote\u{00a0}Desktop Users",
    "Remote Desktop Users\u{ff1b}whoami",
    "\u{0410}dministrators\u{037e}",
    "Administrators;whoami",
    "\u{0410}dministrators",
    "Remote Desktop Users\u{2019}",
    "x$y",
    "|pipe",
    "",
    " leading",
    "trailing.",
];

#[tokio::test]
async fn hostile_names_are_refused_before_anything_is_sent() {
    let setup = common::setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    let long = "G".repeat(300);
    let mut corpus: Vec<&str> = CORPUS.to_vec();
    corpus.push(&long);
    for permission in &corpus {
        let grant = setup.grant_for("bob@corp.example", "g-h", permission);
        let err = setup
            .provisioner
            .grant_access(&common::context(), &grant)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{permission:?}: {err}");
    }
    // Account names from a tampered state: refused when decoded.
    for account in
        corpus
            .iter()
            .copied()
            .chain(["Administrator", "krbtgt", "abcdefghijklmnopqrstu"])
    {
        let state = GrantState::from_json(serde_json::json!({
            "account": account, "group": null, "domain": "X"
        }));
        let grant = setup.grant_for("bob@corp.example", "g-h", "Connect");
        let err = setup
            .provisioner
            .revoke_access(&common::context(), &grant, &state)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{account:?}: {err}");
    }
    assert!(
        setup.fake.requests().is_empty(),
        "a hostile name reached the server"
    );

    // Hostile grantee identities never reach the target as such: they become hashed,
    // grammar-checked names (and `Administrator` is never an account the connector uses).
    for identity in corpus
        .iter()
        .copied()
        .chain(["Administrator", "administrator@corp.example"])
    {
        let grant = setup.grant_for(identity, "g-i", "Connect");
        let account = setup.provisioner.account_for(&grant);
        assert!(account.as_str().len() <= 20);
        assert!(
            !account.as_str().eq_ignore_ascii_case("administrator"),
            "{identity:?}"
        );
        assert!(
            account
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{identity:?} -> {account}"
        );
    }
}
