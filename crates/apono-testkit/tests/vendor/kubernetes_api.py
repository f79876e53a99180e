"""Checks FakeKubernetes with the official Python client (kubernetes): discovery, reading,
creating and replacing a secret, and the Status objects of 404, 403, 409, 429 and 401."""
import base64
import json

from common import args, expect_raises, require

a = args()
require(("kubernetes.client", "kubernetes<37"))
from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


def api_client(token):
    configuration = client.Configuration()
    configuration.host = a["url"]
    # The key is "BearerToken" in current clients ("authorization" in old ones).
    configuration.api_key = {"BearerToken": token, "authorization": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
    return client.ApiClient(configuration)


c = api_client(a["token"])

# Discovery.
version = client.VersionApi(c).get_code()
assert version.major == "1" and version.git_version.startswith("v1."), version
versions = client.CoreApi(c).get_api_versions()
assert "v1" in versions.versions, versions
resources = client.CoreV1Api(c).get_api_resources()
secrets = [r for r in resources.resources if r.name == "secrets"]
assert secrets and secrets[0].namespaced and "get" in secrets[0].verbs, resources

# Reading a secret: data is base64, labels are there.
core = client.CoreV1Api(c)
s = core.read_namespaced_secret(a["name"], a["namespace"])
assert s.kind == "Secret" and s.type == "Opaque", (s.kind, s.type)
assert s.metadata.name == a["name"] and s.metadata.namespace == a["namespace"]
assert s.metadata.labels == a["labels"], s.metadata.labels
decoded = {k: base64.b64decode(v).decode() for k, v in s.data.items()}
assert decoded == a["data"], "data differs"


def status_of(e):
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["status"] == "Failure" and body["code"] == e.status, body
    return body


e = expect_raises(ApiException, lambda: core.read_namespaced_secret("nope", a["namespace"]), "missing")
assert e.status == 404 and status_of(e)["reason"] == "NotFound", e.body
assert status_of(e)["details"] == {"name": "nope", "kind": "secrets"}, e.body
e = expect_raises(ApiException, lambda: core.read_namespaced_secret(a["denied"], a["namespace"]), "denied")
assert e.status == 403 and status_of(e)["reason"] == "Forbidden", e.body
e = expect_raises(ApiException, lambda: core.read_namespaced_secret(a["throttled"], a["namespace"]), "throttled")
assert e.status == 429 and status_of(e)["reason"] == "TooManyRequests", e.body
assert status_of(e)["details"] == {"retryAfterSeconds": 1}, e.body
assert e.headers["Retry-After"] == "1", e.headers
e = expect_raises(
    ApiException,
    lambda: client.CoreV1Api(api_client("wrong")).read_namespaced_secret(a["name"], a["namespace"]),
    "bad token",
)
assert e.status == 401 and status_of(e)["reason"] == "Unauthorized", e.body

# Creating a secret: 201 with the object; again: 409 AlreadyExists.
body = client.V1Secret(
    metadata=client.V1ObjectMeta(name="created", labels={"a": "b"}),
    string_data={"plain": "text"},
    data={"bin": base64.b64encode(b"bytes").decode()},
    type="Opaque",
)
made = core.create_namespaced_secret(a["namespace"], body)
assert made.metadata.name == "created" and made.metadata.labels == {"a": "b"}, made.metadata
assert {k: base64.b64decode(v).decode() for k, v in made.data.items()} == {"plain": "text", "bin": "bytes"}
e = expect_raises(ApiException, lambda: core.create_namespaced_secret(a["namespace"], body), "exists")
assert e.status == 409 and status_of(e)["reason"] == "AlreadyExists", e.body

# Replacing it: with the current resourceVersion, then with a stale one (409 Conflict).
made.data = {"k": base64.b64encode(b"v2").decode()}
made.metadata.labels = {"c": "d"}
replaced = core.replace_namespaced_secret("created", a["namespace"], made)
assert replaced.metadata.resource_version != made.metadata.resource_version
again = core.read_namespaced_secret("created", a["namespace"])
assert again.metadata.labels == {"c": "d"} and base64.b64decode(again.data["k"]) == b"v2"
e = expect_raises(ApiException, lambda: core.replace_namespaced_secret("created", a["namespace"], made), "stale")
assert e.status == 409 and status_of(e)["reason"] == "Conflict", e.body
e = expect_raises(ApiException, lambda: core.replace_namespaced_secret("absent", a["namespace"], client.V1Secret(metadata=client.V1ObjectMeta(name="absent"))), "absent")
assert e.status == 404 and status_of(e)["reason"] == "NotFound", e.body
e = expect_raises(ApiException, lambda: core.replace_namespaced_secret(a["denied"], a["namespace"], client.V1Secret(metadata=client.V1ObjectMeta(name=a["denied"]))), "denied write")
assert e.status == 403 and status_of(e)["reason"] == "Forbidden", e.body
print("ok")
