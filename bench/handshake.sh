#!/usr/bin/env bash
# Server CPU time per full TLS handshake (ECDSA P-256, X25519) over loopback: edgesim at 1,000
# and 100,000 tenants against nginx and a bare Go TLS server serving the same 1,000 certificates,
# driven by the same Go client (BenchmarkHandshake, BenchmarkHandshakePeer and
# BenchmarkHandshakeBareGo in cmd/edgesim). Servers run on CPU 0, the client on CPU 1. Prints a
# markdown table of medians over RUNS runs. See bench/README.md.
#
#   bash bench/handshake.sh                       # 3 runs of 5000 handshakes per case
#   RUNS=5 BENCHTIME=10000x bash bench/handshake.sh
#   SHORT=1 bash bench/handshake.sh               # without 100,000 tenants
#   PROFILE_DIR=/tmp/prof bash bench/handshake.sh # and then edgesim and bare Go runs with CPU and heap profiles
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHTIME=${BENCHTIME:-5000x}      # handshakes per case at 1,000 tenants
BIG_BENCHTIME=${BIG_BENCHTIME:-20000x} # at 100,000 tenants
RUNS=${RUNS:-3}
SHORT=${SHORT:-0}
PROFILE_DIR=${PROFILE_DIR:-}
TENANTS=1000 # nginx, and edgesim's reference size

work=$(mktemp -d "${TMPDIR:-/tmp}/edgesim-handshake.XXXXXX")
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill -TERM "$nginx_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pinning: servers on CPU 0 (BenchmarkHandshake pins its edgesim child itself), client on CPU 1.
on_server_cpu=()
on_client_cpu=()
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  on_server_cpu=(taskset -c 0)
  on_client_cpu=(taskset -c 1)
else
  echo "warning: no taskset or one CPU: server and client share the CPUs" >&2
fi

# nginx from Debian's packages when missing.
nginx_bin=$(command -v nginx || true)
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing nginx"
    apt-get update -qq >/dev/null
    apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  else
    echo "warning: nginx missing and not root: edgesim only, no ratio" >&2
  fi
fi

echo "building the benchmark"
go test -c -o "$work/edgesim.test" ./cmd/edgesim

if [ -n "$nginx_bin" ]; then
  echo "exporting $TENANTS tenants' certificates for nginx"
  EDGESIM_NGINX_EXPORT="$work/nginx" EDGESIM_NGINX_TENANTS=$TENANTS \
    "$work/edgesim.test" -test.run '^TestExportForNginx$' >/dev/null
  nginx_args=(-p "$work/nginx/" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log")
  "$nginx_bin" -t -q "${nginx_args[@]}"
  "${on_server_cpu[@]}" "$nginx_bin" "${nginx_args[@]}" &
  nginx_pid=$! # taskset executes nginx in its place: this is the master
  # The master writes its pid file once its sockets listen.
  for _ in $(seq 100); do
    [ -s "$work/nginx/nginx.pid" ] && break
    kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx/error.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/nginx/nginx.pid" ] || { echo "nginx did not start in 10 s" >&2; exit 1; }
  echo "$("$nginx_bin" -v 2>&1) on $(cat "$work/nginx/addr"), pid $nginx_pid"
fi

# bench runs the benchmark binary with the given flags, shows its result lines and keeps them.
bench() {
  "${on_client_cpu[@]}" "$work/edgesim.test" -test.run '^$' "$@" | tee "$work/run.txt" | grep '^Benchmark' || true
  grep -q '^PASS' "$work/run.txt" || { cat "$work/run.txt" >&2; exit 1; }
  grep '^Benchmark' "$work/run.txt" >>"$work/results.txt"
}

# Runs alternate between the servers so that drift in the machine's speed hits all of them.
for run in $(seq "$RUNS"); do
  echo "run $run of $RUNS: edgesim"
  bench -test.bench '^BenchmarkHandshake$/^tenants=1000$' -test.benchtime "$BENCHTIME"
  if [ "$SHORT" != 1 ]; then
    # At 100,000 tenants a collection marks ~0.3 GB of parsed certificates and comes every few
    # thousand handshakes: measure enough of them that the window holds several.
    bench -test.bench '^BenchmarkHandshake$/^tenants=100000$' -test.benchtime "$BIG_BENCHTIME"
  fi
  echo "run $run of $RUNS: bare Go"
  bench -test.bench '^BenchmarkHandshakeBareGo$' -test.benchtime "$BENCHTIME"
  if [ -n "$nginx_pid" ]; then
    echo "run $run of $RUNS: nginx"
    EDGESIM_PEER_ADDR=$(cat "$work/nginx/addr") EDGESIM_PEER_PID=$nginx_pid \
      EDGESIM_PEER_CA="$work/nginx/ca.pem" EDGESIM_PEER_TENANTS=$TENANTS \
      bench -test.bench '^BenchmarkHandshakePeer$' -test.benchtime "$BENCHTIME"
  fi
done

if [ -n "$PROFILE_DIR" ]; then
  mkdir -p "$PROFILE_DIR"
  echo "profiling edgesim and bare Go: $PROFILE_DIR/cpu-<tenants>.pprof, cpu-barego-1000.pprof, heap-…"
  cp "$work/edgesim.test" "$PROFILE_DIR/edgesim.test" # for go tool pprof's symbols
  EDGESIM_CPUPROFILE="$PROFILE_DIR/cpu.pprof" EDGESIM_MEMPROFILE="$PROFILE_DIR/heap.pprof" \
    "${on_client_cpu[@]}" "$work/edgesim.test" -test.run '^$' -test.bench '^BenchmarkHandshake(BareGo)?$//^tls=1.3$' \
    -test.benchtime "$BIG_BENCHTIME" | grep '^Benchmark' || true
fi

echo
nginx_version=
[ -n "$nginx_bin" ] && nginx_version=" against $("$nginx_bin" -v 2>&1 | sed 's/.*: //')"
echo "edgesim and bare Go$nginx_version: medians of $RUNS runs of $BENCHTIME handshakes ($BIG_BENCHTIME at 100,000 tenants); server on CPU 0, client on CPU 1"
echo
awk '
function median(list,   v, n, i, j, t) {
  n = split(list, v, " ")
  for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  server = (name ~ /^BenchmarkHandshakePeer\//) ? "nginx" : (name ~ /^BenchmarkHandshakeBareGo\//) ? "bare Go" : "edgesim"
  n = split(name, part, "/"); tenants = part[2]; sub(/tenants=/, "", tenants); tls = part[n]; sub(/tls=/, "", tls)
  key = server SUBSEP tenants SUBSEP tls
  for (i = 3; i <= NF; i++) {
    if ($i == "server-µs/handshake") cpu[key] = cpu[key] " " $(i - 1)
    if ($i == "server-RSS-MB") rss[key] = rss[key] " " $(i - 1)
    if ($i == "server-PSS-MB") pss[key] = pss[key] " " $(i - 1)
    if ($i == "server-cores") cores[key] = cores[key] " " $(i - 1)
  }
}
END {
  print "| server | tenants | TLS | CPU µs/handshake | ratio to nginx | ratio to bare Go | RSS MB | PSS MB | server core busy |"
  print "|---|---:|---|---:|---:|---:|---:|---:|---:|"
  nv = split("1.3 1.2 1.3-resumed", variants, " ")
  ns = split("nginx,bare Go,edgesim", servers, ",")
  nt = split("1000 100000", sizes, " ")
  for (a = 1; a <= nv; a++) for (s = 1; s <= ns; s++) for (t = 1; t <= nt; t++) {
    key = servers[s] SUBSEP sizes[t] SUBSEP variants[a]
    if (!(key in cpu)) continue
    ng = "nginx" SUBSEP "1000" SUBSEP variants[a]
    bg = "bare Go" SUBSEP "1000" SUBSEP variants[a]
    ratio = (ng in cpu) ? sprintf("%.2f", median(cpu[key]) / median(cpu[ng])) : "–"
    if (sizes[t] != "1000" && ratio != "–") ratio = ratio " (nginx at 1000)"
    bratio = (bg in cpu) ? sprintf("%.2f", median(cpu[key]) / median(cpu[bg])) : "–"
    if (sizes[t] != "1000" && bratio != "–") bratio = bratio " (at 1000)"
    printf "| %s | %s | %s | %.0f | %s | %s | %.1f | %.1f | %.0f%% |\n", servers[s], sizes[t], variants[a], median(cpu[key]), ratio,
      bratio, median(rss[key]), median(pss[key]), 100 * median(cores[key])
  }
  a = "edgesim" SUBSEP "1000" SUBSEP "1.3"; b = "edgesim" SUBSEP "100000" SUBSEP "1.3"
  if ((a in cpu) && (b in cpu))
    printf "\nedgesim TLS 1.3, CPU per handshake at 100,000 tenants / at 1,000: %.2f (goal ≤ 1.05)\n", median(cpu[b]) / median(cpu[a])
  print "goals: edgesim ≤ 0.95 × nginx, and close to bare Go (Go'"'"'s own floor); RSS at 1,000 tenants ≤ 25 MB (RSS: all of the server'"'"'s processes; PSS shares their common pages out)"
}' "$work/results.txt"
