"""Checks FakeGcpSecretManager with Google's own clients: google-auth performs the JWT-bearer
grant against the fake token endpoint, and google-cloud-secret-manager (REST transport) reads
secrets and maps the fake's errors."""
import sys

from common import args, expect_raises, require

a = args()
require(
    ("google.cloud.secretmanager", "google-cloud-secret-manager"),
    ("google.oauth2.service_account", "google-auth"),
)
import google.auth.transport.requests  # noqa: E402
from google.api_core import exceptions  # noqa: E402
from google.cloud import secretmanager  # noqa: E402
from google.oauth2 import credentials as user_credentials  # noqa: E402
from google.oauth2 import service_account  # noqa: E402


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# 1. The JWT-bearer grant, signed by google-auth with the fake's service-account key.
sa = service_account.Credentials.from_service_account_file(
    a["key_file"], scopes=["https://www.googleapis.com/auth/cloud-platform"]
)
sa.refresh(google.auth.transport.requests.Request())
assert sa.token, "no access token from the fake token endpoint"

# A key the fake does not know must be refused with invalid_grant.
bad = service_account.Credentials.from_service_account_file(
    a["other_key_file"], scopes=["https://www.googleapis.com/auth/cloud-platform"]
)
from google.auth import exceptions as auth_exceptions  # noqa: E402

err = expect_raises(
    auth_exceptions.RefreshError,
    lambda: bad.refresh(google.auth.transport.requests.Request()),
    "JWT signed by an unknown key",
)
assert "invalid_grant" in str(err), err


def client(token):
    return secretmanager.SecretManagerServiceClient(
        credentials=user_credentials.Credentials(token=token),
        transport="rest",
        client_options={"api_endpoint": a["endpoint"]},
    )


c = client(sa.token)
p = a["project"]

# 2. Reading the latest version: payload bytes and their checksum.
resp = c.access_secret_version(name=f"projects/{p}/secrets/{a['secret']}/versions/latest")
assert resp.payload.data == a["value"].encode(), "payload differs"
assert resp.payload.data_crc32c == crc32c(resp.payload.data), "dataCrc32c differs"
assert resp.name.startswith(f"projects/{p}/secrets/{a['secret']}/versions/"), resp.name
first = c.access_secret_version(name=f"projects/{p}/secrets/{a['secret']}/versions/1")
assert first.payload.data == a["first_value"].encode(), "version 1 differs"

# 3. Errors, in Google's shape, mapped by google-api-core.
expect_raises(
    exceptions.NotFound,
    lambda: c.access_secret_version(name=f"projects/{p}/secrets/{a['missing']}/versions/latest"),
    "missing secret",
)
# Over REST, google-api-core classifies by HTTP status: 403 is Forbidden (PermissionDenied is
# its gRPC sibling); the body must still carry Google's status.
e = expect_raises(
    exceptions.Forbidden,
    lambda: c.access_secret_version(name=f"projects/{p}/secrets/{a['denied']}/versions/latest"),
    "denied secret",
)
assert "secretmanager.versions.access" in e.message, e.message
assert e.response.json()["error"]["status"] == "PERMISSION_DENIED", e.response.text
assert e.response.json()["error"]["code"] == 403, e.response.text
# A 401 makes the vendor session try to refresh the token, so check it with the raw response
# and google-api-core's own error mapping.
import requests  # noqa: E402

r = requests.get(
    f"{a['endpoint']}/v1/projects/{p}/secrets/{a['secret']}/versions/latest:access",
    headers={"Authorization": "Bearer not-a-token"},
    timeout=10,
)
mapped = exceptions.from_http_response(r)
assert isinstance(mapped, exceptions.Unauthorized), type(mapped)
assert r.json()["error"]["status"] == "UNAUTHENTICATED", r.text
print("ok")
sys.exit(0)
