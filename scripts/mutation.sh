#!/usr/bin/env bash
# Mutation testing of csa's numeric and integrity core with mutmut (not in CI; SAMPLE below: under an hour).
#
#   scripts/mutation.sh                 every module in the map below, one after another
#   scripts/mutation.sh csa calibration  only those (names from the map)
#   scripts/mutation.sh --list          the map
#
# Each module is mutated in its own copy of the tree (tracked and untracked-not-ignored files) under
# $MUTATION_DIR (default /tmp/csa-mutation/<name>), and each mutant runs only the tests of the map
# that cover the mutated function (mutmut records which tests call which function first). Results:
# $MUTATION_DIR/summary.log (one line per module: killed, survived, no tests, timeout, score) and
# $MUTATION_DIR/<name>/survivors.txt (each surviving mutant's diff). Score = (killed + timeout) /
# mutants checked; "no tests" mutants count as survivors. A second line per module gives the score
# without the survivors classified as equivalent in scripts/mutation-equivalents.tsv and names the
# unclassified ones. The last run's figures and the classification of every survivor are in docs/testing.md.
#
# Every mutant of the nine modules (~4,600) takes about 50 minutes on 2 cores; SAMPLE=N checks a seeded
# random sample of N mutants per module (SEED, default 0: the same sample each time for the same code) and
# reports the score with its Wilson 95% interval: SAMPLE=300 over all nine modules took 12 minutes here.
#
# Environment: PYTHON (default .venv/bin/python, else python3), JOBS (mutmut children, default 2),
# SAMPLE, SEED, MUTATION_DIR, RESUME=1 (go on with a module's stopped run in its existing copy: mutmut checks only
# the mutants that have no result yet). mutmut comes from the `mutation` extra: pip install -e '.[mutation]'.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}"
JOBS="${JOBS:-2}"
OUT="${MUTATION_DIR:-/tmp/csa-mutation}"

# name | module | pytest arguments (the tests that cover it; kept to those that cost seconds:
# the loopback-Hub tests need a session fixture of 15-50 s, rebuilt for every mutant, and so do
# test_quantize.py's quantized-graph tests: calibration takes its unit tests only)
# (stages/check/rules.py is not here: it is tables only (rules, op limits), and mutmut mutates function
# bodies; tests/test_check.py pins the tables through real graphs of every family)
MAP=(
  "csa|csa_cli/models/csa.py|tests/test_oracles_csa.py tests/test_models.py tests/test_reference_import.py tests/test_timm_registry.py"
  "preprocess|csa_cli/data/preprocess.py|tests/test_oracles_preprocess.py tests/test_preprocess.py"
  "calibration|csa_cli/stages/quantize/calibration.py|tests/test_oracles_calibration.py tests/test_calibration_units.py tests/test_quantize.py::test_entropy_threshold_matches_bin_by_bin_reference tests/test_quantize.py::test_entropy_clips_outliers_that_minmax_keeps tests/test_quantize.py::test_histogram_grows_without_losing_counts tests/test_quantize.py::test_cache_round_trip_is_bit_exact tests/test_quantize.py::test_cache_hex_is_float32_bits tests/test_quantize.py::test_cache_parser_names_what_is_wrong tests/test_quantize.py::test_calibration_sample_is_seeded_and_class_balanced tests/test_quantize.py::test_calibration_sample_takes_all_when_short"
  "policy|csa_cli/stages/quantize/policy.py|tests/test_oracles_quant.py"
  "qdq|csa_cli/graph/qdq.py|tests/test_oracles_quant.py"
  "costmodel|csa_cli/graph/costmodel.py|tests/test_oracles_costmodel.py tests/test_costmodel.py tests/test_mutants_graph.py"
  "traffic|csa_cli/graph/traffic.py|tests/test_traffic.py tests/test_costmodel.py tests/test_mutants_graph.py"
  "checks|csa_cli/stages/check/checks.py|tests/test_check.py tests/test_check_rules_units.py"
  "store|csa_cli/store.py|tests/test_oracles_store.py tests/test_oracles_integrity.py::test_builder_failing_after_partial_output_leaves_no_artifact_and_no_temp_folder tests/test_oracles_integrity.py::test_failed_rebuild_keeps_the_previous_complete_artifact"
)

# mutmut runs each mutant's tests in a fork of a process that has already run torch: a fork of a process
# whose OpenMP pool is running can hang (then mutmut reports a "timeout", i.e. killed, for a mutant that
# was never tested), so torch gets one thread (OMP/MKL_NUM_THREADS=1; JOBS forks run at once).
run_mutmut() { (cd "$work" && env -u PYTHONPATH OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$MUTMUT" run --max-children "$JOBS" "$@"); }

list_map() { for row in "${MAP[@]}"; do IFS='|' read -r name module tests <<<"$row"; printf '%-12s %-44s %s\n' "$name" "$module" "$tests"; done; }

if [[ "${1:-}" == "--list" ]]; then list_map; exit 0; fi
for knob in SAMPLE SEED JOBS; do
  value="${!knob:-}"
  if [ -n "$value" ] && ! [[ "$value" =~ ^[0-9]+$ ]]; then echo "Error: $knob=$value is not a whole number; e.g. SAMPLE=50 SEED=1 JOBS=2" >&2; exit 2; fi
done
if [ "${SAMPLE:-}" = 0 ] || [ "$JOBS" = 0 ]; then echo "Error: SAMPLE and JOBS must be at least 1" >&2; exit 2; fi
"$PYTHON" -c "import mutmut" 2>/dev/null || { echo "Error: mutmut is not installed for $PYTHON; run: pip install -e '.[mutation]'" >&2; exit 2; }
MUTMUT="$(dirname "$PYTHON")/mutmut"
[ -x "$MUTMUT" ] || MUTMUT=mutmut

wanted=("$@")
selected=()
for row in "${MAP[@]}"; do
  IFS='|' read -r name module tests <<<"$row"
  if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]]; then selected+=("$row"); fi
done
[ ${#selected[@]} -gt 0 ] || { echo "Error: no module named ${wanted[*]}; see scripts/mutation.sh --list" >&2; exit 2; }

mkdir -p "$OUT"
commit="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- csa_cli tests || echo '+changes')"

for row in "${selected[@]}"; do
  IFS='|' read -r name module tests <<<"$row"
  if [ ! -f "$ROOT/$module" ]; then
    echo "$(date -u +%FT%TZ) $name: $module does not exist here, skipped" | tee -a "$OUT/summary.log"
    continue
  fi
  work="$OUT/$name"
  if [ "${RESUME:-0}" = 1 ] && [ -f "$work/setup.cfg" ]; then
    echo "$(date -u +%FT%TZ) $name: resuming in $work" | tee -a "$OUT/summary.log"
  else
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$ROOT" && git ls-files -co --exclude-standard -- csa_cli tests zoo docs pyproject.toml | tar -cf - -T -) | tar -xf - -C "$work"
    {
      echo "[mutmut]"
      echo "source_paths = csa_cli"
      echo "only_mutate = $module"
      # the manifest, and the docs that tests/test_check.py reads to check every rule is documented
      echo "also_copy ="
      echo "    zoo"
      echo "    docs"
      echo "pytest_add_cli_args = -p no:cacheprovider"
      # a mutant that makes a resize or a search loop huge is caught by its timeout; mutmut's default
      # (15 x the tests' time) would spend minutes on each
      echo "timeout_multiplier = 5.0"
      echo "pytest_add_cli_args_test_selection ="
      for arg in $tests; do echo "    $arg"; done  # one argument a line
    } >"$work/setup.cfg"
  fi
  start=$(date +%s)
  echo "$(date -u +%FT%TZ) $name: mutating $module with $tests (commit $commit)" | tee -a "$OUT/summary.log"
  # A test's `python -m csa_cli` subprocess imports the installed csa_cli, not the mutant, so only
  # in-process tests can kill a mutant.
  if [ -n "${SAMPLE:-}" ]; then
    # mutmut makes every mutant and maps tests to functions first, then stops at a filter that matches none
    run_mutmut "no-such-mutant" >"$work/generate.log" 2>&1 || true
    (cd "$work" && "$MUTMUT" results --all true >"$work/all.txt" 2>&1) || true
    mapfile -t picked < <("$PYTHON" - "$work/all.txt" "$SAMPLE" "${SEED:-0}" <<'EOF'
import random, sys
names = sorted({line.split(":")[0].strip() for line in open(sys.argv[1], encoding="utf-8") if "__mutmut_" in line})
for name in random.Random(int(sys.argv[3])).sample(names, min(int(sys.argv[2]), len(names))):
    print(name)
EOF
    )
    echo "$(date -u +%FT%TZ) $name: a sample of ${#picked[@]} of $(grep -c __mutmut_ "$work/all.txt") mutants (seed ${SEED:-0})" | tee -a "$OUT/summary.log"
    if [ ${#picked[@]} -eq 0 ]; then
      echo "$name: no mutants listed; see $work/generate.log" >>"$OUT/summary.log"
      continue
    fi
    run_mutmut "${picked[@]}" >"$work/run.log" 2>&1 || echo "$name: mutmut exited $?" >>"$OUT/summary.log"
  else
    run_mutmut >"$work/run.log" 2>&1 || echo "$name: mutmut exited $?" >>"$OUT/summary.log"
  fi
  (cd "$work" && "$MUTMUT" results --all true >"$work/results.txt" 2>&1) || true
  "$PYTHON" "$ROOT/scripts/mutation_equivalents.py" --raw "$work/results.txt" "$name" "$module" "$(($(date +%s) - start))" >>"$OUT/summary.log"
  tail -n 1 "$OUT/summary.log"
  : >"$work/survivors.txt"
  { grep -E ': (survived|no tests|suspicious)$' "$work/results.txt" || true; } | while IFS=: read -r mutant status; do
    mutant="$(echo "$mutant" | xargs)"
    { echo "### $mutant ($(echo "$status" | xargs))"; (cd "$work" && "$MUTMUT" show "$mutant" 2>&1 | sed -n '2,$p'); echo; } >>"$work/survivors.txt"
  done
  # the score without the survivors classified as equivalent mutants (scripts/mutation-equivalents.tsv)
  "$PYTHON" "$ROOT/scripts/mutation_equivalents.py" "$work/results.txt" "$work/survivors.txt" "$ROOT/scripts/mutation-equivalents.tsv" "$name" | tee -a "$OUT/summary.log"
done
echo "summary: $OUT/summary.log"
