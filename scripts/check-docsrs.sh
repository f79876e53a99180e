#!/usr/bin/env bash
# Builds every publishable library's documentation as docs.rs would: the crate alone (no
# feature unification with the rest of the workspace), with the features and rustdoc arguments
# of its `[package.metadata.docs.rs]` (`--cfg docsrs`), warnings denied. docs.rs uses a nightly
# compiler, for `#![cfg_attr(docsrs, feature(doc_cfg))]`; RUSTC_BOOTSTRAP=1 lets the pinned
# stable toolchain accept that gate instead of installing a nightly. Run from the workspace root.
set -euo pipefail
cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") == [] or not any("lib" in t["kind"] for t in p["targets"]):
        continue
    meta = (p.get("metadata") or {}).get("docs", {}).get("rs")
    if meta is None:
        sys.exit(p["name"] + " has no [package.metadata.docs.rs]")
    flags = "--all-features" if meta.get("all-features") else ""
    if meta.get("features"):
        flags += " --features " + ",".join(meta["features"])
    print(p["name"], " ".join(meta.get("rustdoc-args", [])), flags, sep="|")
' | while IFS='|' read -r package rustdoc_args flags; do
  echo "documenting $package as docs.rs does ($flags)" >&2
  # shellcheck disable=SC2086 # the flags are words
  RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="$rustdoc_args -D warnings" \
    cargo doc --locked --quiet -p "$package" --no-deps $flags
done
