#!/usr/bin/env bash
# Runs the suite on both Airflow lines at once (2 cores; the end-to-end tests mostly wait on
# Airflow processes): the full suite on Airflow 3 in .venv, and on Airflow 2.11 in .venv-af2 the
# unit and integration tests plus the end-to-end tests marked af2. Prints the Airflow 2.11 log
# after the Airflow 3 one; fails if either fails.
set -uo pipefail
cd "$(dirname "$0")/.."
venv3=${VENV:-.venv}
venv2=${VENV2:-.venv-af2}
log2=$(mktemp)
trap 'rm -f "$log2"' EXIT
PATH="$PWD/$venv2/bin:$PATH" "$venv2/bin/pytest" -q -p no:cacheprovider --durations=15 -m "not e2e or af2" "$@" >"$log2" 2>&1 &
pid2=$!
echo "== Airflow 3 ($venv3): full suite"
PATH="$PWD/$venv3/bin:$PATH" "$venv3/bin/pytest" -q -p no:cacheprovider --durations=15 "$@"
rc3=$?
wait "$pid2"
rc2=$?
echo "== Airflow 3 exit $rc3; Airflow 2.11 exit $rc2. Airflow 2.11 ($venv2): unit, integration, e2e marked af2"
cat "$log2"
[ "$rc3" -eq 0 ] && [ "$rc2" -eq 0 ]
