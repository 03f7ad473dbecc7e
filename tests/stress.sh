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
for threads in 1 4; do
  echo "==> the whole suite, torch threads forced to $threads, random order"
  start=$(date +%s)
  METAREP_TEST_THREADS=$threads OMP_NUM_THREADS=$threads "$PY" -m pytest -p no:cacheprovider "$@" || status=1
  echo "==> threads=$threads: $(( $(date +%s) - start )) s"
done
exit $status
