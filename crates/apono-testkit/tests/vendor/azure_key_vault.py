"""Checks FakeAzureKeyVault with Microsoft's own clients: azure-identity (MSAL) obtains tokens
from the fake Entra ID authority, and azure-keyvault-secrets answers the 401 challenge and
reads secrets. TLS is verified against the fake's test CA (REQUESTS_CA_BUNDLE)."""
from common import args, expect_raises, require

a = args()
require(
    ("azure.keyvault.secrets", "azure-keyvault-secrets"),
    ("azure.identity", "azure-identity"),
)
from azure.core.exceptions import (  # noqa: E402
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402

endpoint = a["endpoint"]


def client(credential):
    # The fake vault is not under vault.azure.net, so the SDK's check that the challenge's
    # resource matches the vault's domain is turned off (the only concession to the fake).
    return SecretClient(
        vault_url=endpoint, credential=credential, verify_challenge_resource=False
    )


cred = ClientSecretCredential(
    a["tenant"],
    a["client_id"],
    a["client_secret"],
    authority=endpoint,
    disable_instance_discovery=True,
)
c = client(cred)

# The challenge round-trip, the client-credentials grant, the secret bundle.
s = c.get_secret(a["secret"])
assert s.value == a["value"], "value differs"
assert s.name == a["secret"], s.name
assert s.properties.enabled is True
old = c.get_secret(a["secret"], a["first_version"])
assert old.value == a["first_value"], "first version differs"
assert old.properties.version == a["first_version"], old.properties.version

# Errors in Key Vault's shape, mapped by azure-core.
e = expect_raises(ResourceNotFoundError, lambda: c.get_secret(a["missing"]), "missing secret")
assert e.error.code == "SecretNotFound", e.error.code
e = expect_raises(HttpResponseError, lambda: c.get_secret(a["denied"]), "denied secret")
assert e.status_code == 403 and e.error.code == "Forbidden", (e.status_code, e.error)

# A wrong client secret: AAD's error, surfaced by azure-identity.
wrong = ClientSecretCredential(
    a["tenant"], a["client_id"], "wrong", authority=endpoint, disable_instance_discovery=True
)
e = expect_raises(ClientAuthenticationError, lambda: client(wrong).get_secret(a["secret"]), "bad secret")
assert "invalid_client" in str(e) or "AADSTS7000215" in str(e), str(e)

# Workload identity: a federated token file as the client assertion.
wi = WorkloadIdentityCredential(
    tenant_id=a["tenant"],
    client_id=a["federated_client_id"],
    token_file_path=a["federated_token_file"],
    authority=endpoint,
    disable_instance_discovery=True,
)
assert client(wi).get_secret(a["secret"]).value == a["value"]

# Managed identity through IMDS (the SDK's IMDS host is overridable for pod identity).
import os  # noqa: E402

if os.environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST"):
    from azure.identity import ManagedIdentityCredential

    mi = ManagedIdentityCredential()
    token = mi.get_token("https://vault.azure.net/.default")
    assert token.token and token.expires_on > 0
print("ok")
