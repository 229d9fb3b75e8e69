#!/usr/bin/env bash
# Run cdp_daily for one run date through Airflow (`airflow dags test`), then print its report.
# Usage: scripts/run_day.sh YYYY-MM-DD
set -euo pipefail
cd "$(dirname "$0")/.."
# Spark Connect: when spark_default is a spark_connect connection to a loopback server that is not running, run
# this script again under one (scripts/spark_connect.py run), started for it and stopped when it ends.
if [ -z "${CDP_SPARK_CONNECT_OWNED:-}" ] && python scripts/spark_connect.py needed; then
  exec python scripts/spark_connect.py run -- "$PWD/scripts/run_day.sh" "$@"
fi
run_date=${1:?usage: scripts/run_day.sh YYYY-MM-DD}
# The timetable's data interval for the run of logical date D+1 00:00 is [D, D+1): run date D.
logical_date=$(date -u -d "$run_date + 1 day" +%FT00:00:00+00:00)
log="$AIRFLOW_HOME/run-$run_date.log"
# The example's destinations deliver to loopback servers (connections demo_s3, demo_azure_blob, demo_gcs,
# demo_sftp): start those the workspace needs and whose connection the environment does not define, and stop
# them when the run is over, after showing what they received.
servers=(python scripts/local_servers.py)
kinds=$("${servers[@]}" needed)
if [ -n "$kinds" ]; then
  echo "==> starting loopback servers for the destinations: $kinds"
  # shellcheck disable=SC2086  # one word per server kind
  "${servers[@]}" start $kinds
  trap 'echo; echo "==> what the loopback servers received"; "${servers[@]}" show; "${servers[@]}" stop' EXIT
  eval "$("${servers[@]}" env)"
fi
echo "==> running cdp_daily for $run_date (log: $log)"
run_state() {
  airflow dags list-runs cdp_daily -o json 2>/dev/null | python -c '
import json, sys
runs = [r for r in json.loads(sys.stdin.read().strip().splitlines()[-1]) if r["logical_date"].replace(" ", "T").startswith(sys.argv[1][:19])]
print(runs[0]["state"] if runs else "missing")' "$logical_date"
}
airflow dags test cdp_daily "$logical_date" > "$log" 2>&1 || true
if [ "$(run_state)" != success ]; then
  echo "the run for $run_date failed; the end of its log:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
echo
cdp report --date "$run_date"
