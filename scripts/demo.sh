#!/usr/bin/env bash
# One daily activation of the example workspace, end to end, through Airflow (`airflow dags test`).
# CDP_DEMO_DATE (default: yesterday, UTC) is the run date; CDP_DEMO_PROFILES the number of persons.
set -euo pipefail
cd "$(dirname "$0")/.."
run_date=${CDP_DEMO_DATE:-$(date -u -d yesterday +%F)}
profiles=${CDP_DEMO_PROFILES:-5000}

echo "==> generating landed files for $run_date ($profiles persons) into $CDP_LANDING"
cdp generate --profiles "$profiles" --days 1 --seed 42 --end-date "$run_date" --out "$CDP_LANDING"

echo "==> running cdp_daily for $run_date (logs: $AIRFLOW_HOME/logs)"
# The timetable's data interval for a run of logical date D+1 00:00 is [D, D+1): run date D.
logical_date=$(date -u -d "$run_date + 1 day" +%FT00:00:00+00:00)
airflow dags test cdp_daily "$logical_date" > "$AIRFLOW_HOME/demo-$run_date.log" 2>&1 || {
  echo "the run failed; the end of its log:" >&2; tail -n 60 "$AIRFLOW_HOME/demo-$run_date.log" >&2; exit 1; }

echo
cdp report --date "$run_date"
