#!/usr/bin/env bash
# Side by side in one run: sinkhole, dnsdist and Unbound, configured equivalently (a TikTok list
# blocked with NXDOMAIN for 127.10.0.0/16 only, a packet/message cache, everything else forwarded
# to the same loopback upstream), plus the two bare loops that are the kernel's floor. Each server
# is pinned to one core, the load generator to another (the upstream beside it, or on a third
# core where there is one); each load runs three times, round-robin over the servers so that
# noise from the rest of the machine falls on all of them alike, and the table shows medians.
# CPU time comes from /proc/PID/stat around each run.
#
# usage: benches/compare.sh [--quick] [--only LOADS]   (from the repository root; see benches/README.md)
#   --quick        one run of 3 s per load: a smoke test of the script, not a measurement
#   --only LOADS   a comma-separated subset of dnsperf,mix,unique,dot,doh (default: the first three):
#                  dnsperf on mix, replay on mix (saturation and 90 %), replay on unique (cache
#                  misses), dnsperf on mix over DNS over TLS, and h2load on mix over DNS over HTTPS
#                  (HTTP/2 GET; see benches/README.md for why not dnsperf -m doh)
# Environment: COMPARE_DIR (scratch folder, default a new /tmp/sinkhole-compare.*),
#   COMPARE_PORT (first of 12 consecutive ports, default 26400), SERVER_CORE (0), LOAD_CORE (1),
#   UPSTREAM_CORE (2 where there are 3 cores or more, else LOAD_CORE).
#
# Everything stays on loopback: the servers listen on 127.0.0.1 and forward only to the local
# upstream; dnsdist's security poll is off and Unbound forwards "." to the upstream, never to the
# root servers. Every command runs under `timeout`. Exits non-zero only if something failed to
# run (a build, a server that does not start or dies, a load that fails); a missed target is
# reported, not an error.
set -euo pipefail

# ---------------------------------------------------------------- settings
QUICK=0
ONLY=dnsperf,mix,unique
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --only)
      ONLY=${2:-}
      shift
      [[ $ONLY =~ ^(dnsperf|mix|unique|dot|doh)(,(dnsperf|mix|unique|dot|doh))*$ ]] \
        || { echo "compare.sh: --only takes a comma-separated subset of dnsperf,mix,unique,dot,doh" >&2; exit 2; }
      ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
wanted() { [[ ,$ONLY, == *,$1,* ]]; }
# Whether the servers also listen for DNS over TLS or HTTPS: only when a load needs it, so that the
# UDP loads run on the same configs as they always have.
encrypted() { wanted dot || wanted doh; }
if ((QUICK)); then
  RUNS=1 SECS=3 UNIQUE_COUNT=30000
else
  RUNS=3 SECS=8 UNIQUE_COUNT=200000 # one full pass of the unique file: every query a miss
fi
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
# The upstream shares the load generator's core on a 2-core machine (with a warm cache it is idle
# but for the cache-miss loads); where there is a third core it gets its own, so that the
# cache-miss loads are not bounded by one core doing replay and upstream both.
if [ -z "${UPSTREAM_CORE:-}" ]; then
  UPSTREAM_CORE=$LOAD_CORE
  (($(nproc) >= 3)) && UPSTREAM_CORE=2
fi
BASE=${COMPARE_PORT:-26400}
UP_PORT=$BASE            # bench-upstream
declare -A PORT=([sinkhole]=$((BASE + 1)) [dnsdist]=$((BASE + 2)) [unbound]=$((BASE + 3))
  [bare-plain]=$((BASE + 4)) [bare-mmsg]=$((BASE + 5)))
# DNS over TLS and over HTTPS, for the servers that forward and cache.
declare -A DOT_PORT=([sinkhole]=$((BASE + 6)) [dnsdist]=$((BASE + 7)) [unbound]=$((BASE + 8)))
declare -A DOH_PORT=([sinkhole]=$((BASE + 9)) [dnsdist]=$((BASE + 10)) [unbound]=$((BASE + 11)))
SERVERS=(sinkhole dnsdist unbound)  # the ones that forward and cache
FLOORS=(bare-plain bare-mmsg)       # the ones that only flip the header
STAFF=127.10.0.5                    # a client inside the blocking policy
OTHER=127.20.0.5                    # a client outside it
declare -A PID=()
STARTED=()                          # every process we started, killed on exit

log() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
# Kill exactly what we started, by pid, on any exit (success, failure, Ctrl-C).
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
need() { # need CMD DEBIAN_PACKAGE: install from Debian if missing
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "$1 missing: install the Debian package $2 (needs root)"
  log "installing $2"
  apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null 2>&1; } \
    || die "apt-get install $2 failed"
  command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 not found"
}

prerequisites() {
  grep -qs '^name = "sinkhole"' Cargo.toml || die "run from the repository root"
  local cpus
  cpus=$(nproc)
  ((cpus >= 2)) || die "needs 2 cores (server on one, load on the other), found $cpus"
  need dnsperf dnsperf
  need dnsdist dnsdist
  need unbound unbound
  need dig dnsutils
  need taskset util-linux
  need timeout coreutils
  need python3 python3
  if encrypted; then
    need kdig knot-dnsutils
    need openssl openssl
    need h2load nghttp2-client
  fi
}

build() {
  log "building sinkhole, bench-upstream and bare-loop (release)"
  cargo build --release --quiet -p sinkhole --bin sinkhole -p sinkhole-bench --bin bench-upstream --bin bare-loop \
    >"$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log" >&2; die "release build failed"; }
  local target
  target=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  SINKHOLE=$target/release/sinkhole
  UPSTREAM=$target/release/bench-upstream
  BARE=$target/release/bare-loop
  "$SINKHOLE" replay --help >/dev/null 2>&1 || die "this sinkhole has no 'replay' subcommand"
}

# A listener already on one of our ports would answer in our servers' place and fake the figures.
ports_free() {
  python3 - "$UP_PORT" "${PORT[@]}" "${DOT_PORT[@]}" "${DOH_PORT[@]}" <<'PY' \
    || die "a port in $BASE..$((BASE + 11)) is taken: set COMPARE_PORT"
import socket, sys
for port in map(int, sys.argv[1:]):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        # As the servers bind: connections of a previous run in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # raises when taken
        s.close()
PY
}

# ---------------------------------------------------------------- workloads
# The files of issue 5, byte for byte as ../shared/bench/mix.py writes them (same generator, same
# seed): mix (200k lines, 80 % allowed names Zipf-like over 20k names, 70 % A / 30 % AAAA, 20 %
# TikTok hostnames), unique (200k distinct names, each a cache miss) and the blocklist.
workloads() {
  log "writing the workload files"
  python3 - "$WORK/mix.txt" "$WORK/unique.txt" "$WORK/block.txt" <<'PY'
import random
import sys

APEXES = ["tiktok.com", "tiktokv.com", "tiktokcdn.com", "tiktokcdn-us.com", "byteoversea.com",
          "ibytedtos.com", "ibyteimg.com", "musical.ly", "muscdn.com", "ttwstatic.com", "tiktokw.us",
          "byteimg.com", "tiktokv.us", "bytedance.map.fastly.net"]
PREFIXES = ["www", "m", "v16m", "v19", "api16-normal-c-useast1a", "log", "mon", "p16-sign-va",
            "sf16-website-login", "lf16-tiktok-web", "webcast", "im-api", "abtest-va"]

mix_path, unique_path, list_path = sys.argv[1:4]
rnd = random.Random(20230317)
tiktok = [f"{p}.{a}" for a in APEXES for p in PREFIXES]
with open(mix_path, "w") as f:
    for _ in range(200_000):
        if rnd.random() < 0.2:
            f.write(f"{rnd.choice(tiktok)} {'A' if rnd.random() < 0.7 else 'AAAA'}\n")
        else:
            n = int(rnd.paretovariate(1.0)) % 20_000
            f.write(f"www.site{n:05d}.example {'A' if rnd.random() < 0.7 else 'AAAA'}\n")
with open(unique_path, "w") as f:
    for i in range(200_000):
        f.write(f"u{i:06d}.miss.example A\n")
with open(list_path, "w") as f:
    f.write("\n".join(APEXES) + "\n")
PY
  wanted doh && doh_uris
  return 0
}

# The mix as DoH GET requests (RFC 8484 4.1: the query, id 0, in base64url) for h2load, one file
# per server (the URIs carry the port).
doh_uris() {
  python3 - "$WORK/mix.txt" "$WORK/doh-paths.txt" <<'PY'
import base64
import struct
import sys

src, dst = sys.argv[1:3]
with open(src) as lines, open(dst, "w") as out:
    for line in lines:
        name, qtype = line.split()
        query = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
        for label in name.strip(".").split("."):
            query += bytes([len(label)]) + label.encode()
        query += b"\0" + struct.pack(">HH", 1 if qtype == "A" else 28, 1)
        out.write("/dns-query?dns=" + base64.urlsafe_b64encode(query).decode().rstrip("=") + "\n")
PY
  local s
  for s in "${SERVERS[@]}"; do
    sed "s|^|https://127.0.0.1:${DOH_PORT[$s]}|" "$WORK/doh-paths.txt" >"$WORK/doh-uris.$s.txt"
  done
}

# Every cache-miss run needs names no server has seen: pass N renames the unique file's names to
# uNNNNNN.pN.miss.example (pass 0 is the file itself). Caches are per server, so all servers can
# use the same pass.
unique_pass() { # unique_pass N -> path
  local f=$WORK/unique.p$1.txt
  if [ "$1" = 0 ]; then f=$WORK/unique.txt; elif [ ! -f "$f" ]; then
    sed "s/\.miss\.example /.p$1.miss.example /" "$WORK/unique.txt" >"$f"
  fi
  echo "$f"
}

# ---------------------------------------------------------------- configs
# One self-signed certificate for all three servers (dnsperf does not check it; the sanity check
# below does, with kdig and this file as the CA).
certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/openssl.log" 2>&1 \
    || { cat "$WORK/openssl.log" >&2; die "openssl could not make the bench certificate"; }
}

configs() {
  local up=127.0.0.1:$UP_PORT
  encrypted && certificate
  # sinkhole: as in ../shared/bench/peers.sh; one UDP worker (the peers run one thread too),
  # metrics off (dnsdist and Unbound export nothing here either), the hit log to a file.
  cat >"$WORK/sinkhole.toml" <<EOF
[server]
listen = ["127.0.0.1:${PORT[sinkhole]}"]
metrics = "off"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["$up"]
timeout_ms = 1500
[cache]
entries = 100000
[lists.tiktok]
files = ["$WORK/block.txt"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
answer = "nxdomain"
[log]
hits = "$WORK/hits.jsonl"
EOF
  if encrypted; then
    # h2load cannot choose its source address: 127.0.0.1 joins the blocking policy in every server.
    sed -i 's|^clients = \["127.10.0.0/16"\]|clients = ["127.10.0.0/16", "127.0.0.1/32"]|' "$WORK/sinkhole.toml"
    # Keys of [server], spliced in after its header.
    sed -i "/^\[server\]/a tls = [\"127.0.0.1:${DOT_PORT[sinkhole]}\"]\nhttps = [\"127.0.0.1:${DOH_PORT[sinkhole]}\"]\ncertificate = \"$WORK/cert.pem\"\nkey = \"$WORK/key.pem\"" \
      "$WORK/sinkhole.toml"
  fi

  # dnsdist: packet cache, the block as a rule (client netmask AND name suffix -> NXDOMAIN).
  # The 4 MiB receive buffer is what sinkhole and the bare loops ask for: without it, loss at
  # saturation would measure buffer sizes rather than servers.
  cat >"$WORK/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:${PORT[dnsdist]}")
setACL({"127.0.0.0/8"})
setUDPSocketBufferSizes(4194304, 0)
newServer({address="$up", healthCheckMode="lazy"})
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
smn = newSuffixMatchNode()
for line in io.lines("$WORK/block.txt") do if line ~= "" then smn:add(line) end end
nmg = newNMG(); nmg:addMask("127.10.0.0/16")
addAction(AndRule({NetmaskGroupRule(nmg, true), SuffixMatchNodeRule(smn)}), RCodeAction(DNSRCode.NXDOMAIN))
EOF
  if encrypted; then
    cat >>"$WORK/dnsdist.conf" <<EOF
nmg:addMask("127.0.0.1/32")
addTLSLocal("127.0.0.1:${DOT_PORT[dnsdist]}", "$WORK/cert.pem", "$WORK/key.pem")
addDOHLocal("127.0.0.1:${DOH_PORT[dnsdist]}", "$WORK/cert.pem", "$WORK/key.pem", "/dns-query")
EOF
  fi

  # Unbound: one thread, 64 MB caches, a view with always_nxdomain zones for the staff subnet,
  # everything forwarded to the loopback upstream (never the root servers), no validator.
  # num-queries-per-thread 4096 matches sinkhole's max_inflight, so that the cache-miss run
  # compares servers, not queue bounds.
  {
    printf 'server:\n  interface: 127.0.0.1@%s\n  outgoing-interface: 127.0.0.1\n' "${PORT[unbound]}"
    if encrypted; then
      printf '  interface: 127.0.0.1@%s\n  interface: 127.0.0.1@%s\n' "${DOT_PORT[unbound]}" "${DOH_PORT[unbound]}"
      printf '  tls-port: %s\n  https-port: %s\n' "${DOT_PORT[unbound]}" "${DOH_PORT[unbound]}"
      printf '  tls-service-key: "%s/key.pem"\n  tls-service-pem: "%s/cert.pem"\n' "$WORK" "$WORK"
      printf '  http-endpoint: "/dns-query"\n  access-control-view: 127.0.0.1/32 staff\n'
    fi
    printf '  access-control: 127.0.0.0/8 allow\n  access-control-view: 127.10.0.0/16 staff\n'
    printf '  do-not-query-localhost: no\n  chroot: ""\n  username: ""\n  directory: "%s"\n' "$WORK"
    printf '  pidfile: "%s/unbound.pid"\n  use-syslog: no\n  logfile: ""\n' "$WORK"
    printf '  num-threads: 1\n  msg-cache-size: 64m\n  rrset-cache-size: 64m\n'
    printf '  num-queries-per-thread: 4096\n  outgoing-range: 8192\n  so-rcvbuf: 4m\n'
    printf '  module-config: "iterator"\n'
    printf 'view:\n  name: "staff"\n  view-first: yes\n'
    sed 's/.*/  local-zone: "&" always_nxdomain/' "$WORK/block.txt"
    printf 'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@%s\n' "$UP_PORT"
  } >"$WORK/unbound.conf"
  unbound-checkconf "$WORK/unbound.conf" >"$WORK/unbound-check.log" 2>&1 \
    || { cat "$WORK/unbound-check.log" >&2; die "unbound config rejected"; }
}

# ---------------------------------------------------------------- processes
start() { # start NAME CORE CMD...: starts CMD pinned to CORE in the background, logs to NAME.log
  local name=$1 core=$2
  shift 2
  taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$! # taskset execs CMD: this is the server's own pid
  STARTED+=("$!")
}

wait_dns() { # wait_dns NAME PORT: until it answers a query (10 s at most)
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p "$2" -b "$OTHER" +time=1 +tries=1 probe.example >/dev/null 2>&1 && return 0
    alive "$1" || die "$1 exited at start: $(tail -3 "$WORK/$1.log" | tr '\n' ' ')"
    sleep 0.1
  done
  die "$1 did not answer on port $2 in 10 s"
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

start_all() {
  log "starting bench-upstream on core $UPSTREAM_CORE and the servers on core $SERVER_CORE"
  start upstream "$UPSTREAM_CORE" "$UPSTREAM" "127.0.0.1:$UP_PORT"
  wait_dns upstream "$UP_PORT"
  # As root, the daemon refuses to start unless told; the other servers here run as root too.
  local as_root=()
  [ "$(id -u)" = 0 ] && as_root=(--allow-root)
  start sinkhole "$SERVER_CORE" "$SINKHOLE" run -c "$WORK/sinkhole.toml" "${as_root[@]}"
  start dnsdist "$SERVER_CORE" dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf"
  start unbound "$SERVER_CORE" unbound -d -c "$WORK/unbound.conf"
  start bare-plain "$SERVER_CORE" "$BARE" plain "127.0.0.1:${PORT[bare-plain]}"
  start bare-mmsg "$SERVER_CORE" "$BARE" mmsg "127.0.0.1:${PORT[bare-mmsg]}"
  local s
  for s in "${SERVERS[@]}" "${FLOORS[@]}"; do wait_dns "$s" "${PORT[$s]}"; done
}

# The configs are only equivalent if every server blocks for the staff subnet and forwards for
# everyone else; check that before measuring anything.
sanity() {
  local s got
  for s in "${SERVERS[@]}"; do
    got=$(rcode "${PORT[$s]}" "$STAFF" www.tiktok.com)
    [ "$got" = NXDOMAIN ] || die "$s answers www.tiktok.com to $STAFF with '$got', not NXDOMAIN"
    got=$(rcode "${PORT[$s]}" "$OTHER" www.tiktok.com)
    [ "$got" = "NOERROR 192.0.2.1" ] || die "$s answers www.tiktok.com to $OTHER with '$got', not the upstream's A"
    got=$(rcode "${PORT[$s]}" "$STAFF" www.site00001.example)
    [ "$got" = "NOERROR 192.0.2.1" ] || die "$s answers www.site00001.example to $STAFF with '$got'"
  done
  [ -s "$WORK/hits.jsonl" ] || die "sinkhole wrote no hit log line for its block"
  encrypted || return 0
  local mode port
  for s in "${SERVERS[@]}"; do
    for mode in tls https; do
      port=${DOT_PORT[$s]}
      [ "$mode" = https ] && port=${DOH_PORT[$s]}
      kdig @127.0.0.1 -p "$port" -b "$STAFF" "+$mode" +tls-ca="$WORK/cert.pem" +tls-hostname=bench.test \
        +time=2 +retry=1 www.tiktok.com A >"$WORK/kdig.log" 2>&1 || true
      got=$(awk '/HEADER/ && /status:/ {gsub(/[,;]/, "", $6); print $6; exit}' "$WORK/kdig.log")
      [ "$got" = NXDOMAIN ] || die "$s answers www.tiktok.com over $mode to $STAFF with '$got', not NXDOMAIN: \
$(grep -E 'WARNING|ERROR|session' "$WORK/kdig.log" | tr '\n' ' ')"
    done
  done
}

rcode() { # rcode PORT SOURCE NAME -> "RCODE [A records]"
  dig @127.0.0.1 -p "$1" -b "$2" +time=2 +tries=1 +noall +comments +answer "$3" A 2>&1 \
    | awk '/status:/ {gsub(",", "", $6); s = $6} /\tIN\tA\t/ {a = a " " $NF} END {print s a}'
}

# ---------------------------------------------------------------- measuring
# CPU time of a whole process (all its threads), in clock ticks: utime + stime, fields 14 and 15
# of /proc/PID/stat, counted after the ")" that ends the command name (which may hold spaces).
ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1 # the process is gone
  echo "${stat##*) }" | awk '{print $12 + $13}'
}
HZ=$(getconf CLK_TCK)

# measure SERVER LOAD RUN TARGET_PID KIND ARGS...: runs one load, brackets it with the target's
# CPU ticks and the wall clock, and appends a row to results.tsv:
#   server load run qps lost_pct answered cpu_s wall_s p99_us nx_pct
# KIND is dnsperf or replay; ARGS go to the load function.
measure() {
  local server=$1 load=$2 run=$3 pid=$4 kind=$5
  shift 5
  local t0 t1 w0 w1 out qps lost answered p99 nx
  local name=$server
  [ "$server" = bench-upstream ] && name=upstream
  t0=$(ticks "$pid") || die "$server is not running before $load: $(tail -3 "$WORK/$name.log" | tr '\n' ' ')"
  w0=$(date +%s.%N)
  out=$("load_$kind" "$@") || die "$kind failed against $server ($load, run $run): see $WORK/last-load.log"
  w1=$(date +%s.%N)
  t1=$(ticks "$pid") || die "$server died during $load: $(tail -3 "$WORK/$name.log" | tr '\n' ' ')"
  # out: qps lost_pct answered p99_us nx_pct
  read -r qps lost answered p99 nx <<<"$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$load" "$run" "$qps" "$lost" "$answered" \
    "$(awk -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')" \
    "$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.3f", b - a}')" "$p99" "$nx" >>"$WORK/results.tsv"
  log "  $server $load #$run: $qps qps, lost $lost %, p99 $p99 us"
  # The hit log grows by a line per block: empty it between runs (the writer appends, so a
  # truncated file just starts again at 0) so that a long run cannot fill the disk.
  : >"$WORK/hits.jsonl"
}

# load_dnsperf PORT FILE SECS [-n 1]: dnsperf from the staff client, pinned to the load core.
# dnsperf has no percentiles: p99 is "-".
load_dnsperf() {
  local port=$1 file=$2 secs=$3
  shift 3
  timeout $((secs + 60)) taskset -c "$LOAD_CORE" dnsperf -s 127.0.0.1 -p "$port" -a "$STAFF" -d "$file" \
    -l "$secs" -c 10 -q 200 "$@" >"$WORK/last-load.log" 2>&1 || return 1
  awk '/Queries completed:/ {c = $3} /Queries lost:/ {l = $4} /Queries per second:/ {q = $4}
       /Response codes:/ {if (match($0, /NXDOMAIN [0-9]+ \(([0-9.]+)%/)) {s = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", s); sub(/%/, "", s); nx = s}}
       END {gsub(/[()%]/, "", l); if (c == "") exit 1; printf "%.0f %s %d - %s\n", q, l, c, (nx == "" ? 0 : nx)}' \
    "$WORK/last-load.log"
}

# load_h2load SERVER SECS: h2load on the mix as DoH GET requests (doh_uris), 12 connections with 16
# streams each (192 queries in flight, about dnsperf's -c 10 -q 200; 16 is sinkhole's default
# server.tcp_pipeline, past which its HTTP/2 refuses streams), SECS x 100k requests, from
# 127.0.0.1. h2load speaks HTTP, not DNS: it has no rcodes (NXDOMAIN % "-") and no percentiles; a
# request is lost when it got no 2xx.
load_h2load() {
  local server=$1 secs=$2
  timeout $((secs * 4 + 60)) taskset -c "$LOAD_CORE" h2load -c 12 -m 16 -n $((secs * 100000)) \
    -i "$WORK/doh-uris.$server.txt" \
    >"$WORK/last-load.log" 2>&1 || return 1
  awk '/^finished in/ {q = $4} /^requests:/ {done = $6} /^status codes:/ {c2 = $3}
       END {if (q == "" || done == 0) exit 1; l = 100 * (done - c2) / done; printf "%.0f %.2f %d - -\n", q, (l < 0 ? 0 : l), c2}' \
    "$WORK/last-load.log"
}

# load_replay PORT FILE REPLAY_ARGS...: `sinkhole replay` from the staff client, pinned to the
# load core, its JSON summary reduced to "qps lost_pct answered p99_us nx_pct".
load_replay() {
  local port=$1 file=$2
  shift 2
  timeout 180 taskset -c "$LOAD_CORE" "$SINKHOLE" replay --server "127.0.0.1:$port" --source "$STAFF" \
    --json "$@" "$file" >"$WORK/last-load.json" 2>"$WORK/last-load.log" || return 1
  python3 - "$WORK/last-load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
answered = r["answered"]
nx = 100.0 * r.get("rcodes", {}).get("NXDOMAIN", 0) / answered if answered else 0.0
print(f'{r["qps"]:.0f} {r["lost_pct"]:.2f} {answered} {r["latency_us"]["p99"]:.0f} {nx:.1f}')
PY
}

median_of() { # median_of SERVER LOAD COLUMN -> median of that column over the runs
  awk -F'\t' -v s="$1" -v l="$2" -v c="$3" '$1 == s && $2 == l {print $c}' "$WORK/results.tsv" \
    | sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'
}

# ---------------------------------------------------------------- the loads
warm() {
  wanted dnsperf || wanted mix || encrypted || return 0
  log "warming every cache with one pass of mix (dnsperf and replay: their queries differ in EDNS)"
  local s
  for s in "${SERVERS[@]}" "${FLOORS[@]}"; do
    load_dnsperf "${PORT[$s]}" "$WORK/mix.txt" 60 -n 1 >/dev/null || die "warming $s with dnsperf failed"
    wanted dnsperf || wanted mix || continue
    load_replay "${PORT[$s]}" "$WORK/mix.txt" --count 200000 >/dev/null || die "warming $s with replay failed"
  done
}

loads() {
  wanted dnsperf && loads_dnsperf
  wanted mix && loads_mix
  wanted unique && loads_unique
  wanted dot && loads_encrypted dot
  wanted doh && loads_encrypted doh
  return 0
}

# (4) the mix over an encrypted transport: dnsperf keeps -c 10 connections open and 200 queries
# in flight, as over UDP; DoH is h2load with about as many (HTTP/2 GET). The floors speak only UDP.
loads_encrypted() { # loads_encrypted dot|doh
  local kind=$1 run s
  log "(4) the mix over $kind, about 200 queries in flight over 10 or 12 connections"
  for run in $(seq 1 "$RUNS"); do
    for s in "${SERVERS[@]}"; do
      if [ "$kind" = dot ]; then
        measure "$s" "dnsperf dot mix" "$run" "${PID[$s]}" dnsperf "${DOT_PORT[$s]}" "$WORK/mix.txt" "$SECS" -m dot
      else
        measure "$s" "h2load doh mix" "$run" "${PID[$s]}" h2load "$s" "$SECS"
      fi
    done
  done
}

loads_dnsperf() {
  local run s
  log "(1) dnsperf on mix: -c 10 -q 200 -l $SECS"
  for run in $(seq 1 "$RUNS"); do
    for s in "${SERVERS[@]}" "${FLOORS[@]}"; do
      measure "$s" "dnsperf mix" "$run" "${PID[$s]}" dnsperf "${PORT[$s]}" "$WORK/mix.txt" "$SECS"
    done
  done
}

loads_mix() {
  local run s rate
  log "(2) replay on mix, as fast as the server answers, $SECS s"
  for run in $(seq 1 "$RUNS"); do
    for s in "${SERVERS[@]}" "${FLOORS[@]}"; do
      measure "$s" "replay mix" "$run" "${PID[$s]}" replay "${PORT[$s]}" "$WORK/mix.txt" --duration "$SECS"
    done
  done
  # Target 1 also asks for no loss at 90 % of sinkhole's saturation rate.
  rate=$(median_of sinkhole "replay mix" 4 | awk '{printf "%d", $1 * 0.9}')
  log "    replay on mix at 90 % of sinkhole's saturation: $rate qps"
  for run in $(seq 1 "$RUNS"); do
    measure sinkhole "replay mix 90%" "$run" "${PID[sinkhole]}" replay "${PORT[sinkhole]}" "$WORK/mix.txt" \
      --rate "$rate" --duration "$SECS"
  done
}

loads_unique() {
  local run s pass
  # (3) The cache-miss path: every name new to the server, forwarded. Pass numbers keep names
  # fresh: passes 0..RUNS-1 for saturation, RUNS..2*RUNS-1 for the 50 % runs.
  log "(3) replay on unique (cache misses), as fast as the server answers, $UNIQUE_COUNT queries"
  for run in $(seq 1 "$RUNS"); do
    pass=$(unique_pass $((run - 1)))
    for s in "${SERVERS[@]}"; do
      measure "$s" "replay unique" "$run" "${PID[$s]}" replay "${PORT[$s]}" "$pass" --count "$UNIQUE_COUNT"
    done
  done
  log "    replay on unique at 50 % of each server's saturation, and straight at bench-upstream at that rate"
  declare -A half=()
  for s in "${SERVERS[@]}"; do half[$s]=$(median_of "$s" "replay unique" 4 | awk '{printf "%d", $1 / 2}'); done
  for run in $(seq 1 "$RUNS"); do
    pass=$(unique_pass $((RUNS + run - 1)))
    for s in "${SERVERS[@]}"; do
      # A count rather than a duration, so that the run never wraps round to names already cached.
      local count=$((half[$s] * SECS < 200000 ? half[$s] * SECS : 200000))
      measure "$s" "replay unique 50%" "$run" "${PID[$s]}" replay "${PORT[$s]}" "$pass" \
        --rate "${half[$s]}" --count "$count"
      measure bench-upstream "direct @ $s 50%" "$run" "${PID[upstream]}" replay "$UP_PORT" "$pass" \
        --rate "${half[$s]}" --count "$count"
    done
  done
}

# ---------------------------------------------------------------- the table
# What the figures were measured on: ratios travel between machines, absolute figures do not, and
# a busy machine (load average above what the bench itself puts on it, about 2) makes them noisy.
machine() {
  printf '%s, %s cores, load average %s at start and %s at end' \
    "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(nproc)" "$LOAD_START" \
    "$(cut -d' ' -f1 /proc/loadavg)"
}

report() {
  python3 - "$WORK/results.tsv" "$QUICK" "$(machine)" <<'PY'
import statistics, sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    server, load, run, qps, lost, answered, cpu_s, wall_s, p99, nx = line.rstrip("\n").split("\t")
    answered = int(answered)
    rows[(server, load)].append({
        "qps": float(qps), "lost": float(lost),
        "us": float(cpu_s) * 1e6 / answered if answered else float("nan"),
        "busy": 100.0 * float(cpu_s) / float(wall_s),
        "p99": None if p99 == "-" else float(p99), "nx": None if nx == "-" else float(nx)})

def med(server, load, key):
    vals = [r[key] for r in rows.get((server, load), []) if r[key] is not None]
    return statistics.median(vals) if vals else None

PEERS = ["dnsdist", "unbound"]
def best_peer(load):
    cands = [(med(p, load, "us"), p) for p in PEERS if med(p, load, "us") is not None]
    return min(cands) if cands else (None, None)

ORDER = ["sinkhole", "dnsdist", "unbound", "bare-plain", "bare-mmsg", "bench-upstream"]
LOADS = ["dnsperf mix", "replay mix", "replay mix 90%", "replay unique", "replay unique 50%",
         "dnsperf dot mix", "h2load doh mix"]
def load_rank(load):
    # The upstream's own rows ("direct @ SERVER 50%") last, in the order of the servers.
    if load in LOADS:
        return LOADS.index(load)
    words = load.split()
    return len(LOADS) + (ORDER.index(words[2]) if len(words) > 2 and words[2] in ORDER else len(ORDER))

head = ["server", "load", "qps", "lost %", "CPU us/q", "x best peer", "core busy %", "p99 us", "NXDOMAIN %"]
table = []
for (server, load) in sorted(rows, key=lambda k: (load_rank(k[1]), ORDER.index(k[0]))):
    best, _ = best_peer(load)
    us = med(server, load, "us")
    p99 = med(server, load, "p99")
    table.append([server, load, f'{med(server, load, "qps"):,.0f}', f'{med(server, load, "lost"):.2f}',
                  f"{us:.2f}", f"{us / best:.2f}" if best else "", f'{med(server, load, "busy"):.0f}',
                  "" if p99 is None else f"{p99:,.0f}",
                  "" if med(server, load, "nx") is None else f'{med(server, load, "nx"):.1f}'])
widths = [max(len(str(r[i])) for r in [head] + table) for i in range(len(head))]
def line(cells):
    return "| " + " | ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))) + " |"
n = len(next(iter(rows.values())))
print(f"\nmedians of {n} run(s) each; server on one core, load generator on another; {sys.argv[3]}")
print(line(head))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in table:
    print(line(r))

def ratio(load, server="sinkhole"):
    best, peer = best_peer(load)
    us = med(server, load, "us")
    return (us / best if best and us else None), us, best, peer

def verdict(ok):
    return "MET" if ok else "NOT MET"

# A saturation figure is only one if the server's core was busy: a starved load generator (its
# core shared with other work) leaves the server idle part of the time. Say so under the table.
idle = [f"{s} {med(s, l, 'busy'):.0f} %" for (s, l) in rows
        if l in ("replay mix", "replay unique") and med(s, l, "busy") < 90]
if idle:
    print(f"\nnot saturated (core busy < 90 % under a load meant to saturate): {', '.join(idle)};"
          " their CPU us/q is a figure below saturation, where batching has less to batch")

print()
r, us, best, peer = ratio("replay mix")
floor, _, _, _ = ratio("replay mix", "bare-mmsg")
lost90 = med("sinkhole", "replay mix 90%", "lost")
got90 = med("sinkhole", "replay mix 90%", "qps")
if r is not None and lost90 is not None:
    asked = int(med("sinkhole", "replay mix", "qps") * 0.9)
    reached = got90 >= 0.95 * asked
    print(f"target 1 (saturation, replay mix: CPU/q <= 0.7 x best peer, no loss at 90 %): {verdict(r <= 0.7 and lost90 == 0 and reached)}"
          f" - sinkhole {us:.2f} us/q = {r:.2f} x {peer} ({best:.2f}); floor bare-mmsg {floor:.2f} x;"
          f" at 90 % ({asked:,} qps asked, {got90:,.0f} sent) lost {lost90:.2f} %"
          + ("" if reached else " (rate not reached: the loss check is inconclusive)"))
r, us, best, peer = ratio("dnsperf mix")
floor, _, _, _ = ratio("dnsperf mix", "bare-plain")
if r is not None:
    print(f"target 2 (dnsperf mix: CPU/q <= 0.85 x best peer): {verdict(r <= 0.85)}"
          f" - sinkhole {us:.2f} us/q = {r:.2f} x {peer} ({best:.2f}); floor bare-plain {floor:.2f} x")
r, us, best, peer = ratio("replay unique")
p99 = med("sinkhole", "replay unique 50%", "p99")
up99 = med("bench-upstream", "direct @ sinkhole 50%", "p99")
if r is not None and p99 is not None and up99 is not None:
    added = p99 - up99
    print(f"target 3 (cache misses: CPU/q <= best peer, p99 added < 100 us at 50 % load): {verdict(r <= 1.0 and added < 100)}"
          f" - sinkhole {us:.2f} us/q = {r:.2f} x {peer} ({best:.2f}); p99 {p99:.0f} us - upstream's own {up99:.0f} us"
          f" = {added:.0f} us added")
    for peer in PEERS:
        pp, pu = med(peer, "replay unique 50%", "p99"), med("bench-upstream", f"direct @ {peer} 50%", "p99")
        if pp is not None and pu is not None:
            print(f"    (for comparison, {peer} adds {pp - pu:.0f} us at p99 at its own 50 % load)")
for load, name in (("dnsperf dot mix", "DoT"), ("h2load doh mix", "DoH")):
    r, us, best, peer = ratio(load)
    if r is not None:
        print(f"{name} (the mix over {name}: CPU/q <= best peer): {verdict(r <= 1.0)}"
              f" - sinkhole {us:.2f} us/q = {r:.2f} x {peer} ({best:.2f})")
if sys.argv[2] == "1":
    print("\n--quick: one short run per load, a smoke test; the figures are not a measurement")
PY
}

# ---------------------------------------------------------------- main
WORK=${COMPARE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-compare.XXXXXX")}
mkdir -p "$WORK"
: >"$WORK/results.tsv"
log "scratch folder: $WORK"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
prerequisites
ports_free
build
workloads
configs
start_all
sanity
warm
loads
report | tee "$WORK/table.txt"
log "done: results in $WORK (results.tsv has every run, table.txt the table)"
