#!/usr/bin/env bash
# `make test-stress`: the whole suite while every core is kept busy by other processes, once with torch
# threads forced to 1 and once to 4, each time in a new random order (pytest-randomly). The busy
# processes are started here and stopped by PID, whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
cores=$(nproc)
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap stop EXIT INT TERM
for _ in $(seq "$cores"); do
  (exec "$PY" -c "while True: pass") &
  pids+=($!)
done
echo "==> test-stress: $cores busy processes (PIDs ${pids[*]}) on $cores cores"
status=0
mkdir -p build
records=()
for threads in 1 4; do
  echo "==> the whole suite, torch threads forced to $threads, random order"
  start=$(date +%s)
  log=build/test-stress-threads$threads.log
  seed=$(( (RANDOM << 15) | RANDOM ))  # a new order each time, recorded so that it can be repeated
  METAREP_TEST_THREADS=$threads OMP_NUM_THREADS=$threads "$PY" -m pytest -p no:cacheprovider --randomly-seed="$seed" \
    "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || status=1
  seconds=$(( $(date +%s) - start ))
  line=$(grep -E "^=* ?[0-9]+ (passed|failed)" "$log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
  echo "==> threads=$threads: $seconds s, exit $rc"
  records+=("{\"threads\": $threads, \"exit\": $rc, \"seconds\": $seconds, \"seed\": \"$seed\", \"summary\": \"$line\"}")
done
# the record of this run (docs/development.md quotes the committed copy, docs/data/test-stress.json)
joined=$(IFS=,; echo "${records[*]}")
printf '{"date": "%s", "cores": %s, "busy": %s, "runs": [%s]}\n' "$(date -u +%Y-%m-%d)" "$cores" "$cores" "$joined" \
  > build/test-stress.json
echo "==> wrote build/test-stress.json"
exit $status
