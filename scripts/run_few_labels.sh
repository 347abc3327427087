#!/usr/bin/env bash
# The few-label measurements (issue: few labelled questions) in the background, in the order below, resumable: rerun
# the same command and every finished stage is skipped (each script caches its stages under $HNM_WORK).
#
#   1. the levers that choose the training recipes, on tuning splits only (ablate_few_labels.py, float32):
#      Cranfield's two teachers; at SciFact's 50 labelled queries cross-fitting (alpha and epochs chosen out of fold
#      on the labels, no tuning split) and the floor it is measured against, then the other levers; then
#      Cranfield's negatives mined by BM25 (the experiment's arm c) and its base. A lever measured before the
#      "labels' alpha" column (the alpha fit would choose on the labels alone) is measured again, not retrained;
#   2. the SciFact learning curve's small sizes (25, 50, 100 queries; 3 seeds) in the default recipe, in float32 so
#      that a machine with bfloat16 and one without add to the same curve (learning_curve.py refuses to mix them);
#   3. the few-label recipe's curve at the small sizes;
#   4. the Cranfield headline: `hnm fit --recipe auto`, train_80 -> test_20, 3 seeds (few_labels.py; bfloat16 where
#      the CPU has it, each seed committed with its precision as it lands);
#   5. the curve's large sizes (200, 400, all 809) in the default recipe;
#   6. Cranfield's other levers, then the few-label curve at 200 (fit's auto tries it below 400 queries), 400 and
#      809 for the record.
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

levers cranfield few_labels_cranfield.json --train-split train_80 --work "$WORK/levers-cranfield" \
  --levers "fit's few-label recipe: distil the ensemble, alone (MarginMSE)" "distil the hybrid, alone (MarginMSE)"
levers scifact few_labels_scifact_n50.json --train-queries 50 --work "$WORK/levers-scifact" \
  --levers "cross-fitted: alpha and epochs in 5 folds of the labels, at least 1,000 steps" \
  "at least 1,000 steps (more epochs)"
levers scifact few_labels_scifact_n50.json --train-queries 50 --work "$WORK/levers-scifact"
levers cranfield few_labels_cranfield.json --train-split train_80 --work "$WORK/levers-cranfield" \
  --levers "negatives mined by BM25" "base (the default recipe)"
curve default 25 50 100
curve few-label 25 50 100
$PY scripts/few_labels.py --data "$DATA/cranfield" --work "$WORK/fit" --output "$RES/few_labels.json" \
  --precision auto --commit --quiet
curve default 200 400 0
levers cranfield few_labels_cranfield.json --train-split train_80 --work "$WORK/levers-cranfield"
curve few-label 200 400 0
