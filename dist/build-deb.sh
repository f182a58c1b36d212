#!/usr/bin/env bash
# Builds the Debian package `leasequeryd` (README "Packaging") into target/debian/ and lists
# its contents. Installs cargo-deb first when it is missing (about 20 minutes on a small
# machine). Extra arguments go to `cargo deb` (e.g. `--no-build` after `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
# The committed man pages are what the package ships: refuse stale ones.
cargo build --bins
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/debug/leasequeryd --man-page "$tmp"
target/debug/loadgen --man-page "$tmp"
target/debug/lqctl --man-page "$tmp"
if ! diff -r "$tmp" dist/man >/dev/null; then
    echo "dist/man/ is stale: run target/debug/leasequeryd --man-page dist/man && target/debug/loadgen --man-page dist/man && target/debug/lqctl --man-page dist/man" >&2
    exit 1
fi
deb=$(cargo deb "$@" | tail -n 1)
echo "$deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
