"""Checks deploy/aws/iam-policy.json on a moto server that enforces IAM after its first six
requests (INITIAL_NO_AUTH_ACTION_COUNT=6), which set things up: a user holding only the
policy, its access key, a secret tagged apono-connector-read=true and one not tagged.

Then, signed with the user's key: every action the policy does not name is refused (listing,
creating, writing, tagging, deleting secrets; IAM). moto does not evaluate resource-tag
conditions, so what it answers for GetSecretValue is printed, never taken as proof.
Prints `ok` and one line per check as JSON on the last line."""
import json
import sys

import boto3
from botocore.exceptions import ClientError

args = json.loads(sys.argv[1])
endpoint, policy = args["endpoint"], open(args["policy"]).read()
common = dict(endpoint_url=endpoint, region_name="us-east-1")
admin = dict(aws_access_key_id="testing", aws_secret_access_key="testing", **common)

# The six unauthenticated setup requests, exactly.
iam = boto3.client("iam", **admin)
sm = boto3.client("secretsmanager", **admin)
iam.create_user(UserName="apono-connector")  # 1
arn = iam.create_policy(PolicyName="apono-connector-read", PolicyDocument=policy)["Policy"]["Arn"]  # 2
iam.attach_user_policy(UserName="apono-connector", PolicyArn=arn)  # 3
key = iam.create_access_key(UserName="apono-connector")["AccessKey"]  # 4
sm.create_secret(Name="tagged", SecretString="{}", Tags=[{"Key": "apono-connector-read", "Value": "true"}])  # 5
sm.create_secret(Name="untagged", SecretString="{}")  # 6

as_connector = dict(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **common)
csm = boto3.client("secretsmanager", **as_connector)
ciam = boto3.client("iam", **as_connector)


def outcome(call):
    try:
        call()
        return "allowed"
    except ClientError as e:
        error = e.response["Error"]
        code, message = error.get("Code", ""), error.get("Message", "")
        # Secrets Manager's refusal comes back as a bare 403 whose message says so.
        if code in ("AccessDenied", "AccessDeniedException") or (
            code == "403" and "is not authorized to perform" in message
        ):
            return "denied"
        return f"error {code}: {message}"


must_be_denied = {
    "secretsmanager:ListSecrets": lambda: csm.list_secrets(),
    "secretsmanager:CreateSecret": lambda: csm.create_secret(Name="new", SecretString="x"),
    "secretsmanager:PutSecretValue (tagged)": lambda: csm.put_secret_value(SecretId="tagged", SecretString="x"),
    "secretsmanager:TagResource (untagged)": lambda: csm.tag_resource(SecretId="untagged", Tags=[{"Key": "apono-connector-read", "Value": "true"}]),
    "secretsmanager:DeleteSecret (tagged)": lambda: csm.delete_secret(SecretId="tagged"),
    "iam:CreateAccessKey": lambda: ciam.create_access_key(UserName="apono-connector"),
    "iam:ListUsers": lambda: ciam.list_users(),
}
results = {name: outcome(call) for name, call in must_be_denied.items()}
wrong = {k: v for k, v in results.items() if v != "denied"}
assert not wrong, f"the policy allows more than reading tagged secrets: {wrong}"
# Not proof either way (moto cannot evaluate secretsmanager:ResourceTag conditions).
results["secretsmanager:GetSecretValue (tagged), moto's answer"] = outcome(lambda: csm.get_secret_value(SecretId="tagged"))
results["secretsmanager:GetSecretValue (untagged), moto's answer"] = outcome(lambda: csm.get_secret_value(SecretId="untagged"))
print("ok")
print(json.dumps(results))
