# Shared by the bench scripts (sourced, not run): logging, building, starting sinkhole and
# stopping everything a script started. A script sets WORK (its scratch folder) first.

log() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

# Every process a script starts; all killed when it exits, also on failure or Ctrl-C.
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

grep -qs '^name = "sinkhole"' Cargo.toml || { log "run from the repository root"; exit 2; }

# build [release|debug]: builds sinkhole and bench-upstream, sets SINKHOLE and UPSTREAM.
build() {
  local profile=${1:-release} flags=()
  [ "$profile" = release ] && flags=(--release)
  log "building sinkhole and bench-upstream ($profile); scratch folder $WORK"
  cargo build "${flags[@]}" --quiet -p sinkhole --bin sinkhole -p sinkhole-bench --bin bench-upstream
  local target
  target=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  SINKHOLE=$target/$profile/sinkhole
  UPSTREAM=$target/$profile/bench-upstream
}

# The server on one core, load and upstreams on the other, where there are two.
PIN_SERVER=() PIN_LOAD=()
if [ "$(nproc)" -ge 2 ]; then PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1); fi

# start_sinkhole CONFIG: runs sinkhole on it (pinned, log in $WORK/sinkhole.log; as root with
# --allow-root, since it refuses root unasked), sets DAEMON, and waits until it answers.
start_sinkhole() {
  local as_root=()
  [ "$(id -u)" = 0 ] && as_root=(--allow-root)
  "${PIN_SERVER[@]}" "$SINKHOLE" run -c "$1" "${as_root[@]}" >"$WORK/sinkhole.log" 2>&1 &
  DAEMON=$!
  PIDS+=("$DAEMON")
  for _ in $(seq 1 100); do
    grep -q "answering DNS" "$WORK/sinkhole.log" && return 0
    kill -0 "$DAEMON" 2>/dev/null || { cat "$WORK/sinkhole.log" >&2; exit 1; }
    sleep 0.1
  done
  log "sinkhole did not start in 10 s"
  exit 1
}

# start_upstream PORT: bench-upstream on 127.0.0.1:PORT, on the load core.
start_upstream() {
  "${PIN_LOAD[@]}" "$UPSTREAM" "127.0.0.1:$1" >"$WORK/upstream.log" 2>&1 &
  PIDS+=("$!")
}

# warm_cache: one pass of $WORK/mix.txt through the daemon on $BASE + 1, so that the measured run
# that follows finds the cache warm.
warm_cache() {
  timeout 120 "${PIN_LOAD[@]}" "$SINKHOLE" replay --server "127.0.0.1:$((BASE + 1))" --source 127.10.0.5 \
    --count 200000 "$WORK/mix.txt" >/dev/null 2>&1
}

# replay_measured RATE SECS: $WORK/mix.txt at RATE qps for SECS seconds, its JSON summary in
# $WORK/replay.json (sent, answered, lost_pct, qps).
replay_measured() {
  timeout $(($2 + 60)) "${PIN_LOAD[@]}" "$SINKHOLE" replay --server "127.0.0.1:$((BASE + 1))" --source 127.10.0.5 \
    --json --rate "$1" --duration "$2" "$WORK/mix.txt" >"$WORK/replay.json" 2>/dev/null
}

# write_big_list_and_mix LIST MIX: a 1,000,014-domain list (the 14 TikTok apexes and a million random names) and
# the mix workload (200k queries: 20 % TikTok names, the rest drawn Zipf-like from 20k), the same every time
# (seeded), for the benches that swap a big list under load (reload.sh, refresh.sh).
write_big_list_and_mix() {
    log "writing a 1,000,014-domain list and the mix workload"
    python3 - "$1" "$2" <<'PY'
import random, sys
apexes = ["tiktok.com", "tiktokv.com", "tiktokcdn.com", "tiktokcdn-us.com", "byteoversea.com", "ibytedtos.com",
          "ibyteimg.com", "musical.ly", "muscdn.com", "ttwstatic.com", "tiktokw.us", "byteimg.com", "tiktokv.us",
          "bytedance.map.fastly.net"]
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    f.write("\n".join(apexes) + "\n")
    for i in range(1_000_000):
        name = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(5, 14)))
        f.write(f"{name}{i}.{r.choice(['com', 'net', 'org', 'io'])}\n")
tiktok = [f"{p}.{a}" for a in apexes for p in ["www", "m", "v16m", "api16-normal-c-useast1a", "log"]]
with open(sys.argv[2], "w") as f:
    for _ in range(200_000):
        if r.random() < 0.2:
            f.write(f"{r.choice(tiktok)} A\n")
        else:
            f.write(f"www.site{int(r.paretovariate(1.0)) % 20_000:05d}.example A\n")
PY
}
