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
