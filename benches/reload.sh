#!/usr/bin/env bash
# Target 5's last part: a 1,000,000-domain list reloaded under load loses no query. Writes the
# list (the 14 TikTok apexes of compare.sh plus a million random names), starts bench-upstream
# and sinkhole (the server on one core, load and upstream on the other), replays the "mix"
# workload at a fixed rate while sending SIGHUP every 2 s, and prints what the load generator
# saw (sent, answered, lost) and how long each reload took by the daemon's own log.
#
# usage: benches/reload.sh [RATE] [SECONDS]   (from the repository root; defaults 150000 qps, 12 s)
# Environment: RELOAD_DIR (scratch folder, default a new /tmp/sinkhole-reload.*), RELOAD_PORT
#   (first of 2 consecutive ports on 127.0.0.1, default 26420). Loopback only.
set -euo pipefail
RATE=${1:-150000}
SECS=${2:-12}
BASE=${RELOAD_PORT:-26420}
WORK=${RELOAD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-reload.XXXXXX")}
mkdir -p "$WORK"
source "$(dirname "$0")/lib.sh"
build release

write_big_list_and_mix "$WORK/big.txt" "$WORK/mix.txt"

cat >"$WORK/sinkhole.toml" <<EOF
[server]
listen = ["127.0.0.1:$((BASE + 1))"]
metrics = "off"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["127.0.0.1:$BASE"]
[lists.big]
files = ["$WORK/big.txt"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["big"]
[log]
hits = "$WORK/hits.jsonl"
EOF

start_upstream "$BASE"
start_sinkhole "$WORK/sinkhole.toml"
log "warming the cache, then $SECS s at $RATE qps with a SIGHUP every 2 s"
warm_cache
(for _ in $(seq 2 2 $((SECS - 2))); do sleep 2; kill -HUP "$DAEMON"; done) &
PIDS+=("$!")
replay_measured "$RATE" "$SECS"
sleep 1
python3 - "$WORK/replay.json" "$WORK/sinkhole.log" <<'PY'
import datetime, json, re, sys
r = json.load(open(sys.argv[1]))
print(f'sent {r["sent"]:,}, answered {r["answered"]:,}, lost {r["lost_pct"]:.3f} %, {r["qps"]:,.0f} qps')
log = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[2]).read())
stamp = lambda line: datetime.datetime.fromisoformat(line.split()[0].rstrip("Z"))
asked = [stamp(l) for l in log.splitlines() if "SIGHUP: reloading" in l]
done = [(stamp(l), re.search(r"rules=(\d+)", l)) for l in log.splitlines() if "reloaded" in l]
for a, (d, rules) in zip(asked, done):
    print(f"reload: {rules.group(1) if rules else '?'} rules in {(d - a).total_seconds():.2f} s")
failed = log.count("reload failed")
print(f"{len(done)} reloads, {failed} failed")
sys.exit(1 if failed or r["lost_pct"] > 0 else 0)
PY
