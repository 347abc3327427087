#!/usr/bin/env bash
# The few-label measurements (issue: few labelled questions) in the background, in the order below, resumable: rerun
# the same command and every finished run is skipped: each script trains only what its committed JSON lacks, and
# caches the stages of the run in progress under $HNM_WORK.
#
#   1. the Cranfield headline: `hnm fit --recipe auto`, train_80 -> test_20, 3 seeds (few_labels.py; bfloat16
#      where the CPU has it, each seed committed with its precision as it lands);
#   2. the SciFact learning curve's small sizes (50, 100 queries; 3 seeds) in the default recipe, in float32 so
#      that a machine with bfloat16 and one without add to the same curve (learning_curve.py refuses to mix them);
#   3. the few-label recipe's curve at the small sizes (25, 50, 100);
#   4. the default curve's large sizes (200, 400, all 809);
#   5. Cranfield's other levers (ablate_few_labels.py, float32, on train_80's tuning split), then the few-label
#      curve at 200 (fit's auto tries it below 400 queries), 400 and 809 for the record;
#   6. the SciFact levers at 50 labels that lack the "labels' alpha" column (the alpha fit would choose on the
#      labels alone), measured again.
# Each script commits its files as each run lands (--commit).
#
#   HNM_WORK=/work/cache/fewlabels HNM_DATA=../shared/data nohup scripts/run_few_labels.sh >> few.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${HNM_WORK:-/work/cache/fewlabels}
PY=${PYTHON:-python}
DATA=${HNM_DATA:-../shared/data}
RES=${HNM_RESULTS:-scripts/results}

curve() {  # recipe, sizes...
  local recipe=$1 size out=$RES/learning_curve.json
  shift
  [ "$recipe" = default ] || out=$RES/learning_curve_${recipe//-/_}.json
  for size in "$@"; do
    $PY scripts/learning_curve.py --data "$DATA/scifact" --work "$WORK/curve-float32" --recipe "$recipe" \
      --precision float32 --sizes "$size" --output "$out" --commit --quiet
  done
}

levers() {  # data, output, extra arguments...: every lever in ablate_few_labels.py's order, each committed
  local data=$1 output=$2
  shift 2
  $PY scripts/ablate_few_labels.py --data "$DATA/$data" --output "$RES/$output" --precision float32 --commit \
    --quiet "$@"
}

# Ordered by what the issue still lacks; every step lands run by run, so a machine whose caches are gone loses at
# most the run it was in. Landed before this order: the levers that chose the recipes, the curve's 25 queries.
$PY scripts/few_labels.py --data "$DATA/cranfield" --work "$WORK/fit" --output "$RES/few_labels.json" \
  --precision auto --commit --quiet
curve default 50 100
curve few-label 25 50 100
curve default 200 400 0
levers cranfield few_labels_cranfield.json --train-split train_80 --work "$WORK/levers-cranfield"
curve few-label 200 400 0
# last: the SciFact levers measured before the "labels' alpha" column, retrained where their checkpoints are gone
levers scifact few_labels_scifact_n50.json --train-queries 50 --work "$WORK/levers-scifact"
