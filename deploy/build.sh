#!/bin/sh
# Builds edgesim as deploy/Dockerfile does, without Docker: a static binary (no cgo), paths
# trimmed, symbols stripped. Usage: deploy/build.sh [OUT] (default dist/edgesim, from the
# repository root). The go build line is the Dockerfile's, character for character (a test
# checks it).
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-dist/edgesim}
case $OUT in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
mkdir -p "$(dirname "$OUT")"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT" ./cmd/edgesim
echo "built $OUT ($("$OUT" version))"
