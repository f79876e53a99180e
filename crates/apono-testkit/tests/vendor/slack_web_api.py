"""Checks FakeSlackApi with Slack's own Python SDK (slack_sdk's WebClient): users.info, the
email only with the users:read.email scope, and the errors invalid_auth, not_authed and
user_not_found."""
from common import args, expect_raises, require

a = args()
require(("slack_sdk", "slack_sdk"))
from slack_sdk import WebClient  # noqa: E402
from slack_sdk.errors import SlackApiError  # noqa: E402

client = WebClient(token=a["token"], base_url=a["url"])
r = client.users_info(user=a["user"])
assert r["ok"] is True, r.data
user = r["user"]
assert user["id"] == a["user"] and user["team_id"] == a["team"], user
assert user["deleted"] is False and user["is_bot"] is False, user
assert user["is_email_confirmed"] is True, user
assert user["profile"]["email"] == a["email"], user["profile"]

# The SDK sends every call as a POST with a form body (so does the connector); params too.
r = client.api_call("users.info", http_verb="GET", params={"user": a["user"]})
assert r["user"]["profile"]["email"] == a["email"], r.data
r = client.api_call("users.info", http_verb="POST", data={"user": a["user"]})
assert r["user"]["profile"]["email"] == a["email"], r.data

# A token without users:read.email sees the member but not the email.
r = WebClient(token=a["no_email_token"], base_url=a["url"]).users_info(user=a["user"])
assert "email" not in r["user"]["profile"], r["user"]["profile"]

r = client.users_info(user=a["deleted"])
assert r["user"]["deleted"] is True, r.data

e = expect_raises(SlackApiError, lambda: client.users_info(user="U0NOBODY"), "unknown user")
assert e.response["error"] == "user_not_found", e.response.data
e = expect_raises(
    SlackApiError,
    lambda: WebClient(token="xoxb-wrong", base_url=a["url"]).users_info(user=a["user"]),
    "wrong token",
)
assert e.response["error"] == "invalid_auth", e.response.data
e = expect_raises(
    SlackApiError, lambda: WebClient(base_url=a["url"]).users_info(user=a["user"]), "no token"
)
assert e.response["error"] == "not_authed", e.response.data
print("ok")
