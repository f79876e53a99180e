#!/usr/bin/env bash
# Installs the Debian packages named as arguments, without letting their services start on the
# host (the project starts private instances of the servers it needs).
set -euo pipefail
[ $# -gt 0 ] || exit 0
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod 755 /usr/sbin/policy-rc.d
  guard=/usr/sbin/policy-rc.d
  trap 'as_root rm -f "$guard"' EXIT
fi
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
