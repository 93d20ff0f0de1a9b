#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend, each in its own process.
# The three backends run side by side (the tests are mostly single-threaded
# dispatch, so this roughly halves the wall time on 2 cores); each log is
# printed in full when its run ends. Extra arguments go to pytest. Fails when
# any backend fails or collects nothing (pytest exits 5 then).
set -u
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
declare -A pids
for backend in jax tensorflow torch; do
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider --durations=15 "$@" >"$logs/$backend.log" 2>&1 &
  pids[$backend]=$!
done
status=0
for backend in jax tensorflow torch; do
  wait "${pids[$backend]}"
  code=$?
  echo "=== KERAS_BACKEND=$backend (pytest exit code $code)"
  cat "$logs/$backend.log"
  [ "$code" -eq 0 ] || status=1
done
rm -rf "$logs"
exit $status
