#!/usr/bin/env bash
# The few-label measurements (issue: few labelled questions) in the background, cheapest first, resumable: rerun
# the same command and every finished stage is skipped (each script caches its stages under $HNM_WORK).
#
#   1. the SciFact learning curve's small sizes (25, 50, 100 queries; 3 seeds), both recipes, in float32 so that a
#      machine with bfloat16 and one without add to the same curve (learning_curve.py refuses to mix them);
#   2. the Cranfield headline: `hnm fit --recipe auto`, train_80 -> test_20, 3 seeds (few_labels.py; fit trains
#      in float32, its default);
#   3. the curve's large sizes (200, 400, all 809);
#   4. the levers on Cranfield's tuning split (ablate_few_labels.py), float32 as the curve.
# learning_curve.py commits its files as each (N, seed) lands (--commit); the others' files are written into
# scripts/results/ and committed by hand.
#
#   HNM_WORK=/work/cache/fewlabels HNM_DATA=../shared/data nohup scripts/run_few_labels.sh >> few.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${HNM_WORK:-/work/cache/fewlabels}
PY=${PYTHON:-python}
DATA=${HNM_DATA:-../shared/data}
RES=${HNM_RESULTS:-scripts/results}

curve() {  # sizes..., each size in both recipes before the next
  local size recipe out
  for size in "$@"; do
    for recipe in default few-label; do
      out=$RES/learning_curve.json
      [ $recipe = default ] || out=$RES/learning_curve_few_label.json
      $PY scripts/learning_curve.py --data "$DATA/scifact" --work "$WORK/curve-float32" --recipe $recipe \
        --precision float32 --sizes "$size" --output "$out" --commit --quiet
    done
  done
}

curve 25 50 100
$PY scripts/few_labels.py --data "$DATA/cranfield" --work "$WORK/fit" --output "$RES/few_labels.json" --quiet
curve 200 400 0
$PY scripts/ablate_few_labels.py --data "$DATA/cranfield" --train-split train_80 \
  --work "$WORK/levers-cranfield" --output "$RES/few_labels_cranfield.json" \
  --precision float32 --quiet
