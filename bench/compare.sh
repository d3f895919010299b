#!/usr/bin/env bash
# Performance side by side: edgesim against nginx, HAProxy, Caddy, a bare Go TLS server and NSD,
# on the same tenants and certificates, servers pinned to CPU 0, load generators to CPU 1, all
# traffic on 127.0.0.1. Installs the peers it lacks (Debian packages as root; Caddy from the Go
# module proxy), measures, and writes a markdown report (medians of RUNS runs, ratios within the
# run) to docs/BENCHMARKS.md. See bench/README.md.
#
#   bash bench/compare.sh                          # the default run: about 15 minutes on 2 cores
#   RUNS=5 SIZES="1000 100000 1000000" PEER_SIZES="1000 100000 1000000" bash bench/compare.sh
#   OUT=/tmp/b.md SKIP="startup dns" bash bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

RUNS=${RUNS:-3}                                # runs per measurement; the report gives medians
BENCHTIME=${BENCHTIME:-3000x}                  # handshakes per case at 1,000 tenants
BIG_BENCHTIME=${BIG_BENCHTIME:-45000x}         # per case at FLAT_SIZES: a GC comes every ~15k handshakes at 1M
KEYS=${KEYS:-"ecdsa-p256 rsa-2048"}            # certificate key types for the handshakes
PEERS=${PEERS:-"nginx haproxy caddy"}          # TLS peers
SIZES=${SIZES-"1000 100000 1000000"}          # edgesim: memory and start-up
PEER_SIZES=${PEER_SIZES-"1000 100000"}        # the TLS peers: memory and start-up
FLAT_SIZES=${FLAT_SIZES-"100000 1000000"}     # edgesim TLS 1.3 ECDSA handshakes beyond 1,000 tenants
START_LIMIT=${START_LIMIT:-120}                # seconds a server may take to start before it is reported as not up
MEM_LIMIT_MB=${MEM_LIMIT_MB:-$(awk '/^MemAvailable:/ {printf "%d", $2 / 1024 * 0.6}' /proc/meminfo)} # a starting server above this RSS is stopped
REPEAT_LIMIT=${REPEAT_LIMIT:-30}               # a peer slower than this to start is started once only
DNS_TENANTS=${DNS_TENANTS:-1000}               # zones served by edgesim and NSD
DNS_SECONDS=${DNS_SECONDS:-10}                 # dnsperf -l
CADDY_LIMIT=${CADDY_LIMIT:-600}                # seconds for go install of Caddy
SKIP=${SKIP:-}                                 # sections to leave out: handshake startup dns sni crypto driver
OUT=${OUT:-docs/BENCHMARKS.md}
CACHE=${EDGESIM_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgesim-bench} # Caddy's binary
DATA_PREFIX=${EDGESIM_BENCH_DATA:-${TMPDIR:-/tmp}/edgesim-bench-data-ecdsa} # as the Go benchmarks'
export EDGESIM_BENCH_DATA=$DATA_PREFIX

skipped() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
started=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/edgesim-compare.XXXXXX")
R=$work/results # one record per line: <section> <fields…>
: >"$R"
pids=()
stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do stop_pid "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

on0=(); on1=()
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  on0=(taskset -c 0); on1=(taskset -c 1)
else
  log "warning: no taskset or one CPU: servers and load generators share the CPUs"
fi

# ---- peers ------------------------------------------------------------------------------------
declare -A why_not # peer -> why it is not measured
need_pkgs=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || need_pkgs+=(nsd)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >"$work/apt.log" 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >"$work/apt.log" 2>&1 || log "apt-get install failed: $(tail -2 "$work/apt.log")"; }
  else
    log "warning: missing ${need_pkgs[*]} and not root"
  fi
fi
PATH=$PATH:/usr/sbin
# Debian starts the services of the packages just installed; they are not what is measured, and
# NSD's would hold port 53. Services that were there before are left alone.
for pkg in "${need_pkgs[@]}"; do
  case $pkg in nginx*) svc=nginx ;; haproxy | nsd) svc=$pkg ;; *) continue ;; esac
  command -v systemctl >/dev/null && systemctl stop "$svc" >/dev/null 2>&1 || true
done
for p in nginx haproxy nsd dnsperf; do command -v $p >/dev/null || why_not[$p]="not installed (apt-get install failed, see above)"; done

caddy_bin=$CACHE/bin/caddy
if [[ " $PEERS " == *" caddy "* ]] && [ ! -x "$caddy_bin" ]; then
  log "building Caddy: go install github.com/caddyserver/caddy/v2/cmd/caddy@latest (limit ${CADDY_LIMIT}s)"
  mkdir -p "$CACHE/bin"
  if ! (cd "$work" && GOBIN=$CACHE/bin GOFLAGS=-mod=mod timeout "$CADDY_LIMIT" go install github.com/caddyserver/caddy/v2/cmd/caddy@latest) >"$work/caddy-build.log" 2>&1; then
    why_not[caddy]="go install failed or took over ${CADDY_LIMIT} s: $(tail -1 "$work/caddy-build.log" | cut -c1-120)"
    log "Caddy: ${why_not[caddy]}"
  fi
fi

log "building edgesim and its benchmarks"
go build -o "$work/edgesim" ./cmd/edgesim
go test -c -o "$work/edgesim.test" ./cmd/edgesim
# The same with GOEXPERIMENT=boringcrypto (BoringSSL's RSA and ECDSA through cgo): what a faster
# signature would give edgesim. Optional: needs cgo and a C compiler.
boring=
if [ "${BORING:-1}" = 1 ] && CGO_ENABLED=1 GOEXPERIMENT=boringcrypto timeout 300 go test -c -o "$work/edgesim-boring.test" ./cmd/edgesim >"$work/boring.log" 2>&1; then
  boring=$work/edgesim-boring.test
else
  [ "${BORING:-1}" = 1 ] && log "no boringcrypto build: $(tail -1 "$work/boring.log")"
fi

# ---- versions ---------------------------------------------------------------------------------
{
  echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-}"), Linux $(uname -r)"
  echo "edgesim: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), $(go version | awk '{print $3}')"
  command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
  command -v haproxy >/dev/null && echo "HAProxy: $(haproxy -v | head -1 | awk '{print $3}')"
  [ -x "$caddy_bin" ] && echo "Caddy: $("$caddy_bin" build-info | awk '$1 == "mod" {print $3}') (go install …@latest, built with $("$caddy_bin" build-info | awk '$1 == "go" {print $2}'))"
  command -v nsd >/dev/null && echo "NSD: $(nsd -v 2>&1 | head -1 | awk '{print $3}')"
  command -v dnsperf >/dev/null && echo "dnsperf: $(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null || echo '?')"
  echo "OpenSSL: $(openssl version | awk '{print $2}')"
} >"$work/versions"
cat "$work/versions" >&2

# ---- helpers ----------------------------------------------------------------------------------
# rss_mb PID: VmRSS of PID and its descendants, MiB.
rss_mb() {
  local total=0 p kb
  for p in $(tree_pids "$1"); do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  awk -v k=$total 'BEGIN {printf "%.1f", k / 1024}'
}
tree_pids() { # PID and its descendants
  local all=($1) i=0
  while [ $i -lt ${#all[@]} ]; do
    all+=($(cat /proc/${all[$i]}/task/*/children 2>/dev/null || true)); i=$((i + 1))
  done
  echo "${all[@]}"
}
cpu_ticks() { # user+system clock ticks of PID and its descendants
  local total=0 p t
  for p in $(tree_pids "$1"); do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
    total=$((total + ${t:-0}))
  done
  echo $total
}
port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# start_peer NAME DIR: starts the peer configured in DIR on CPU 0; sets peer_pid.
start_peer() {
  local name=$1 dir=$2
  case $name in
  nginx) "${on0[@]}" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/nginx.log" 2>&1 & ;;
  haproxy) "${on0[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 & ;;
  caddy) GOMAXPROCS=1 HOME=$dir/caddy-data XDG_DATA_HOME=$dir/caddy-data XDG_CONFIG_HOME=$dir/caddy-data \
    "${on0[@]}" "$caddy_bin" run --config "$dir/caddy.json" >"$dir/caddy.log" 2>&1 & ;;
  esac
  peer_pid=$!
  pids+=("$peer_pid")
}

# wait_up PID ADDR LIMIT [LOG PATTERN]: waits until ADDR accepts connections (and LOG has
# PATTERN); prints the seconds it took, or "timeout" / "exited" / "memory" (RSS over MEM_LIMIT_MB).
wait_up() {
  local pid=$1 addr=$2 limit=$3 logf=${4:-} pat=${5:-} t0 now i=0
  t0=$(date +%s.%N)
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then echo exited; return; fi
    i=$((i + 1))
    if [ $((i % 20)) = 0 ] && awk -v r="$(rss_mb "$pid")" -v l="$MEM_LIMIT_MB" 'BEGIN {exit !(r > l)}'; then echo memory; return; fi
    if [ -z "$pat" ] || grep -q "$pat" "$logf" 2>/dev/null; then
      if port_open "$addr"; then break; fi
    fi
    now=$(date +%s.%N)
    if awk -v a="$now" -v b="$t0" -v l="$limit" 'BEGIN {exit !(a - b > l)}'; then echo timeout; return; fi
    sleep 0.05
  done
  now=$(date +%s.%N)
  awk -v a="$now" -v b="$t0" 'BEGIN {printf "%.2f", a - b}'
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

export_peers() { # export_peers KEY N DIR
  EDGESIM_CMP_EXPORT=$3 EDGESIM_CMP_KEY=$1 EDGESIM_CMP_TENANTS=$2 \
    "${on1[@]}" "$work/edgesim.test" -test.run '^TestExportPeers$' >"$work/export.log" 2>&1 ||
    { cat "$work/export.log" >&2; return 1; }
}

# hsbench LABEL ENV…: runs BenchmarkHandshakeCompare with ENV, keeps "hs LABEL line" records.
hsbench() {
  local label=$1 bin=$work/edgesim.test; shift
  [ "$label" = edgesim-boring ] && bin=$boring
  if env "$@" "${on1[@]}" "$bin" -test.run '^$' -test.bench '^BenchmarkHandshakeCompare$' \
    -test.benchtime "${HS_BENCHTIME:-$BENCHTIME}" >"$work/run.txt" 2>&1 && grep -q '^PASS' "$work/run.txt"; then
    grep '^Benchmark' "$work/run.txt" | sed "s|^|hs $label |" >>"$R"
  else
    log "$label: failed: $(grep -E 'FAIL|Error|error' "$work/run.txt" | head -3)"
    echo "hsfail $label $(grep -E 'Error|error|fatal' "$work/run.txt" | head -1 | tr -s ' ' | cut -c1-150)" >>"$R"
  fi
}

# ---- 1. TLS handshakes at 1,000 tenants, and edgesim's at FLAT_SIZES --------------------------
declare -A peer_up # "<peer> <key>" -> pid
if ! skipped handshake; then
  for key in $KEYS; do
    d=$work/peers-$key
    log "exporting 1,000 tenants' $key certificates for $PEERS"
    export_peers "$key" 1000 "$d"
    for p in $PEERS; do
      [ -n "${why_not[$p]:-}" ] && continue
      start_peer "$p" "$d"
      up=$(wait_up "$peer_pid" "$(cat "$d/$p.addr")" "$START_LIMIT")
      if [[ $up =~ ^[0-9] ]]; then
        peer_up["$p $key"]=$peer_pid
      else
        why_not[$p]="did not start ($up) with $key: $(tail -2 "$d/$p"*.log 2>/dev/null | tr '\n' ' ' | cut -c1-150)"
        log "$p: ${why_not[$p]}"
      fi
    done
  done
  for run in $(seq "$RUNS"); do
    for key in $KEYS; do
      # TLS 1.2 resumption does no public-key operation, so it is the same for both key types.
      variants=1.3,1.2,1.3-resumed
      [ "$key" = ecdsa-p256 ] && variants=$variants,1.2-resumed
      log "handshakes, run $run of $RUNS, $key: edgesim, bare Go, $PEERS"
      hsbench edgesim EDGESIM_CMP_SERVER=edgesim EDGESIM_CMP_KEY=$key EDGESIM_CMP_TENANTS=1000 EDGESIM_CMP_VARIANTS=$variants
      hsbench bare-Go EDGESIM_CMP_SERVER=barego EDGESIM_CMP_KEY=$key EDGESIM_CMP_TENANTS=1000 EDGESIM_CMP_VARIANTS=$variants
      if [ -n "$boring" ]; then
        hsbench edgesim-boring EDGESIM_CMP_SERVER=edgesim EDGESIM_CMP_KEY=$key EDGESIM_CMP_TENANTS=1000 EDGESIM_CMP_VARIANTS=1.3,1.2
      fi
      for p in $PEERS; do
        pid=${peer_up["$p $key"]:-}
        [ -z "$pid" ] && continue
        hsbench "$p" EDGESIM_CMP_SERVER=peer EDGESIM_CMP_KEY=$key EDGESIM_PEER_ADDR="$(cat "$work/peers-$key/$p.addr")" \
          EDGESIM_PEER_PID="$pid" EDGESIM_PEER_CA="$work/peers-$key/ca.pem" EDGESIM_CMP_VARIANTS=$variants
      done
    done
    for n in $FLAT_SIZES; do
      log "handshakes, run $run of $RUNS: edgesim at $n tenants"
      HS_BENCHTIME=$BIG_BENCHTIME hsbench edgesim EDGESIM_CMP_SERVER=edgesim EDGESIM_CMP_KEY=ecdsa-p256 \
        EDGESIM_CMP_TENANTS="$n" EDGESIM_CMP_VARIANTS=1.3
    done
  done
  for k in "${!peer_up[@]}"; do stop_pid "${peer_up[$k]}"; done
fi
for p in $PEERS; do [ -n "${why_not[$p]:-}" ] && echo "why $p ${why_not[$p]}" >>"$R"; done

# ---- 2. memory and start-up -------------------------------------------------------------------
if ! skipped startup; then
  for n in $SIZES; do
    data=$DATA_PREFIX-$n
    # .complete is written once an issuing run has printed its banner: a directory left by one
    # that was stopped half-way is issued again, not timed as warm.
    if [ ! -f "$data/.complete" ]; then
      log "issuing $n tenants' certificates into $data (once; start-up is measured with this warm data dir)"
      "$work/edgesim" serve --tenants "$n" --key-type ecdsa-p256 --data "$data" --https-addr 127.0.0.1:0 \
        --xmpp-addr 127.0.0.1:0 --sip-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/issue.log" 2>&1 &
      ipid=$!; pids+=("$ipid")
      for _ in $(seq 18000); do grep -q 'press Ctrl-C' "$work/issue.log" && break; kill -0 $ipid 2>/dev/null || break; sleep 0.1; done
      grep -q 'press Ctrl-C' "$work/issue.log" && touch "$data/.complete"
      stop_pid "$ipid"
    fi
    for run in $(seq "$RUNS"); do
      log "start-up, $n tenants, run $run of $RUNS: edgesim"
      port=$(free_port)
      GOMAXPROCS=1 "${on0[@]}" "$work/edgesim" serve --tenants "$n" --key-type ecdsa-p256 --data "$data" \
        --https-addr "127.0.0.1:$port" --xmpp-addr 127.0.0.1:0 --sip-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 \
        --metrics-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/edgesim-start.log" 2>&1 &
      spid=$!; pids+=("$spid")
      up=$(wait_up "$spid" "127.0.0.1:$port" "$START_LIMIT" "$work/edgesim-start.log" 'press Ctrl-C')
      sleep 1 # settle
      echo "mem edgesim $n $up $(rss_mb "$spid")" >>"$R"
      stop_pid "$spid"
      if [ "$n" -ge 1000000 ]; then # loading is parallel: the same on both cores, for comparison
        log "start-up, $n tenants, run $run of $RUNS: edgesim on both cores"
        "$work/edgesim" serve --tenants "$n" --key-type ecdsa-p256 --data "$data" \
          --https-addr "127.0.0.1:$port" --xmpp-addr 127.0.0.1:0 --sip-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 \
          --metrics-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/edgesim-start.log" 2>&1 &
        spid=$!; pids+=("$spid")
        up=$(wait_up "$spid" "127.0.0.1:$port" "$START_LIMIT" "$work/edgesim-start.log" 'press Ctrl-C')
        sleep 1
        echo "mem edgesim-2cores $n $up $(rss_mb "$spid")" >>"$R"
        stop_pid "$spid"
      fi
    done
  done
  for n in $PEER_SIZES; do
    d=$work/startup-$n
    log "exporting $n tenants for the peers' start-up"
    if ! export_peers ecdsa-p256 "$n" "$d"; then echo "mem export $n failed" >>"$R"; continue; fi
    for run in $(seq "$RUNS"); do
      for p in $PEERS; do
        if [ -n "${why_not[$p]:-}" ] && [[ ${why_not[$p]} != did\ not\ start* ]]; then continue; fi
        # One bounded attempt is enough for a peer that did not come up; one run for a slow one.
        [ "$run" -gt 1 ] && awk -v p="$p" -v n="$n" -v l="$REPEAT_LIMIT" '$1 == "mem" && $2 == p && $3 == n && ($4 !~ /^[0-9]/ || $4 + 0 > l) {f = 1} END {exit !f}' "$R" && continue
        log "start-up, $n tenants, run $run of $RUNS: $p"
        start_peer "$p" "$d"
        up=$(wait_up "$peer_pid" "$(cat "$d/$p.addr")" "$START_LIMIT")
        sleep 1
        echo "mem $p $n $up $(rss_mb "$peer_pid")" >>"$R"
        stop_pid "$peer_pid"
      done
    done
    rm -rf "$d"
  done
fi

# ---- 3. DNS: edgesim's against NSD, dnsperf on CPU 1 ------------------------------------------
if ! skipped dns && [ -z "${why_not[dnsperf]:-}" ]; then
  z=$work/zones
  "$work/edgesim" dns export --tenants "$DNS_TENANTS" --out "$z/zones" >/dev/null
  awk -v n="$DNS_TENANTS" 'BEGIN {srand(1); for (i = 1; i <= n; i++) k[i] = i; for (i = n; i > 1; i--) {j = int(rand() * i) + 1; t = k[i]; k[i] = k[j]; k[j] = t}
    for (i = 1; i <= n; i++) printf "_collab-edge._tls.tenant-%d.example SRV\n", k[i]}' >"$z/queries"
  nsd_port=$(free_port)
  {
    echo "server:"
    echo "  ip-address: 127.0.0.1@$nsd_port"
    echo "  server-count: 1"
    echo "  username: \"\""
    echo "  chroot: \"\""
    echo "  zonesdir: \"$z/zones\""
    echo "  database: \"\""
    echo "  zonelistfile: \"$z/zone.list\""
    echo "  xfrdfile: \"$z/xfrd.state\""
    echo "  xfrdir: \"$z\""
    echo "  pidfile: \"$z/nsd.pid\""
    echo "  logfile: \"$z/nsd.log\""
    echo "  hide-version: yes"
    echo "  verbosity: 0"
    echo "remote-control:"
    echo "  control-enable: no"
    for f in "$z"/zones/*.zone; do b=$(basename "$f" .zone); printf 'zone:\n  name: "%s"\n  zonefile: "%s.zone"\n' "$b" "$b"; done
  } >"$z/nsd.conf"
  edns_port=$(free_port)
  data=$DATA_PREFIX-$DNS_TENANTS
  dns_query() { # dns_query LABEL PID PORT
    local t0 t1 out lost
    t0=$(cpu_ticks "$2")
    out=$("${on1[@]}" dnsperf -s 127.0.0.1 -p "$3" -d "$z/queries" -l "$DNS_SECONDS" -c 1 2>&1) || true
    t1=$(cpu_ticks "$2")
    local done qps
    done=$(echo "$out" | awk '/Queries completed:/ {print $3}')
    qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
    lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
    if [ -z "$done" ] || [ "$done" = 0 ]; then log "dnsperf against $1: $(echo "$out" | tail -3)"; return; fi
    echo "dns $1 $DNS_TENANTS $(awk -v t=$((t1 - t0)) -v q="$done" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t * 1e6 / hz / q}') $qps ${lost:-0} $(rss_mb "$2")" >>"$R"
  }
  for run in $(seq "$RUNS"); do
    log "DNS, run $run of $RUNS: edgesim, NSD"
    GOMAXPROCS=1 "${on0[@]}" "$work/edgesim" serve --tenants "$DNS_TENANTS" --key-type ecdsa-p256 --data "$data" \
      --https-addr 127.0.0.1:0 --xmpp-addr 127.0.0.1:0 --sip-addr 127.0.0.1:0 --dns-addr "127.0.0.1:$edns_port" \
      --metrics-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$work/edgesim-dns.log" 2>&1 &
    epid=$!; pids+=("$epid")
    up=$(wait_up "$epid" "127.0.0.1:$edns_port" "$START_LIMIT" "$work/edgesim-dns.log" 'press Ctrl-C')
    [[ $up =~ ^[0-9] ]] && dns_query edgesim "$epid" "$edns_port" || log "edgesim DNS: $up"
    stop_pid "$epid"
    if [ -z "${why_not[nsd]:-}" ]; then
      "${on0[@]}" nsd -d -c "$z/nsd.conf" >"$z/nsd.out" 2>&1 &
      npid=$!; pids+=("$npid")
      up=$(wait_up "$npid" "127.0.0.1:$nsd_port" "$START_LIMIT")
      [[ $up =~ ^[0-9] ]] && dns_query NSD "$npid" "$nsd_port" || log "NSD: $up $(tail -2 "$z/nsd.out" "$z/nsd.log" 2>/dev/null)"
      stop_pid "$npid"
    fi
  done
fi

# ---- 4. SNI lookup, 5. crypto per operation, 6. the driver ------------------------------------
if ! skipped sni; then
  log "SNI: go test ./sni -bench 'Lookup\$|VersusCertmagic' -count $RUNS"
  go test ./sni -run '^$' -bench 'Lookup$|VersusCertmagic' -benchtime 1s -count "$RUNS" 2>&1 |
    grep '^Benchmark' | sed 's/^/sni /' >>"$R" || true
fi
if ! skipped crypto; then
  log "crypto: openssl speed and BenchmarkServerCrypto on CPU 0"
  for run in $(seq "$RUNS"); do
    "${on0[@]}" openssl speed -seconds 2 rsa2048 ecdsap256 ecdhx25519 2>/dev/null | awk '
      /^rsa *2048 bits/ && NF >= 7 {print "crypto openssl rsa2048-sign", 1e6 / $6}
      /256 bits ecdsa \(nistp256\)/ {print "crypto openssl ecdsap256-sign", 1e6 / $7}
      /253 bits ecdh \(X25519\)/ {print "crypto openssl x25519-op", 1e6 / $6}' >>"$R"
    GOMAXPROCS=1 "${on0[@]}" "$work/edgesim.test" -test.run '^$' -test.bench '^BenchmarkServerCrypto$' -test.benchtime 1s 2>&1 |
      awk '/^Benchmark/ {n = $1; sub(/.*op=/, "", n); sub(/-[0-9]+$/, "", n); print "crypto go", n, $3 / 1000}' >>"$R"
    if [ -n "$boring" ]; then
      GOMAXPROCS=1 "${on0[@]}" "$boring" -test.run '^$' -test.bench '^BenchmarkServerCrypto$' -test.benchtime 1s 2>&1 |
        awk '/^Benchmark/ {n = $1; sub(/.*op=/, "", n); sub(/-[0-9]+$/, "", n); print "crypto boring", n, $3 / 1000}' >>"$R"
    fi
  done
fi
if ! skipped driver; then
  log "driver: BenchmarkDriverLogin"
  "$work/edgesim.test" -test.run '^$' -test.bench '^BenchmarkDriverLogin$' -test.benchtime 3000x -test.count "$RUNS" 2>&1 |
    grep '^Benchmark' | sed 's/^/driver /' >>"$R" || true
fi

elapsed=$(( $(date +%s) - started ))
cp "$R" "$work/results.txt"
mkdir -p "$(dirname "$OUT")"
MEM_LIMIT_MB=$MEM_LIMIT_MB RUNS=$RUNS BENCHTIME=$BENCHTIME BIG_BENCHTIME=$BIG_BENCHTIME START_LIMIT=$START_LIMIT DNS_SECONDS=$DNS_SECONDS \
  DNS_TENANTS=$DNS_TENANTS ELAPSED=$elapsed SIZES=$SIZES PEER_SIZES=$PEER_SIZES FLAT_SIZES=$FLAT_SIZES \
  bash bench/report.sh "$work/results.txt" "$work/versions" >"$OUT"
[ -n "${KEEP_RESULTS:-}" ] && cp "$work/results.txt" "$KEEP_RESULTS"
log "wrote $OUT in ${elapsed}s"
