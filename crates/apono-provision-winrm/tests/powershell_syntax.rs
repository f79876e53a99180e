//! Every PowerShell script the crate can send parses as PowerShell: tree-sitter-powershell
//! (Python, from the project venv) finds no syntax error, no command we did not mean to call
//! and no parameter a cmdlet lacks (`tests/python/powershell_syntax.py`).
//!
//! This is the only check of the script text itself that runs here: the scripts' effects are
//! modelled by `apono-testkit`'s `fakes::winrm`, and nothing here runs them on Windows.

use apono_core::secrecy::SecretString;
use apono_provision_winrm::script::{self, ScriptKind};
use apono_provision_winrm::{WindowsConfig, WindowsTarget, WinrmProvisioner};
use data_encoding::BASE64;
use serde_json::{Map, Value, json};

/// The script a command carries, decoded from its `-EncodedCommand` argument exactly as
/// powershell.exe decodes it (base64 of UTF-16LE).
fn sent_script(command: &script::RemoteCommand) -> String {
    let encoded = command.arguments.last().expect("the encoded script");
    let bytes = BASE64.decode(encoded.as_bytes()).expect("base64");
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).expect("UTF-16LE")
}

/// Every script, as sent: one command per action and target, plus a real grant command.
fn every_script() -> Map<String, Value> {
    let mut scripts = Map::new();
    for kind in ScriptKind::ALL {
        for mode in ["local", "domain"] {
            let command = script::command(kind, &json!({ "mode": mode }));
            let text = sent_script(&command);
            assert_eq!(
                text,
                kind.text(),
                "the command carries the script unchanged"
            );
            scripts.insert(format!("{}-{mode}", kind.name()), Value::from(text));
        }
    }
    for target in [WindowsTarget::Rdp, WindowsTarget::DomainController] {
        let provisioner =
            WinrmProvisioner::new("windows", target, WindowsConfig::new("host.example")).unwrap();
        let grant = apono_core::GrantSpec {
            grant_id: apono_core::GrantId::new("g-1").unwrap(),
            grantee: apono_core::Grantee {
                id: "alice@corp.example".into(),
                email: "alice@corp.example".into(),
                display_name: String::new(),
                groups: vec![],
            },
            resource: apono_core::Resource {
                integration: "windows".into(),
                resource_type: target.resource_type().into(),
                id: "host.example".into(),
                name: "host".into(),
                tags: Default::default(),
            },
            permission: "Connect".into(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            custom_parameters: Default::default(),
        };
        let command = provisioner
            .grant_command(&grant, &SecretString::from("pw"))
            .unwrap();
        scripts.insert(
            format!("grant-command-{}", target.integration_type()),
            Value::from(sent_script(&command)),
        );
    }
    scripts
}

fn check(scripts: Map<String, Value>) -> (bool, String) {
    // On stdin: the scripts are too large for one command-line argument.
    let checker =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/powershell_syntax.py");
    let input = json!({ "scripts": scripts }).to_string();
    let output = apono_testkit::python::run_script(&checker, &[], &[], Some(input.as_bytes()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "the checker itself failed ({}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let ok = output.status.success() && stdout.lines().any(|l| l.trim() == "ok");
    (ok, stdout)
}

#[test]
fn every_script_parses_and_calls_only_known_commands() {
    let scripts = every_script();
    assert_eq!(scripts.len(), ScriptKind::ALL.len() * 2 + 2);
    let (ok, output) = check(scripts);
    assert!(ok, "tree-sitter-powershell found problems:\n{output}");
}

/// The checker can fail: each broken script is reported with its problem.
#[test]
fn the_checker_reports_broken_scripts() {
    let prelude = ScriptKind::Status.text();
    let cases = [
        (
            "unclosed-brace",
            format!("{prelude}if ($x) {{ Write-Result 1\n"),
            "syntax error",
        ),
        (
            "bad-condition",
            format!("{prelude}if ($x {{ }}\n"),
            "syntax error",
        ),
        (
            "unterminated-string",
            format!("{prelude}$s = 'abc\n"),
            "syntax error",
        ),
        (
            "typo",
            format!("{prelude}Get-LocalGrop -Name x\n"),
            "unknown command 'Get-LocalGrop'",
        ),
        (
            "native",
            format!("{prelude}quser.exe\n"),
            "unknown command 'quser.exe'",
        ),
        (
            "parameter",
            format!("{prelude}Get-LocalGroup -Identity x\n"),
            "Get-LocalGroup has no parameter -identity",
        ),
    ];
    for (name, text, expected) in cases {
        let mut scripts = Map::new();
        scripts.insert(name.to_owned(), Value::from(text));
        let (ok, output) = check(scripts);
        assert!(!ok, "{name} passed the checker:\n{output}");
        assert!(
            output
                .lines()
                .any(|l| l.starts_with(&format!("{name}:")) && l.contains(expected)),
            "{name}: expected {expected:?} in\n{output}"
        );
    }
}
