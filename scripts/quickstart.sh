#!/usr/bin/env bash
# Quickstart: a private sshd to grant access to, a connector configured for it, and the curl
# commands to request access, log in and watch it expire. Run as root (the sshd runs in its own
# mount + PID namespace). Stop everything with the command printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v unshare >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "building apono-connector and the quickstart target…" >&2
cargo build -q -p apono-connector -p apono-e2e --bin apono-connector --bin apono-quickstart-target
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
WORK=$(mktemp -d /tmp/apono-quickstart.XXXXXX)

setsid "$BIN/apono-quickstart-target" >"$WORK/target.env" 2>"$WORK/target.log" &
echo $! >"$WORK/target.pid"
for _ in $(seq 1 300); do grep -q '^READY=1' "$WORK/target.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY=1' "$WORK/target.env" || { cat "$WORK/target.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$WORK/target.env"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/connector.toml" <<TOML
[connector]
id = "quickstart"
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"
groups = ["sre"]

[[integrations]]
name = "local-servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
custom_access_details = "This is the quickstart's private sshd."
credentials_cleanup_period_in_days = 0
secret_store = { apono = { parameters = { base64_private_key = "$TARGET_ADMIN_KEY_B64" } } }
config = { servers = [{ name = "web-1", host = "$TARGET_HOST", port = $TARGET_PORT, user = "$TARGET_ADMIN", host_key = "$TARGET_HOST_KEY", tags = { env = "demo" } }] }

[[access_flows]]
name = "developers-ssh"
trigger = "self_serve"
requestors = { groups = ["developers"] }
targets = [{ integration = "local-servers", resource_type = "ssh-server", permissions = ["Default"], resources = { tags = { env = "demo" } } }]
approvers = { mode = "any_of", groups = ["sre"] }
grant_duration = "2m"
justification_required = true
TOML

"$BIN/apono-connector" check-config --config "$WORK/connector.toml" >&2
ALICE=$("$BIN/apono-connector" tokens create --config "$WORK/connector.toml" --user alice@example.com)
BOB=$("$BIN/apono-connector" tokens create --config "$WORK/connector.toml" --user bob@example.com)
setsid "$BIN/apono-connector" run --config "$WORK/connector.toml" >"$WORK/connector.log" 2>&1 &
echo $! >"$WORK/connector.pid"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

API=http://127.0.0.1:$PORT/api/v1
cat <<TEXT

The connector runs on http://127.0.0.1:$PORT (log: $WORK/connector.log); the private sshd on
$TARGET_HOST:$TARGET_PORT. Tokens: alice (requester) and bob (approver).

  export API=$API ALICE=$ALICE BOB=$BOB

1. alice asks for access (a dry run first, then for real):
  curl -s -H "Authorization: Bearer \$ALICE" -d '{"integration":"local-servers","resource_type":"ssh-server","resource_ids":["web-1"],"permission":"Default","duration":"1m"}' \$API/access-requests/dry-run
  REQ=\$(curl -s -H "Authorization: Bearer \$ALICE" -d '{"integration":"local-servers","resource_type":"ssh-server","resource_ids":["web-1"],"permission":"Default","duration":"1m","justification":"trying the quickstart"}' \$API/access-requests | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

2. bob approves it:
  curl -s -X POST -H "Authorization: Bearer \$BOB" \$API/access-requests/\$REQ/approve

3. alice reads her access details once (the private key is shown only this time) and logs in:
  SESSION=\$(curl -s -H "Authorization: Bearer \$ALICE" \$API/access-requests/\$REQ | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_ids"][0])')
  curl -s -H "Authorization: Bearer \$ALICE" \$API/access-sessions/\$SESSION/access-details > /tmp/details.json
  python3 -c 'import json; d=json.load(open("/tmp/details.json")); open("/tmp/apono_key","w").write(d["credentials"]["private_key"]); print(d["json"]["username"])' > /tmp/apono_user
  chmod 600 /tmp/apono_key
  ssh -F /dev/null -o UserKnownHostsFile=$TARGET_KNOWN_HOSTS -i /tmp/apono_key -p $TARGET_PORT "\$(cat /tmp/apono_user)@$TARGET_HOST" id

4. watch it expire (one minute), then try to log in again — refused:
  watch -n1 "curl -s -H 'Authorization: Bearer \$ALICE' \$API/access-sessions/\$SESSION; echo; curl -s http://127.0.0.1:$PORT/metrics | grep -E '^apono_(active_grants|revokes|revoke_lag_seconds_(sum|count))'"

Audit log (admins only; make bob an admin in $WORK/connector.toml to read it), verify the chain:
  $BIN/apono-connector audit verify --config $WORK/connector.toml

Stop everything:
  kill \$(cat $WORK/connector.pid) \$(cat $WORK/target.pid)
TEXT
