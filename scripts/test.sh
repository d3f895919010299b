#!/usr/bin/env bash
# The project's test command (README, "Set-up"): installs the real clients the tests talk to when
# they are missing (dig, named-checkzone, openssl, nsd), then vets and runs every test with the
# race detector, and runs each fuzz target briefly beyond its regression corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null || need+=(dnsutils)
command -v named-checkzone >/dev/null || need+=(bind9-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v nsd >/dev/null || need+=(nsd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing test clients: ${need[*]}"
    apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null ||
      echo "warning: could not install ${need[*]}; the tests that use them will skip" >&2
  else
    echo "warning: ${need[*]} missing and not root; the tests that use them will skip" >&2
  fi
fi

go vet ./...
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -race -count=1 -timeout 15m ./... 2>&1 | tee "$log" || status=$?
passed=$(grep -c '^ok ' "$log" || true)
failed=$(grep -c '^FAIL' "$log" || true)
if [ "$status" != 0 ]; then
  echo "packages: $passed passed, $failed failed"
  exit "$status"
fi

# Each fuzz target beyond its seed corpus (which ran above as regression tests) for a bounded
# number of executions: FUZZEXECS (default 100000, 0 skips this), about 1 to 13 s per target on
# this machine. A count rather than a -fuzztime duration: with a duration, Go's fuzzing
# coordinator can fail a healthy target with a bare "context deadline exceeded" when a worker is
# mid-input at the deadline (golang/go#75804); CI failed on that once. FUZZTIME=10s still picks
# a duration for local runs. Inputs are not minimised (FUZZMINIMIZETIME): Go minimises each new
# interesting input for up to a minute, and on inputs of a few KiB (PEM chains) that takes the
# whole run; a failing input is still written to testdata/fuzz/ as it was found.
fuzzexecs=${FUZZEXECS:-100000}
fuzztime=${FUZZTIME:-${fuzzexecs}x}
minimizetime=${FUZZMINIMIZETIME:-0}
if [ "$fuzzexecs" != 0 ] && [ "$fuzztime" != 0 ]; then
  for pkg in $(go list ./...); do
    for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
      echo "fuzz $pkg $target ($fuzztime)"
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "$pkg" >"$log" 2>&1 ||
        { cat "$log"; echo "packages: $passed passed, $failed failed; fuzz target $target failed"; exit 1; }
    done
  done
fi
echo "packages: $passed passed, $failed failed"
