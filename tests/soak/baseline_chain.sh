#!/usr/bin/env bash
# Issue 6 figure: on an unchanged machine, `make diagnose BASELINE=reports/diagnosis.json` run twice
# in a row must exit 0 both times in at least 9 of 10 repetitions. Runs 2 x REPS diagnoses in a
# row, each against the previous one, keeps every report for the noise analysis
# (tests/soak/noise.py), and prints one line per run. Takes ~2.5 min per run.
set -u
cd "$(dirname "$0")/../.."
REPS=${REPS:-10}
KEEP=${KEEP:-reports/soak}
mkdir -p "$KEEP"
[ -f reports/diagnosis.json ] || make diagnose ARGS=--quiet >/dev/null 2>&1
cp reports/diagnosis.json "$KEEP/run-00.json"
for rep in $(seq 1 "$REPS"); do
  codes=""
  for half in 1 2; do
    n=$(( (rep - 1) * 2 + half ))
    make diagnose BASELINE=reports/diagnosis.json ARGS=--quiet > "$KEEP/run-$(printf %02d $n).log" 2>&1
    code=$?
    cp reports/diagnosis.json "$KEEP/run-$(printf %02d $n).json"
    codes="$codes $code"
    first=$(grep -m1 -E "^(REGRESSION|no safety regression)" "$KEEP/run-$(printf %02d $n).log")
    echo "rep $rep run $half: exit $code: $first"
  done
  echo "rep $rep:$codes"
done
