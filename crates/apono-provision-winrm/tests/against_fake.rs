//! The provisioner against `apono_testkit::fakes::winrm`: the conformance suite over both
//! transports, the effect of each action on the fake's directory, the never-touch rule, and
//! transport security (HTTPS verification, plain-HTTP Basic refused).

mod common;

use apono_core::conformance::check_provisioner;
use apono_core::{ErrorKind, GrantState, IntegrationStatus, Provisioner};
use apono_provision_winrm::{WindowsTarget, WinrmProvisioner};
use apono_testkit::fakes::winrm::FakeWinrmTls;
use common::{Setup, context, setup};

const MARKER: &str = "Managed by the Apono connector; do not edit";

#[tokio::test]
async fn conformance_rdp_over_http_with_winrm_rs() {
    let setup = setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    let report = check_provisioner(&setup).await.expect("conformance");
    assert!(report.not_applicable.is_empty(), "{report}");
    assert_eq!(setup.fake.open_shells(), 0, "every shell was deleted");
}

#[tokio::test]
async fn conformance_domain_controller_over_https_with_pinned_ca() {
    let setup = setup(WindowsTarget::DomainController, FakeWinrmTls::TestCa);
    let report = check_provisioner(&setup).await.expect("conformance");
    assert!(report.not_applicable.is_empty(), "{report}");
    assert_eq!(setup.fake.open_shells(), 0, "every shell was deleted");
}

#[tokio::test]
async fn status_and_discovery_report_host_groups_and_rights() {
    let setup = setup(WindowsTarget::Rdp, FakeWinrmTls::TestCa);
    let status = setup.provisioner.get_status(&context()).await.unwrap();
    assert_eq!(status.status, IntegrationStatus::Active, "{status:?}");
    let inventory = setup.provisioner.list_resources(&context()).await.unwrap();
    assert_eq!(inventory.resources.len(), 1);
    let resource = &inventory.resources[0];
    assert_eq!(
        (resource.resource_type.as_str(), resource.id.as_str()),
        ("rdp-server", "localhost")
    );
    let permissions: Vec<_> = inventory
        .permissions
        .iter()
        .map(|p| p.permission.as_str())
        .collect();
    for expected in [
        "Connect",
        "Remote Desktop Users",
        "Helpdesk",
        "Administrators",
    ] {
        assert!(permissions.contains(&expected), "{permissions:?}");
    }

    let dc = common::setup(WindowsTarget::DomainController, FakeWinrmTls::None);
    let inventory = dc.provisioner.list_resources(&context()).await.unwrap();
    assert_eq!(inventory.resources[0].resource_type.as_str(), "domain");
    assert_eq!(inventory.resources[0].id, "corp.example");
    assert_eq!(inventory.resources[0].name, "CORP");

    // A non-administrator: reachable, but the rights check fails.
    dc.fake.add_admin("helpdesk", "H3lp!desk-pass", false);
    let ctx = apono_core::ActionContext::new(
        apono_core::SecretValue::new()
            .with("username", "helpdesk")
            .with("password", "H3lp!desk-pass"),
    );
    let status = dc.provisioner.get_status(&ctx).await.unwrap();
    assert_eq!(status.status, IntegrationStatus::Warning, "{status:?}");

    // Wrong admin password: not reachable with these credentials.
    let ctx = apono_core::ActionContext::new(
        apono_core::SecretValue::new()
            .with("username", "apono")
            .with("password", "wrong"),
    );
    let status = dc.provisioner.get_status(&ctx).await.unwrap();
    assert_eq!(status.status, IntegrationStatus::Error, "{status:?}");
}

#[tokio::test]
async fn grant_creates_a_marked_expiring_account_and_hands_out_rdp_details() {
    let setup = setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    let spec = setup.grant_for("jane.doe@corp.example", "g-1", "Helpdesk");
    let granted = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap();
    let user = Setup::user_of(&granted);
    let password = Setup::password_of(&granted);
    assert_eq!(user, "jane_doe");
    let account = setup.fake.account(&user).expect("account created");
    assert_eq!(account.description, MARKER);
    assert!(account.enabled);
    assert_eq!(
        account.expires.as_deref(),
        Some(
            spec.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str()
        ),
        "account expiry is the grant's end"
    );
    assert!(setup.fake.is_member(&user, "Helpdesk"));
    assert!(!setup.fake.is_member(&user, "Remote Desktop Users"));
    assert!(setup.fake.can_log_on(&user, &password));
    assert!(password.len() >= 24, "strong password");

    let access = &granted.access;
    assert_eq!(access.json["host"], "localhost");
    assert_eq!(access.json["rdp_port"], 3389);
    assert_eq!(access.json["username"], "WIN-RDP01\\jane_doe");
    assert_eq!(
        access.cli.as_deref(),
        Some("xfreerdp /v:localhost:3389 /u:jane_doe /d:WIN-RDP01")
    );
    let rdp = access.json["rdp_file"].as_str().unwrap();
    assert!(rdp.contains("full address:s:localhost:3389"), "{rdp}");
    assert!(rdp.contains("username:s:WIN-RDP01\\jane_doe"), "{rdp}");
    assert!(access.credentials[0].one_time);
    // The password is in no non-secret part of the details, the state, or any command line.
    let shown = format!(
        "{} {:?} {}",
        serde_json::to_string(access).unwrap(),
        access,
        granted.state.as_json()
    );
    assert!(!shown.contains(&password));
    for command in setup.fake.commands() {
        assert!(!command.arguments.concat().contains(&password));
    }

    // Granting again converges: one account, a fresh password, the old one void.
    let again = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap();
    assert!(setup.fake.can_log_on(&user, &Setup::password_of(&again)));
    assert!(!setup.fake.can_log_on(&user, &password));
}

#[tokio::test]
async fn revoke_disables_scrambles_and_logs_off_and_is_idempotent() {
    let setup = setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    let spec = setup.grant_for("sam@corp.example", "g-2", "Connect");
    let granted = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap();
    let user = Setup::user_of(&granted);
    setup.fake.open_session(&user);
    setup
        .provisioner
        .revoke_access(&context(), &spec, &granted.state)
        .await
        .unwrap();
    let account = setup.fake.account(&user).expect("kept until cleanup");
    assert!(!account.enabled);
    assert_eq!(account.sessions, 0, "sessions logged off");
    assert_ne!(account.password, Setup::password_of(&granted));
    assert!(!setup.fake.is_member(&user, "Remote Desktop Users"));
    let after = setup.fake.snapshot();
    setup
        .provisioner
        .revoke_access(&context(), &spec, &granted.state)
        .await
        .unwrap();
    assert_eq!(
        setup.fake.snapshot(),
        after,
        "revoking again changes nothing"
    );

    // Re-granting re-enables the marked account.
    let back = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap();
    assert!(setup.fake.can_log_on(&user, &Setup::password_of(&back)));
}

#[tokio::test]
async fn rotation_replaces_the_password_and_cleanup_respects_live_grants() {
    let setup = setup(WindowsTarget::DomainController, FakeWinrmTls::None);
    let first = setup.grant_for("ops@corp.example", "g-3", "Helpdesk");
    let second = setup.grant_for("ops@corp.example", "g-4", "Connect");
    let a = setup
        .provisioner
        .grant_access(&context(), &first)
        .await
        .unwrap();
    let b = setup
        .provisioner
        .grant_access(&context(), &second)
        .await
        .unwrap();
    let user = Setup::user_of(&b);
    assert_eq!(b.access.json["username"], "CORP\\ops");

    let rotated = setup
        .provisioner
        .reset_credentials(&context(), &second, &b.state)
        .await
        .unwrap();
    assert!(setup.fake.can_log_on(&user, &Setup::password_of(&rotated)));
    assert!(!setup.fake.can_log_on(&user, &Setup::password_of(&b)));

    // Revoking the first grant keeps the account for the second but drops its group.
    setup
        .provisioner
        .revoke_access(&context(), &first, &a.state)
        .await
        .unwrap();
    assert!(!setup.fake.is_member(&user, "Helpdesk"));
    assert!(setup.fake.can_log_on(&user, &Setup::password_of(&rotated)));
    // Cleanup while the second grant is live deletes nothing.
    setup
        .provisioner
        .delete_credentials(&context(), &first, &a.state)
        .await
        .unwrap();
    assert!(setup.fake.account(&user).is_some());

    setup
        .provisioner
        .revoke_access(&context(), &second, &rotated.state)
        .await
        .unwrap();
    setup
        .provisioner
        .delete_credentials(&context(), &second, &rotated.state)
        .await
        .unwrap();
    assert!(setup.fake.account(&user).is_none(), "cleanup deleted it");
    // Rotation of a revoked and deleted grant is refused, not silently successful.
    let err = setup
        .provisioner
        .reset_credentials(&context(), &second, &rotated.state)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn accounts_without_the_marker_are_never_touched() {
    let setup = setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    setup.fake.add_account(
        "alice",
        "Alice, finance",
        "Al1ce!own",
        &["Remote Desktop Users"],
    );
    let before = setup.fake.snapshot();
    let spec = setup.grant_for("alice@corp.example", "g-5", "Helpdesk");
    let err = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let forged = GrantState::from_json(serde_json::json!({
        "account": "alice", "group": "Remote Desktop Users", "domain": "WIN-RDP01"
    }));
    let err = setup
        .provisioner
        .revoke_access(&context(), &spec, &forged)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    for result in [
        setup
            .provisioner
            .delete_credentials(&context(), &spec, &forged)
            .await
            .map(drop),
        setup
            .provisioner
            .reset_credentials(&context(), &spec, &forged)
            .await
            .map(drop),
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict);
    }
    assert_eq!(setup.fake.snapshot(), before, "alice untouched");
    assert!(setup.fake.can_log_on("alice", "Al1ce!own"));
}

/// Runs `get-status` and `grant-access` with `config` and expects both to fail before any
/// HTTP request reaches the fake.
async fn refused_before_sending(
    fake: &apono_testkit::fakes::winrm::FakeWinrm,
    config: apono_provision_winrm::WindowsConfig,
    expected: ErrorKind,
) -> String {
    let p = WinrmProvisioner::new("windows", WindowsTarget::Rdp, config).unwrap();
    let status = p.get_status(&context()).await.unwrap();
    assert_eq!(status.status, IntegrationStatus::Error, "{status:?}");
    let s = common::setup(WindowsTarget::Rdp, FakeWinrmTls::None);
    let spec = s.grant_for("bob@corp.example", "g-6", "Connect");
    let err = p.grant_access(&context(), &spec).await.unwrap_err();
    assert_eq!(err.kind(), expected, "{err:#?}");
    assert!(
        fake.requests().is_empty(),
        "nothing may reach the server: {:?}",
        fake.requests()
    );
    format!("{err} / {}", status.checks[0].message)
}

#[tokio::test]
async fn basic_over_plain_http_is_refused_without_the_opt_in() {
    let fake = common::start_fake(WindowsTarget::Rdp, FakeWinrmTls::None);
    let mut config = common::config_for(&fake, false);
    config.allow_unencrypted_basic = false;
    let shown = refused_before_sending(&fake, config, ErrorKind::InvalidInput).await;
    assert!(shown.contains("allow_unencrypted_basic"), "{shown}");
}

#[tokio::test]
async fn https_refuses_untrusted_self_signed_and_misnamed_certificates() {
    // A certificate from a CA the connector was not told to trust (winrm-rs, public roots).
    let fake = common::start_fake(WindowsTarget::Rdp, FakeWinrmTls::TestCa);
    let mut config = common::config_for(&fake, true);
    config.ca_certificate = None;
    refused_before_sending(&fake, config, ErrorKind::Internal).await;

    // The same, with another CA pinned.
    let other = common::start_fake(WindowsTarget::Rdp, FakeWinrmTls::TestCa);
    let mut config = common::config_for(&fake, true);
    config.ca_certificate = other.ca_pem().map(str::to_owned);
    refused_before_sending(&fake, config, ErrorKind::Internal).await;

    // A self-signed server certificate, even when it is itself configured as the CA.
    let fake = common::start_fake(WindowsTarget::Rdp, FakeWinrmTls::SelfSigned);
    let config = common::config_for(&fake, true);
    refused_before_sending(&fake, config, ErrorKind::Internal).await;

    // A certificate from the trusted CA, but for another host name.
    let fake = common::start_fake(WindowsTarget::Rdp, FakeWinrmTls::WrongName);
    let config = common::config_for(&fake, true);
    refused_before_sending(&fake, config, ErrorKind::Internal).await;
}
