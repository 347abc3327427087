#!/usr/bin/env bash
# The authors' 2025 rule as an arm of the experiment (experiment.RULE_ARMS, "pca rule"), in the background,
# resumable: on Cranfield (train_80 / test_20), then SciFact, first the rule's mining cost against (f)'s k-means
# (scripts/bench_rule.py, which also fills the embedding cache), then the experiment at the `full` budget, three
# seeds.
# (f) and random are not trained again: each work folder starts from the committed record of
# scripts/results/experiment_<data> (their first-stage runs, models' summaries, alphas and re-ranked runs), which
# the experiment reads as finished stages, so the report tests the new arm against their per-query figures. The
# record's config.json is left behind, as it names every arm of that experiment and this one names three.
# Every two minutes the report and the new arm's record are copied into scripts/results/experiment_<data>_rule/.
# Rerun the same command to pick up where it stopped.
#
#   HNM_WORK=/work/cache/rule HNM_DATA=../shared/data nohup nice -n 19 scripts/run_rule_arm.sh > rule.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${HNM_WORK:-/work/cache/rule}
PY=${PYTHON:-python}
DATA=${HNM_DATA:-../shared/data}
ARMS="ensemble+,random,pca rule"
mkdir -p "$WORK"

restore() {  # the committed record of (f), random and the first stages, once, into a fresh work folder
  local from=scripts/results/$1 to f
  to=$(realpath -m "$2")
  [ -f "$to/.restored" ] && return 0
  mkdir -p "$to"
  (cd "$from" && for f in runs/first-stage.* runs/bm25.test.trec runs/ensemble+-s* runs/random-s* \
                          models/ensemble+-s*/* models/random-s*/* mined/ensemble+.jsonl.stats.json \
                          mined/random.jsonl.stats.json; do
     [ -f "$f" ] || continue
     mkdir -p "$to/$(dirname "$f")"
     cp -n "$f" "$to/$f"
   done)
  touch "$to/.restored"
}

publish() {  # the report and the new arm's record, as run_experiments.sh publishes the others
  local from=$1 to=scripts/results/$2 f
  [ -d "$from" ] || return 0
  mkdir -p "$to"
  for f in "$from"/*.md "$from"/*.json "$from"/*.svg "$from"/runs/pca-rule* "$from"/models/pca\ rule-*/done.json \
           "$from"/models/pca\ rule-*/alpha.json "$from"/models/pca\ rule-*/tuning_queries.json \
           "$from"/mined/pca\ rule.jsonl.stats.json; do
    [ -f "$f" ] || continue
    f=${f#"$from"/}
    mkdir -p "$(dirname "$to/$f")"
    cmp -s "$from/$f" "$to/$f" || { cp "$from/$f" "$to/$f.tmp" && mv "$to/$f.tmp" "$to/$f"; }
  done
  return 0
}

watch() {
  while sleep 120; do
    publish "$WORK/cranfield-full" experiment_cranfield_rule
    publish "$WORK/scifact-full" experiment_scifact_rule
  done
}
watch &
WATCHER=$!
trap 'kill $WATCHER 2>/dev/null || true' EXIT

[ -f scripts/results/bench_rule_cranfield.json ] || $PY scripts/bench_rule.py --data "$DATA/cranfield" \
  --split train_80 --quiet
restore experiment_cranfield "$WORK/cranfield-full"
$PY -m hnm experiment --data "$DATA/cranfield" --train-split train_80 --test-split test_20 --budget full \
  --arms "$ARMS" --out "$WORK/cranfield-full" --quiet
publish "$WORK/cranfield-full" experiment_cranfield_rule
[ -f scripts/results/bench_rule_scifact.json ] || $PY scripts/bench_rule.py --data "$DATA/scifact" --quiet
restore experiment_scifact "$WORK/scifact-full"
$PY -m hnm experiment --data "$DATA/scifact" --budget full --arms "$ARMS" --out "$WORK/scifact-full" --quiet
publish "$WORK/scifact-full" experiment_scifact_rule
