//! `FakeSlackApi` checked by Slack's own Python SDK (`slack_sdk`).

mod vendor;

use apono_testkit::fakes::{FAKE_TEAM, FakeSlackApi, SlackUser};
use serde_json::json;

#[test]
fn slacks_python_sdk_agrees_with_the_fake() {
    let fake = FakeSlackApi::start().expect("start the fake");
    fake.add_token("xoxb-with-email", true);
    fake.add_token("xoxb-no-email", false);
    fake.put_user(SlackUser::member("U0DANA", "dana@corp.example"));
    let mut gone = SlackUser::member("U0GONE", "gone@corp.example");
    gone.deleted = true;
    fake.put_user(gone);

    vendor::run(
        "slack_web_api.py",
        &json!({
            "url": fake.url(),
            "token": "xoxb-with-email",
            "no_email_token": "xoxb-no-email",
            "user": "U0DANA",
            "email": "dana@corp.example",
            "deleted": "U0GONE",
            "team": FAKE_TEAM,
        }),
        &[],
    );
    let requests = fake.requests();
    let first = requests
        .iter()
        .find(|r| r.path_and_query.starts_with("/api/users.info"))
        .expect("the SDK called users.info");
    assert_eq!(
        first.header("authorization"),
        Some("Bearer xoxb-with-email")
    );
    // The SDK posts a form, whatever verb it is given: the connector calls the method so.
    assert_eq!(first.method, "POST");
    assert_eq!(
        first.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(first.body, "user=U0DANA");
}
