"""Checks the fake metadata server's token endpoint with google-auth's own metadata client."""
from common import args, require

a = args()
require(("google.auth.compute_engine._metadata", "google-auth"))
import google.auth.transport.requests  # noqa: E402
from google.auth.compute_engine import _metadata  # noqa: E402

url = a["url"]
root = url.split("/computeMetadata/v1/")[0] + "/computeMetadata/v1/"
# google-auth's own metadata client, pointed at the fake's root; it sends Metadata-Flavor.
info = _metadata.get(
    google.auth.transport.requests.Request(),
    "instance/service-accounts/default/token",
    root=root,
)
assert info["token_type"] == "Bearer" and info["access_token"], info
assert int(info["expires_in"]) > 0, info
# Without the header the fake refuses, as the real server does.
import requests  # noqa: E402

assert requests.get(url, timeout=10).status_code == 403
print("ok")
