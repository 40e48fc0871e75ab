#!/usr/bin/env bash
# Flood (issue 9 item 3): at three times its capacity, with every query a cache miss, 1 % of them
# 48 KB answers, and a black-holed upstream first in the list, sinkhole degrades to drops, never to
# growing memory, and answers within a second once the flood stops. Starts a black hole (reads,
# never answers), bench-upstream and sinkhole (server on one core, load and upstreams on the
# other), measures the cache-miss capacity for 5 s, floods for SECONDS at 3x that rate (the load
# generator's window at 65,536 and its timeout at 300 ms, so that losses do not slow it), samples
# sinkhole's RSS every second, then times one blocked and one forwarded query.
#
# usage: benches/flood.sh [SECONDS]   (from the repository root; default 60). Exits 1 if RSS grew
#   in the second half of the flood (max above 1.05 x the first half's) or an answer after the
#   flood took a second or more.
# Environment: FLOOD_DIR (scratch folder, default a new /tmp/sinkhole-flood.*), FLOOD_PORT (first
#   of 4 consecutive ports on 127.0.0.1, default 26450). Loopback only; everything started is
#   killed on exit.
set -euo pipefail
SECS=${1:-60}
BASE=${FLOOD_PORT:-26450}
WORK=${FLOOD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-flood.XXXXXX")}
mkdir -p "$WORK"
source "$(dirname "$0")/lib.sh"
((SECS >= 20)) || { log "SECONDS must be at least 20"; exit 2; }
build release

log "writing 2,000,000 unique names, 1 % of them large answers"
python3 - "$WORK/unique.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(2_000_000):
        f.write(f"large.u{i:07d}.example A\n" if i % 100 == 0 else f"u{i:07d}.miss.example A\n")
PY

BLACKHOLE=$BASE UP=$((BASE + 1)) LISTEN=$((BASE + 2)) METRICS=$((BASE + 3))
cat >"$WORK/sinkhole.toml" <<EOF
[server]
listen = ["127.0.0.1:$LISTEN"]
metrics = "127.0.0.1:$METRICS"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["127.0.0.1:$BLACKHOLE", "127.0.0.1:$UP"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "off"
EOF

# The black hole: takes every query, answers none.
timeout $((SECS + 300)) "${PIN_LOAD[@]}" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(65535)
' "$BLACKHOLE" &
PIDS+=("$!")
start_upstream "$UP"
start_sinkhole "$WORK/sinkhole.toml"
REPLAY=("${PIN_LOAD[@]}" "$SINKHOLE" replay --server "127.0.0.1:$LISTEN" --source 127.20.0.5)

log "5 s of cache misses as fast as they are answered, to find the capacity"
timeout 60 "${REPLAY[@]}" --json --duration 5 "$WORK/unique.txt" >"$WORK/capacity.json" 2>/dev/null || true
CAPACITY=$(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(int(r["answered"] / r["duration_s"]))' \
  "$WORK/capacity.json")
RATE=$((CAPACITY * 3))
log "capacity $CAPACITY answered misses/s; flooding $SECS s at $RATE qps"

(while kill -0 "$DAEMON" 2>/dev/null; do
  printf '%s\t%s\n' "$(date +%s.%N)" "$(awk '/^VmRSS/ {print $2}' /proc/"$DAEMON"/status)"
  sleep 1
done) >"$WORK/rss.tsv" &
PIDS+=("$!")
timeout $((SECS + 60)) "${REPLAY[@]}" --json --rate "$RATE" --duration "$SECS" --window 65536 --timeout-ms 300 \
  "$WORK/unique.txt" >"$WORK/flood.json" 2>/dev/null || true

# Right after: a blocked name (answered on the fast path) and a new name (forwarded).
python3 - "$LISTEN" >"$WORK/after.txt" <<'PY'
import socket, struct, sys, time
def ask(name, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(5)
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    start = time.monotonic()
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    while True:
        try:
            data = s.recv(65535)
        except socket.timeout:
            return None
        if data[:2] == b"\x42\x42":
            return time.monotonic() - start
for name, src in [("www.tiktok.com", "127.10.0.5"), ("after-the-flood.example", "127.20.0.9")]:
    took = ask(name, src)
    print(f"{name}\t{took if took is not None else 'none'}")
PY
curl -s "http://127.0.0.1:$METRICS/metrics" >"$WORK/metrics.txt" || true
python3 - "$WORK/flood.json" "$WORK/rss.tsv" "$WORK/after.txt" "$WORK/metrics.txt" "$SECS" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
secs = int(sys.argv[5])
rows = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
t0 = rows[0][0]
during = [(t - t0, kb / 1024) for t, kb in rows if t - t0 <= secs]
half = secs / 2
first = max(mb for t, mb in during if t < half)
second = max(mb for t, mb in during if t >= half)
print(f'flood: sent {r["sent"]:,}, answered {r["answered"]:,} ({100 - r["lost_pct"]:.1f} %), '
      f'{r["sent"] / r["duration_s"]:,.0f} qps sent')
print(f"RSS max first half {first:.1f} MiB, second half {second:.1f} MiB ({second / first:.3f} x); "
      f"start {during[0][1]:.1f} MiB")
metrics = open(sys.argv[4]).read()
for name in ["sinkhole_dropped_packets_total", "sinkhole_upstream_errors_total", "sinkhole_cache_bytes",
             "sinkhole_queries_total"]:
    for line in metrics.splitlines():
        if line.startswith(name) and not line.endswith(" 0"):
            print("  " + line)
after = [l.split("\t") for l in open(sys.argv[3]).read().splitlines()]
ok = second <= 1.05 * first
for name, took in after:
    print(f"after the flood: {name} answered in {took if took == 'none' else f'{float(took) * 1000:.1f} ms'}")
    ok = ok and took != "none" and float(took) < 1.0
sys.exit(0 if ok else 1)
PY
