#!/usr/bin/env bash
# One daily activation of the example workspace, end to end, through Airflow.
# CDP_DEMO_DATE (default: yesterday, UTC) is the run date; CDP_DEMO_PROFILES the number of persons.
set -euo pipefail
cd "$(dirname "$0")/.."
run_date=${CDP_DEMO_DATE:-$(date -u -d yesterday +%F)}
profiles=${CDP_DEMO_PROFILES:-5000}

echo "==> generating landed files for $run_date ($profiles persons) into $CDP_LANDING"
cdp generate --profiles "$profiles" --days 1 --seed 42 --end-date "$run_date" --out "$CDP_LANDING"
scripts/run_day.sh "$run_date"
