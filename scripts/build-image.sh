#!/usr/bin/env bash
# Builds deploy/Dockerfile's runtime stage from binaries built here (no registry needed):
#   scripts/build-image.sh CONNECTOR_BIN APONO_BIN TAG
# on the debootstrap base that scripts/deploy-tools.sh makes. Prints the image's tag.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 3 ] || { echo "usage: $0 CONNECTOR_BIN APONO_BIN TAG" >&2; exit 2; }
eval "$(scripts/deploy-tools.sh)"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$1" "$context/apono-connector"
cp "$2" "$context/apono"
podman build --quiet --format docker -f deploy/Dockerfile \
  --build-arg BINARIES=prebuilt --build-arg RUNTIME_BASE="$APONO_IMAGE_BASE" \
  -t "$3" "$context" >/dev/null
echo "$3"
