#!/usr/bin/env bash
# Vendors the console's front-end libraries from npm into static/: installs
# the versions locked in package-lock.json in a temporary folder (so no
# node_modules is left in the tree) and copies the two files the pages load.
# Run it after changing package.json, then commit package-lock.json and
# static/. `./build.sh --lock` refreshes package-lock.json first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cp "$here/package.json" "$tmp/"
if [ "${1:-}" = "--lock" ] || [ ! -f "$here/package-lock.json" ]; then
	(cd "$tmp" && npm install --package-lock-only --ignore-scripts --no-audit --no-fund >/dev/null)
	cp "$tmp/package-lock.json" "$here/package-lock.json"
fi
cp "$here/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)

cp "$tmp/node_modules/htmx.org/dist/htmx.min.js" "$here/static/htmx.min.js"
cp "$tmp/node_modules/chart.js/dist/chart.umd.js" "$here/static/chart.umd.js"
for f in htmx.min.js chart.umd.js; do
	printf '%s  %s\n' "$(sha256sum "$here/static/$f" | cut -d' ' -f1)" "$f"
done
