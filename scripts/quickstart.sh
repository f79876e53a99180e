#!/usr/bin/env bash
# Quickstart: a private sshd to grant access to, a connector configured for it, and the `apono`
# CLI commands to request access, approve it, log in and watch it expire. Run as root (the sshd runs in its own
# mount + PID namespace). Stop everything with the command printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# python3 picks a free port for the connector; checked first, so nothing is built or
# started for nothing.
if ! command -v python3 >/dev/null; then
  echo "quickstart: python3 is required (it picks a free port for the connector); install it (apt-get install python3) and run again" >&2
  exit 1
fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v unshare >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
scripts/install-debian-packages.sh "${missing[@]}"

echo "building apono-connector, the apono CLI and the quickstart target…" >&2
cargo build -q -p apono-connector -p apono-cli -p apono-e2e --bin apono-connector --bin apono --bin apono-quickstart-target
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
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/connector.log" >&2; exit 1; }

URL=http://127.0.0.1:$PORT
cat <<TEXT

The connector runs on $URL (log: $WORK/connector.log); the private sshd on
$TARGET_HOST:$TARGET_PORT. Tokens: alice (requester) and bob (approver).

  export PATH=$BIN:\$PATH ALICE=$ALICE BOB=$BOB

1. alice logs in (a profile "quickstart" with the URL and her token, made the active one):
  apono login --profile quickstart --url $URL --personal-token \$ALICE

2. alice asks for access; --no-wait returns at once with the request id (without it, the
   command waits for the approval):
  apono requests create -i local-servers -t ssh-server -r web-1 -p Default -d 1m -j "trying the quickstart" --no-wait

3. bob approves it (his token for this one command; REQUEST_ID from step 2):
  APONO_URL=$URL APONO_TOKEN=\$BOB apono requests approve REQUEST_ID

4. alice finds her session and logs in with the one-time key (kept for her in ~/.cache/apono,
   with the server's host key beside it, so ssh asks nothing and refuses any other server):
  apono access list
  apono access use SESSION_ID --run

5. watch it expire (one minute); after that, the same login is refused ("access has ended"):
  watch -n1 "apono access list; curl -s $URL/metrics | grep -E '^apono_(active_grants|revokes|revoke_lag_seconds_(sum|count))'"
  apono access use SESSION_ID --run

The same over HTTP: curl -H "Authorization: Bearer \$ALICE" $URL/api/v1/access-sessions
The same in a browser: $URL/ui/ (sign in with \$ALICE's token; bob approves from his inbox)

Audit log (admins only; make bob an admin in $WORK/connector.toml to read it), verify the chain:
  $BIN/apono-connector audit verify --config $WORK/connector.toml

Stop everything and remove $WORK (it holds the sshd's admin key and the tokens' database):
  kill \$(cat $WORK/connector.pid) \$(cat $WORK/target.pid); rm -rf $WORK
TEXT
