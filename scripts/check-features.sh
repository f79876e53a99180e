#!/usr/bin/env bash
# Every cargo feature of every publishable library builds alone: `cargo check` of the library
# with no feature, then with each feature by itself (what `cargo hack check --each-feature
# --no-dev-deps` does, without installing cargo-hack). Libraries default to no feature, so
# "no feature" is also the default build. A feature that only forwards to another workspace
# crate's feature and that the package's own code never tests (`feature = "NAME"`) is left
# out: it adds no code here, and the crate it forwards to checks it alone. Run from the
# workspace root; any failure stops it.
set -euo pipefail
# A library never picks a Kubernetes API version (the application does); building the
# `kubernetes` feature alone needs one, as docs/testing.md explains.
export K8S_OPENAPI_ENABLED_VERSION=${K8S_OPENAPI_ENABLED_VERSION:-1.37}
cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, pathlib, sys
for p in json.load(sys.stdin)["packages"]:
    libs = [t for t in p["targets"] if "lib" in t["kind"]]
    if p.get("publish") == [] or not libs:
        continue  # publish = false, or no library
    root = pathlib.Path(p["manifest_path"]).parent
    code = "".join(f.read_text() for f in (root / "src").rglob("*.rs"))
    def own(name):
        forwards_only = all("/" in e and not e.startswith("dep:") for e in p["features"][name])
        return not forwards_only or f"feature = \"{name}\"" in code
    features = sorted(f for f in p["features"] if f != "default" and own(f))
    print(p["name"], *features)
' | while read -r package features; do
  echo "checking $package: no feature${features:+, then each of: $features}" >&2
  cargo check --locked --quiet -p "$package" --lib --no-default-features
  for feature in $features; do
    cargo check --locked --quiet -p "$package" --lib --no-default-features --features "$feature"
  done
done
