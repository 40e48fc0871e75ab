#!/usr/bin/env bash
# Soak (issue 9 item 3): memory stays flat and no well-formed query is lost under a long steady
# load. Starts bench-upstream and sinkhole (server on one core, load and upstream on the other),
# measures the saturation rate of the mix for 5 s, then for SECONDS replays at half of it the
# "mix" workload with 1 % of its names `large.*` (48 KB upstream answers, which the cache's byte
# bound must hold) while a second sender adds 1 % garbage (random bytes, truncated headers,
# responses). It samples sinkhole's RSS every 5 s and prints the mean RSS of the first and the
# last minute, their ratio, and what the load generator saw.
#
# usage: benches/soak.sh [SECONDS] [RATE]   (from the repository root; defaults 600 s, half the
#   measured capacity). Exits 1 if a query was lost or the last minute's RSS is more than 5 %
#   above the first's.
# Environment: SOAK_DIR (scratch folder, default a new /tmp/sinkhole-soak.*), SOAK_PORT (first of
#   2 consecutive ports on 127.0.0.1, default 26440). Loopback only; everything started is killed
#   on exit.
set -euo pipefail
SECS=${1:-600}
RATE=${2:-}
BASE=${SOAK_PORT:-26440}
WORK=${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-soak.XXXXXX")}
mkdir -p "$WORK"
source "$(dirname "$0")/lib.sh"
((SECS >= 120)) || { log "SECONDS must be at least 120 (a first and a last minute)"; exit 2; }
build release

log "writing the workload: the mix, 1 % of it large answers"
python3 - "$WORK/soak.txt" <<'PY'
import random, sys
r = random.Random(11)
apexes = ["tiktok.com", "tiktokv.com", "tiktokcdn.com", "byteoversea.com", "ibytedtos.com", "musical.ly"]
tiktok = [f"{p}.{a}" for a in apexes for p in ["www", "m", "v16m", "log"]]
with open(sys.argv[1], "w") as f:
    for _ in range(200_000):
        x = r.random()
        if x < 0.01:
            f.write(f"large.site{r.randrange(500):03d}.example A\n")
        elif x < 0.21:
            f.write(f"{r.choice(tiktok)} A\n")
        else:
            f.write(f"www.site{int(r.paretovariate(1.0)) % 20_000:05d}.example {r.choice(['A', 'A', 'AAAA'])}\n")
PY

cat >"$WORK/sinkhole.toml" <<EOF
[server]
listen = ["127.0.0.1:$((BASE + 1))"]
metrics = "off"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["127.0.0.1:$BASE"]
[lists.tiktok]
domains = ["tiktok.com", "tiktokv.com", "tiktokcdn.com", "byteoversea.com", "ibytedtos.com", "musical.ly"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "$WORK/hits.jsonl"
EOF

start_upstream "$BASE"
start_sinkhole "$WORK/sinkhole.toml"
SERVER=127.0.0.1:$((BASE + 1))
REPLAY=("${PIN_LOAD[@]}" "$SINKHOLE" replay --server "$SERVER" --source 127.10.0.5)

log "warming the cache, then 5 s at saturation to find the rate"
timeout 120 "${REPLAY[@]}" --count 200000 "$WORK/soak.txt" >/dev/null 2>&1
timeout 60 "${REPLAY[@]}" --json --duration 5 "$WORK/soak.txt" >"$WORK/capacity.json" 2>/dev/null
CAPACITY=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["qps"]))' "$WORK/capacity.json")
RATE=${RATE:-$((CAPACITY / 2))}
GARBAGE=$((RATE / 100))
log "capacity $CAPACITY qps; soaking $SECS s at $RATE qps, with $GARBAGE garbage packets/s"

# 1 % garbage: random lengths of random bytes, cut headers, responses: none must cost memory.
timeout $((SECS + 30)) "${PIN_LOAD[@]}" python3 - "$SERVER" "$GARBAGE" "$SECS" <<'PY' &
import os, random, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
rate, secs = int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.10.0.6", 0))
s.setblocking(False)
r = random.Random(3)
start = time.monotonic()
sent = 0
while time.monotonic() - start < secs:
    kind = r.random()
    if kind < 0.4:
        packet = os.urandom(r.randrange(1, 600))
    elif kind < 0.7:
        packet = os.urandom(r.randrange(1, 12))
    else:  # a response (QR set) with junk after the header
        packet = os.urandom(2) + b"\x81\x80" + os.urandom(r.randrange(8, 200))
    try:
        s.sendto(packet, (host, int(port)))
    except OSError:
        pass
    try:
        while s.recv(65535):
            pass
    except OSError:
        pass
    sent += 1
    time.sleep(max(0.0, start + sent / max(rate, 1) - time.monotonic()))
PY
PIDS+=("$!")

(while kill -0 "$DAEMON" 2>/dev/null; do
  printf '%s\t%s\n' "$(date +%s)" "$(awk '/^VmRSS/ {print $2}' /proc/"$DAEMON"/status)"
  sleep 5
done) >"$WORK/rss.tsv" &
PIDS+=("$!")

timeout $((SECS + 120)) "${REPLAY[@]}" --json --rate "$RATE" --duration "$SECS" "$WORK/soak.txt" \
  >"$WORK/replay.json" 2>/dev/null
python3 - "$WORK/replay.json" "$WORK/rss.tsv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rows = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
t0 = rows[0][0]
first = [kb for t, kb in rows if t - t0 < 60]
last = [kb for t, kb in rows if t - t0 >= rows[-1][0] - t0 - 60]
f, l = sum(first) / len(first), sum(last) / len(last)
print(f'sent {r["sent"]:,}, answered {r["answered"]:,}, lost {r["lost"]:,} ({r["lost_pct"]:.4f} %), {r["qps"]:,.0f} qps')
print(f"RSS first minute {f / 1024:.1f} MiB, last minute {l / 1024:.1f} MiB: {l / f:.3f} x; "
      f"min {min(kb for _, kb in rows) / 1024:.1f}, max {max(kb for _, kb in rows) / 1024:.1f} MiB")
sys.exit(1 if r["lost"] > 0 or l > 1.05 * f else 0)
PY
