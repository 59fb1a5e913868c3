#!/usr/bin/env bash
# Move the flat tests/test_*.py into tests/{spinedata,spinemodels,cli}/ by the package they test, the helper
# modules into the package tests/helpers/, and rewrite the imports and path references that name them.
# Idempotent: rerun it after merging branches that add or change tests at the top of tests/.
# Files it has no rule for stay where they are and are listed at the end (they are still collected).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# destination of a top-level test file (path relative to tests/), empty = stays at the top
dest() {
  case "$1" in
    test_package_boundaries.py | test_doctests.py) echo "" ;;  # about every package at once
    test_cli_*.py) echo "cli/test_${1#test_cli_}" ;;
    test_spinemodels_cli.py) echo "cli/test_train_locate_audit.py" ;;
    test_physical_grid.py) echo "spinemodels/test_physical_grid.py" ;;  # spinemodels.data.stackio
    test_spinemodels_*.py) echo "spinemodels/test_${1#test_spinemodels_}" ;;
    test_calibration.py | test_demo.py | test_distributed.py | test_grading.py | test_memory.py | \
    test_slice_refine.py | test_stage1_checks.py | test_stage1_report.py) echo "spinemodels/$1" ;;
    test_conditions.py | test_crops.py | test_dcm2niix_agreement.py | test_dicomio.py | test_dicomscan.py | \
    test_geometry.py | test_intensity.py | test_metric.py | test_roles.py | test_stacks.py | \
    test_ingest*.py | test_store*.py | test_synth*.py) echo "spinedata/$1" ;;
    *) echo "?" ;;
  esac
}

mkdir -p tests/spinedata tests/spinemodels tests/cli tests/helpers
for package in tests tests/spinedata tests/spinemodels tests/cli tests/helpers; do
  [ -e "$package/__init__.py" ] || { : > "$package/__init__.py"; git add "$package/__init__.py"; }
done

# every test file name these rules were written for (so that a rerun still rewrites references to them)
KNOWN="test_calibration test_cli_score test_cli_startup test_conditions test_crops test_dcm2niix_agreement
  test_demo test_dicomio test_dicomscan test_distributed test_geometry test_grading test_ingest test_ingest_synth
  test_intensity test_memory test_metric test_physical_grid test_roles test_slice_refine test_spinemodels_cli
  test_spinemodels_config test_spinemodels_folds test_spinemodels_heatmaps test_spinemodels_locate
  test_spinemodels_placement test_spinemodels_training test_stacks test_stage1_checks test_stage1_report
  test_store test_store_fastwrite test_synth test_synth_severity"

declare -A MODULE=()  # old import name -> new dotted module
declare -A PATHS=()   # old path -> new path
for helper in dicom_writer ingest_data spinemodels_fakes; do
  MODULE[$helper]="tests.helpers.$helper"
  MODULE["tests.$helper"]="tests.helpers.$helper"
  PATHS["tests/$helper"]="tests/helpers/$helper"
  if [ -e "tests/$helper.py" ]; then git mv "tests/$helper.py" "tests/helpers/$helper.py"; fi
done
unknown=()
mapfile -t names < <({ for n in $KNOWN; do echo "$n.py"; done; for p in tests/test_*.py; do
  [ -e "$p" ] && basename "$p"; done; } | sort -u)
for name in "${names[@]}"; do
  target=$(dest "$name")
  if [ "$target" = "?" ]; then unknown+=("tests/$name"); continue; fi
  [ -z "$target" ] && continue
  if [ -e "tests/$name" ]; then git mv "tests/$name" "tests/$target"; fi
  MODULE[${name%.py}]="tests.$(echo "${target%.py}" | tr / .)"
  PATHS["tests/$name"]="tests/$target"
done
moved=()
for path in tests/spinedata/test_*.py tests/spinemodels/test_*.py tests/cli/test_*.py; do
  if [ -e "$path" ]; then moved+=("$path"); fi
done

# one level deeper: the repository root is parents[2] of a moved test file
for path in "${moved[@]}"; do
  sed -i 's/Path(__file__)\.resolve()\.parents\[1\]/Path(__file__).resolve().parents[2]/g' "$path"
done
# imports of moved modules (plain and inside subprocess code); sys.path.insert of tests/ is no longer needed
mapfile -t pyfiles < <(git ls-files 'tests/*.py' 'tests/**/*.py' | sort -u)
for old in "${!MODULE[@]}"; do
  new=${MODULE[$old]}
  sed -i -E "s/^(\s*)from ${old//./\\.} import /\1from ${new} import /" "${pyfiles[@]}"
done
sed -i '/^sys\.path\.insert(0, "tests")$/d' "${pyfiles[@]}"
# references by path in docs and docstrings
mapfile -t docfiles < <(git ls-files '*.md' 'spinedata/*.py' 'spinedata/**/*.py' 'spinemodels/*.py' \
  'spinemodels/**/*.py' 'cli/*.py' 'bench/*.py' 'tests/*.py' 'tests/**/*.py' | sort -u)
for old in "${!PATHS[@]}"; do
  new=${PATHS[$old]}
  { grep -lF "$old" "${docfiles[@]}" || true; } | xargs -r sed -i "s#${old//./\\.}\\b#${new}#g"
done

if [ ${#unknown[@]} -gt 0 ]; then
  echo "no rule for (left at tests/, still collected): ${unknown[*]}" >&2
fi
# the rewritten imports are first-party now: let ruff sort them (RUFF=path/to/ruff when not in .venv)
RUFF=${RUFF:-.venv/bin/ruff}
if [ -x "$RUFF" ] || command -v "$RUFF" > /dev/null; then
  "$RUFF" check --select I --fix -q tests || true
else
  echo "ruff not found: run 'ruff check --select I --fix tests' to sort the rewritten imports" >&2
fi
