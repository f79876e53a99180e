//! Slack button presses through [`ControlPlane::slack_interaction`], on SQLite: the API's rules
//! hold (`all_of` progress: the first approver's press is recorded, the second approves), and
//! a press signed with another secret, or too old, is refused. (Slack's signatures are checked
//! against Python's `hmac` through the binary in the repository's `tests/notifications.rs`.)
//! A Slack user mapped to someone signed in through an identity provider acts with the
//! provider's current groups, and not at all once the provider disabled them. A member not in
//! `slack_users` is asked of Slack's Web API (apono-testkit's fake, itself checked by Slack's
//! own SDK) when the channel has a bot token; deactivated members and unconfirmed addresses map
//! to no one.

#[macro_use]
mod support;

use anyhow::Result;
use apono_control::{Config, ControlError, ControlPlane, Store};
use apono_core::RequestStatus;
use apono_notify::signature::slack_signature;
use apono_runtime::ExecutorLimits;
use secrecy::SecretString;
use support::{CORP_PROVIDER, Timed, database, executor, on};

const SECRET: &str = "slack-signing-test";

const CONFIG: &str = r#"
[connector]
master_key = { secret_store = { apono = { parameters = { master_key = "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c" } } } }

[[users]]
email = "alice@example.com"
groups = ["dev"]

[[users]]
email = "bob@example.com"

[[users]]
email = "carol@example.com"

[[integrations]]
name = "boxes"
type = "timed"
secret_store = { apono = { parameters = { k = "v" } } }

[[access_flows]]
name = "two-keys"
trigger = "self_serve"
requestors = { groups = ["dev"] }
approvers = { mode = "all_of", users = ["bob@example.com", "carol@example.com"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"] }]
grant_duration = "1h"

[[notifications]]
name = "slack"
type = "slack"
events = ["request.pending"]
secret_store = { apono = { parameters = { webhook_url = "http://127.0.0.1:9/unused", signing_secret = "slack-signing-test" } } }
slack_users = { U0BOB = "bob@example.com", U0CAROL = "carol@example.com" }
"#;

/// The form body of a press of Approve on request `id` by Slack user `user`.
fn press(user: &str, id: &str) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": { "id": user },
        "actions": [{ "action_id": "apono.approve", "value": id }],
    });
    format!(
        "payload={}",
        payload
            .to_string()
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    )
}

async fn signed(
    plane: &std::sync::Arc<ControlPlane>,
    body: &str,
    secret: &str,
    age: i64,
) -> Result<apono_control::SlackOutcome, ControlError> {
    let at = chrono::Utc::now().timestamp() - age;
    let signature = slack_signature(&SecretString::from(secret.to_owned()), at, body.as_bytes());
    plane
        .slack_interaction(
            "slack",
            Some(&at.to_string()),
            Some(&signature),
            body.as_bytes(),
        )
        .await
}

/// A plane on a fresh SQLite ledger with `config` and `channels`, discovered, dana signed in
/// through `corp` with group `sre`, and a pending request of alice's on `r0` (its id).
async fn started(
    config: &str,
    channels: apono_control::Channels,
) -> Result<(support::Db, std::sync::Arc<ControlPlane>, String)> {
    let db = database(false)?;
    let timed = Timed {
        latency: std::time::Duration::ZERO,
        resources: 1,
    };
    let plane = ControlPlane::new(
        Store::open(&db.url).await?,
        Config::parse(config, std::iter::empty(), None)?,
        executor("timed", timed, ExecutorLimits::default()),
    );
    plane.set_notification_channels(channels);
    plane.bootstrap().await?;
    plane.run_due_once().await?;
    support::signed_in_through_corp(&plane, "dana@corp.example", r#"["sre"]"#, false, false)
        .await?;
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    let id = plane.create_request(&alice, &on("r0")).await?.id;
    Ok((db, plane, id))
}

/// The request is still pending after the refused presses; dana's press (Slack user `U0DANA`)
/// approves it as dana.
async fn nothing_decided_then_dana_approves(
    plane: &std::sync::Arc<ControlPlane>,
    id: &str,
) -> Result<()> {
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    assert_eq!(
        plane.request(&alice, id).await?.status,
        RequestStatus::Pending
    );
    let dana = signed(plane, &press("U0DANA", id), SECRET, 0).await?;
    assert_eq!(dana.outcome, "approved", "{dana:?}");
    assert_eq!(dana.user.as_deref(), Some("dana@corp.example"), "{dana:?}");
    Ok(())
}

/// [`CONFIG`] with `sre` as the flow's approvers and the `corp` identity provider.
fn sre_config(replacements: &[(&str, &str)], slack_extra: &str) -> String {
    let mut text = CONFIG.replace(
        r#"approvers = { mode = "all_of", users = ["bob@example.com", "carol@example.com"] }"#,
        r#"approvers = { groups = ["sre"] }"#,
    );
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    format!("{text}{slack_extra}{CORP_PROVIDER}")
}

#[tokio::test]
async fn presses_follow_all_of_and_bad_signatures_are_refused() -> Result<()> {
    let (_db, plane, id) = started(CONFIG, Default::default()).await?;
    let alice = plane.config().user("alice@example.com").unwrap().clone();

    let bob = press("U0BOB", &id);
    for (secret, age) in [("another secret", 0), (SECRET, 301)] {
        let refused = signed(&plane, &bob, secret, age).await;
        assert!(
            matches!(refused, Err(ControlError::Unauthenticated)),
            "{refused:?}"
        );
    }
    let first = signed(&plane, &bob, SECRET, 0).await?;
    assert_eq!(first.outcome, "recorded", "{first:?}");
    assert!(first.text.contains("carol@example.com"), "{first:?}");
    let again = signed(&plane, &bob, SECRET, 0).await?;
    assert_eq!(
        again.outcome, "refused",
        "bob cannot approve twice: {again:?}"
    );
    let pending = plane.request(&alice, &id).await?;
    assert_eq!(pending.status, RequestStatus::Pending);
    let second = signed(&plane, &press("U0CAROL", &id), SECRET, 0).await?;
    assert_eq!(second.outcome, "approved", "{second:?}");
    assert_ne!(
        plane.request(&alice, &id).await?.status,
        RequestStatus::Pending
    );
    Ok(())
}

#[tokio::test]
async fn a_press_acts_with_the_identity_providers_groups() -> Result<()> {
    let config = sre_config(
        &[(
            r#"slack_users = { U0BOB = "bob@example.com", U0CAROL = "carol@example.com" }"#,
            r#"slack_users = { U0BOB = "bob@example.com", U0DANA = "dana@corp.example", U0ERIN = "erin@corp.example" }"#,
        )],
        "",
    );
    let (_db, plane, id) = started(&config, Default::default()).await?;
    support::signed_in_through_corp(&plane, "erin@corp.example", r#"["sre"]"#, false, true).await?;
    // bob is a configured user but not in `sre`; erin is, but the provider disabled her.
    for user in ["U0BOB", "U0ERIN"] {
        let refused = signed(&plane, &press(user, &id), SECRET, 0).await?;
        assert_eq!(refused.outcome, "refused", "{user}: {refused:?}");
    }
    nothing_decided_then_dana_approves(&plane, &id).await?;
    Ok(())
}

#[tokio::test]
async fn an_unlisted_member_is_asked_of_slack() -> Result<()> {
    use apono_testkit::fakes::{FakeSlackApi, SlackUser};
    let slack = FakeSlackApi::start()?;
    slack.add_token("xoxb-bot", true);
    slack.put_user(SlackUser::member("U0DANA", "dana@corp.example"));
    let mut gone = SlackUser::member("U0GONE", "dana@corp.example");
    gone.deleted = true;
    slack.put_user(gone);
    let mut unconfirmed = SlackUser::member("U0SOMEONE", "dana@corp.example");
    unconfirmed.is_email_confirmed = Some(false);
    slack.put_user(unconfirmed);
    let mut unsaid = SlackUser::member("U0UNSAID", "dana@corp.example");
    unsaid.is_email_confirmed = None;
    slack.put_user(unsaid);
    slack.put_user(SlackUser::member("U0BOB", "dana@corp.example"));

    let config = sre_config(
        &[(
            r#"signing_secret = "slack-signing-test" }"#,
            r#"signing_secret = "slack-signing-test", bot_token = "xoxb-bot" }"#,
        )],
        &format!("slack_api_url = \"{}\"\n", slack.url()),
    );
    let mut channels = apono_control::Channels::new();
    channels.insert(
        "slack".to_owned(),
        std::sync::Arc::new(apono_notify::SlackChannel::with_api(
            std::time::Duration::from_secs(5),
            &slack.url(),
        )?) as std::sync::Arc<dyn apono_notify::Deliver>,
    );
    let (_db, plane, id) = started(&config, channels).await?;

    // bob is in slack_users: Slack is never asked about him, whatever it would say.
    let bob = signed(&plane, &press("U0BOB", &id), SECRET, 0).await?;
    assert_eq!(bob.outcome, "refused", "{bob:?}");
    assert_eq!(bob.user.as_deref(), Some("bob@example.com"), "{bob:?}");
    // Slack gives dana's address for these, but not one the connector may trust.
    for member in ["U0GONE", "U0SOMEONE", "U0UNSAID", "U0NOBODY"] {
        let refused = signed(&plane, &press(member, &id), SECRET, 0).await?;
        assert_eq!(refused.outcome, "refused", "{member}: {refused:?}");
        assert_eq!(refused.user, None, "{member}: {refused:?}");
    }
    nothing_decided_then_dana_approves(&plane, &id).await?;

    let asked: Vec<_> = slack.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        asked,
        [
            "user=U0GONE",
            "user=U0SOMEONE",
            "user=U0UNSAID",
            "user=U0NOBODY",
            "user=U0DANA"
        ],
        "one users.info per unlisted press, none for bob"
    );
    assert!(
        slack
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xoxb-bot"))
    );
    Ok(())
}
