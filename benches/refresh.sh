#!/usr/bin/env bash
# Issue 11's speed check for lists by URL: a 1,000,000-domain list served by a local HTTP server
# (python3 -m http.server, loopback) and refreshed every 2 s under load loses no query. The list
# file is rewritten (one name more) before each refresh, so that every refresh downloads ~15 MB,
# judges it, saves it in the state directory and rebuilds the snapshot, while `sinkhole replay`
# sends the mix at a fixed rate. Prints what the load generator saw (sent, answered, lost), how
# many updates were taken and how long each rebuild took by the daemon's log; exits 1 on a lost
# query or a failed update.
#
# usage: benches/refresh.sh [RATE] [SECONDS]   (from the repository root; defaults 150000 qps, 16 s)
# Environment: REFRESH_DIR (scratch folder, default a new /tmp/sinkhole-refresh.*), REFRESH_PORT
#   (first of 3 consecutive ports on 127.0.0.1, default 26430). Loopback only. Not run by CI.
set -euo pipefail
RATE=${1:-150000}
SECS=${2:-16}
BASE=${REFRESH_PORT:-26430}
WORK=${REFRESH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-refresh.XXXXXX")}
mkdir -p "$WORK/www" "$WORK/state"
source "$(dirname "$0")/lib.sh"
build release

write_big_list_and_mix "$WORK/www/big.txt" "$WORK/mix.txt"

cat >"$WORK/sinkhole.toml" <<EOF2
[server]
listen = ["127.0.0.1:$((BASE + 1))"]
metrics = "off"
allow = ["127.0.0.0/8"]
threads = 1
state_dir = "$WORK/state"
list_wait = "60s"
[upstream]
servers = ["127.0.0.1:$BASE"]
[lists.big]
urls = ["http://127.0.0.1:$((BASE + 2))/big.txt"]
refresh = "2s"
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["big"]
[log]
hits = "$WORK/hits.jsonl"
EOF2

"${PIN_LOAD[@]}" python3 -m http.server "$((BASE + 2))" --bind 127.0.0.1 --directory "$WORK/www" \
  >"$WORK/http.log" 2>&1 &
PIDS+=("$!")
sleep 1
start_upstream "$BASE"
start_sinkhole "$WORK/sinkhole.toml"
log "warming the cache, then $SECS s at $RATE qps with the list changing every 2 s"
warm_cache
(for i in $(seq 2 2 $((SECS - 2))); do
  sleep 2
  cp "$WORK/www/big.txt" "$WORK/www/.big.next" && echo "refresh$i.example" >>"$WORK/www/.big.next"
  mv "$WORK/www/.big.next" "$WORK/www/big.txt"
done) &
PIDS+=("$!")
replay_measured "$RATE" "$SECS"
sleep 1
python3 - "$WORK/replay.json" "$WORK/sinkhole.log" <<'PY'
import datetime, json, re, sys
r = json.load(open(sys.argv[1]))
print(f'sent {r["sent"]:,}, answered {r["answered"]:,}, lost {r["lost_pct"]:.3f} %, {r["qps"]:,.0f} qps')
log = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[2]).read())
stamp = lambda line: datetime.datetime.fromisoformat(line.split()[0].rstrip("Z"))
lines = log.splitlines()
updated = [stamp(l) for l in lines if "list updated" in l]
rebuilt = [stamp(l) for l in lines if "lists rebuilt" in l]
failed = [l for l in lines if "list update failed" in l or "rebuild failed" in l]
print(f"{len(updated)} updates taken, {len(rebuilt)} rebuilds, {len(failed)} failed")
for l in failed[:5]:
    print("  " + l)
sys.exit(1 if failed or r["lost_pct"] > 0 or len(updated) < 2 else 0)
PY
