#!/usr/bin/env bash
# Issue 9 item 6: reloads under fire. Sends RELOADS SIGHUPs (default 1,000) alternating a good
# config and a broken one while `sinkhole replay` sends the "mix" workload at a fixed rate, then
# prints how many reloads were done, how many failed ones the daemon reported, how many queries
# were sent and how many were lost. It exits 1 if any query was lost or answered SERVFAIL, or if
# the daemon's count of good and failed reloads differs from what was sent.
#
# The good configs alternate between two lists: one blocks a.storm.example, the other
# b.storm.example (both block the 14 TikTok apexes of the mix). The broken ones cycle through a
# syntax error, an unknown key and a list file that is not there. At the end the script asks both
# names once and checks that the last good config is the one serving.
#
# Pacing: the daemon runs one reload at a time, and SIGHUPs that come while one runs are merged
# into a single next reload (src/server/mod.rs). A signal sent too early would be merged and a
# config never read, so the script sends the next SIGHUP only when the daemon's log shows the
# outcome of the previous one ("reloaded" or "reload failed"), and gives up if one takes more than
# 10 s. Each config is put in place with a rename, so a reload reads a whole file.
#
# usage: benches/reload-storm.sh [RELOADS] [RATE]   (from the repository root; defaults 1000, 20000 qps)
# Environment: STORM_DIR (scratch folder, default a new /tmp/sinkhole-storm.*), STORM_PORT (first of
#   3 consecutive ports on 127.0.0.1: upstream, DNS, metrics; default 26430), STORM_PROFILE
#   (release or debug, default release: debug skips the release build, at a lower RATE),
#   STORM_MAX_SECONDS (bound on the replay, hence on the whole storm; default 600).
# Loopback only. Everything it starts is stopped when it ends, also on failure or Ctrl-C.
set -euo pipefail
RELOADS=${1:-1000}
RATE=${2:-20000}
BASE=${STORM_PORT:-26430}
PROFILE=${STORM_PROFILE:-release}
MAX_SECONDS=${STORM_MAX_SECONDS:-600}
WORK=${STORM_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-storm.XXXXXX")}
mkdir -p "$WORK"
source "$(dirname "$0")/lib.sh"
case $PROFILE in
  release | debug) build "$PROFILE" ;;
  *) log "STORM_PROFILE is release or debug"; exit 2 ;;
esac

log "writing the lists, the configs and the mix workload"
python3 - "$WORK" <<'PY'
import random, sys
work = sys.argv[1]
apexes = ["tiktok.com", "tiktokv.com", "tiktokcdn.com", "tiktokcdn-us.com", "byteoversea.com", "ibytedtos.com",
          "ibyteimg.com", "musical.ly", "muscdn.com", "ttwstatic.com", "tiktokw.us", "byteimg.com", "tiktokv.us",
          "bytedance.map.fastly.net"]
for side in "ab":
    with open(f"{work}/list-{side}.txt", "w") as f:
        f.write("\n".join(apexes + [f"{side}.storm.example"]) + "\n")
# The mix (80 % allowed names drawn Zipf-like from 20k, so mostly cache hits; 20 % TikTok), plus
# the two names the good configs disagree on.
r = random.Random(7)
tiktok = [f"{p}.{a}" for a in apexes for p in ["www", "m", "v16m", "api16-normal-c-useast1a", "log"]]
with open(f"{work}/mix.txt", "w") as f:
    for _ in range(50_000):
        x = r.random()
        if x < 0.02:
            f.write("a.storm.example A\n")
        elif x < 0.04:
            f.write("b.storm.example A\n")
        elif x < 0.22:
            f.write(f"{r.choice(tiktok)} A\n")
        else:
            f.write(f"www.site{int(r.paretovariate(1.0)) % 20_000:05d}.example {'A' if r.random() < 0.7 else 'AAAA'}\n")
PY
good() {
  cat <<EOF
[server]
listen = ["127.0.0.1:$((BASE + 1))"]
metrics = "127.0.0.1:$((BASE + 2))"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["127.0.0.1:$BASE"]
[lists.block]
files = ["$WORK/$1"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["block"]
[log]
hits = "$WORK/hits.jsonl"
EOF
}
good list-a.txt >"$WORK/good-a.toml"
good list-b.txt >"$WORK/good-b.toml"
good list-a.txt | sed 's/^\[\[policy\]\]$/[[policy]/' >"$WORK/broken-syntax.toml"
good list-a.txt | sed 's/^\[\[policy\]\]$/[[policy]]\nnmae = "typo"/' >"$WORK/broken-key.toml"
good missing.txt >"$WORK/broken-missing.toml"
BROKEN=(broken-syntax broken-key broken-missing)
cp "$WORK/good-a.toml" "$WORK/sinkhole.toml"

start_upstream "$BASE"
start_sinkhole "$WORK/sinkhole.toml"
# The outcomes of reloads the daemon has logged so far.
outcomes() { grep -cE 'reloaded|reload failed' "$WORK/sinkhole.log" || true; }
# Queries the daemon has answered so far, from its metrics page (bash's /dev/tcp, no curl needed).
answered() {
  exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 2))"
  printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  awk '/^sinkhole_queries_total\{/ { n += $NF } END { printf "%d\n", n }' <&3
  exec 3<&-
}

log "warming the cache, then $RELOADS reloads under $RATE qps"
"${PIN_LOAD[@]}" "$SINKHOLE" replay --server "127.0.0.1:$((BASE + 1))" --source 127.10.0.5 \
  --count 50000 "$WORK/mix.txt" >/dev/null 2>&1
# Bounded by --duration; stopped with SIGINT when the reloads are done (it then waits for the
# queries in flight and prints its summary).
"${PIN_LOAD[@]}" "$SINKHOLE" replay --server "127.0.0.1:$((BASE + 1))" --source 127.10.0.5 \
  --json --rate "$RATE" --duration "$MAX_SECONDS" "$WORK/mix.txt" >"$WORK/replay.json" 2>"$WORK/replay.log" &
REPLAY=$!
PIDS+=("$REPLAY")
# It reads and encodes the whole file first: the storm starts once its queries flow.
BEFORE=$(answered)
deadline=$((SECONDS + 60))
until [ "$(answered)" -gt $((BEFORE + RATE / 2)) ]; do
  kill -0 "$REPLAY" 2>/dev/null || { log "the replay ended early:"; cat "$WORK/replay.log" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { log "the replay's queries do not reach the daemon"; exit 1; }
  sleep 0.1
done

GOOD=0 BAD=0 LAST=a
STARTED=$(date +%s)
for i in $(seq 1 "$RELOADS"); do
  if [ $((i % 2)) = 1 ]; then
    # Good ones alternate b, a, b, ...: the first changes what the start-up config blocks.
    if [ $(((i / 2) % 2)) = 0 ]; then LAST=b; else LAST=a; fi
    NEXT=good-$LAST
    GOOD=$((GOOD + 1))
  else
    NEXT=${BROKEN[$(((i / 2) % 3))]}
    BAD=$((BAD + 1))
  fi
  cp "$WORK/$NEXT.toml" "$WORK/.sinkhole.toml.next"
  mv "$WORK/.sinkhole.toml.next" "$WORK/sinkhole.toml"
  kill -HUP "$DAEMON"
  deadline=$((SECONDS + 10))
  until [ "$(outcomes)" -ge "$i" ]; do
    kill -0 "$DAEMON" 2>/dev/null || { log "the daemon died at reload $i"; tail -20 "$WORK/sinkhole.log" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "reload $i ($NEXT) not reported within 10 s"; exit 1; }
    kill -0 "$REPLAY" 2>/dev/null || { log "the replay ended before reload $i (STORM_MAX_SECONDS?)"; exit 1; }
    sleep 0.005
  done
  if [ $((i % 100)) = 0 ]; then log "$i reloads"; fi
done
TOOK=$(($(date +%s) - STARTED))
sleep 1
kill -INT "$REPLAY"
wait "$REPLAY" || true

python3 - "$WORK" "$BASE" "$RELOADS" "$GOOD" "$BAD" "$LAST" "$TOOK" <<'PY'
import json, re, socket, struct, sys, urllib.request
work, base, reloads, good, bad, last, took = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6], sys.argv[7]
r = json.load(open(f"{work}/replay.json"))
log = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{work}/sinkhole.log").read())
page = urllib.request.urlopen(f"http://127.0.0.1:{base + 2}/metrics", timeout=5).read().decode()
def reloads_metric(result):
    m = re.search(r'^sinkhole_reloads_total\{result="%s"\} (\S+)$' % result, page, re.M)
    return int(float(m.group(1))) if m else 0
def rcode(name):
    q = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.10.0.5", 0))
    s.settimeout(2)
    s.sendto(q, ("127.0.0.1", base + 1))
    return s.recv(512)[3] & 0x0F
ok, failed, refused = reloads_metric("ok"), reloads_metric("failed"), reloads_metric("refused")
servfail = r["rcodes"].get("SERVFAIL", 0)
state = {n: rcode(f"{n}.storm.example") for n in "ab"}
state_ok = state[last] == 3 and state["b" if last == "a" else "a"] == 0
print(f"reloads done      {reloads:,} in {took} s ({good:,} good, {bad:,} broken)")
print(f"reported          {ok - 1:,} ok (+1 at start), {failed:,} failed, {refused:,} refused; "
      f"log: {log.count('reloaded'):,} reloaded, {log.count('reload failed'):,} reload failed")
print(f"queries sent      {r['sent']:,} ({r['qps']:,.0f} qps over {r['duration_s']:.1f} s)")
print(f"answered          {r['answered']:,} (rcodes {', '.join(f'{k} {v:,}' for k, v in r['rcodes'].items())})")
print(f"lost              {r['lost']:,} ({r['lost_pct']:.3f} %)")
print(f"last good config  blocks {last}.storm.example: {'serving' if state_ok else f'NOT serving: rcodes {state}'}")
sound = (r["lost"] == 0 and servfail == 0 and ok - 1 == good and failed == bad and refused == 0
         and log.count("reload failed") == bad and log.count("reloaded") == good and state_ok)
sys.exit(0 if sound else 1)
PY
