#!/usr/bin/env bash
# Run the whole suite N times in a row (default 5) while one busy-loop process per core keeps the
# machine loaded, and report each run's result: races that an idle machine hides show up here.
#
#   tests/stress.sh [N] [pytest args...]      (make test-stress, STRESS_RUNS=N)
#
# The busy loops are this script's own children, each bounded in time (STRESS_BUSY_SECONDS,
# default 15 minutes a run) and stopped by their pid when the script ends, however it ends.
# Each run's output is kept in $STRESS_LOGS (default .stress/), named run-<i>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-${STRESS_RUNS:-5}}"
[ $# -gt 0 ] && shift
python="${PYTHON:-.venv/bin/python}"
logs="${STRESS_LOGS:-.stress}"
cores="$(nproc 2>/dev/null || echo 2)"
busy_seconds="${STRESS_BUSY_SECONDS:-$((runs * 900))}"
mkdir -p "$logs"

busy=()
stop_busy() {
  for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${busy[@]}"; do wait "$pid" 2>/dev/null; done
  busy=()
}
trap stop_busy EXIT
trap 'stop_busy; exit 130' INT TERM

for _ in $(seq 1 "$cores"); do
  "$python" -c "import time
end = time.monotonic() + $busy_seconds
while time.monotonic() < end:
    pass" &
  busy+=("$!")
done
echo "stress: $runs runs of the suite, $cores busy loops (pids ${busy[*]}, at most ${busy_seconds}s)"

failed=0
for i in $(seq 1 "$runs"); do
  log="$logs/run-$i.log"
  start=$(date +%s)
  "$python" -m pytest -q -p no:cacheprovider -rfE "$@" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  summary="$(tail -n 1 "$log")"
  if [ "$rc" -eq 0 ]; then
    echo "run $i: ok in ${took}s: $summary"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED (exit $rc) in ${took}s: $summary  [$log]"
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
  fi
done
stop_busy
echo "stress: $failed of $runs runs failed"
[ "$failed" -eq 0 ]
