#!/usr/bin/env bash
# Meta-Dataset in miniature on 2 CPU cores: Meta-Dataset's variable-way variable-shot episodes
# (5 to 50 ways, up to 500 support images) over the offline glyph sources. Pretrain WRN-10-1 and
# Hyper-WRN-10-1 (variant 1) on glyphs-a, meta-train each with fo-Proto-MAML (--head proto
# --first-order, what Meta-Dataset reports) by plain MAML and by Meta-SGD (the best preset of
# docs/algorithms.md), on glyphs-a's variable episodes, then score every run on the test splits of
# glyphs-a (new classes of the training domain) and glyphs-b (other scripts: the cross-domain
# source) with `eval --benchmark glyphs-a,glyphs-b`, every seed in SEEDS (default 3); one
# `metahyper report` table (a column per model and algorithm, mean +- sd over seeds, average rank).
#
# Settings, fixed before the test splits were opened: the pretraining of cpu_common.sh; inner
# lr 0.01 (on 50 glyphs-a val episodes the pretrained WRN-10-1 with Proto-MAML's head scored 24.6%
# after 10 steps at 0.01 and 15.2% at 0.1, 23.9% with no step); 5 inner steps at training and test;
# 40 iterations of 2 episodes, outer Adam 1e-3; best.pt on glyphs-a val (20 episodes every 20
# iterations); 100 test episodes per source, the same for every run (--seed 0 of eval).
#
# Knobs (environment): RUNS (default runs/meta-dataset-cpu), ALGORITHMS ("maml meta-sgd"), HEAD
# (proto), ITERATIONS (40), and cpu_common.sh's (SEEDS, METAHYPER, DATA, PRE_EPOCHS, PRE_MILESTONES,
# EPISODES). Finished steps are skipped, so the script can be started again after a crash.
RUNS=${RUNS:-runs/meta-dataset-cpu}
source "$(dirname "$0")/cpu_common.sh"
ALGORITHMS=${ALGORITHMS:-maml meta-sgd}
HEAD=${HEAD:-proto}
ITERATIONS=${ITERATIONS:-40}

# lane MODEL: every seed of MODEL, one step after another (the two models' lanes run side by side).
lane() {
    local model=$1 seed dir algorithm meta json
    for seed in $SEEDS; do
        dir="$RUNS/seed$seed/$model"
        pretrain_glyphs "$model" "$seed" "$dir/pretrain"
        for algorithm in $ALGORITHMS; do
            meta="$dir/$algorithm-$HEAD"
            [[ -f "$meta/summary.json" ]] || timed "$meta" meta-train --train glyphs-a --episodes variable \
                --head "$HEAD" --first-order --select-on source --init "$dir/pretrain" --out "$meta" \
                --algorithm "$algorithm" --meta-batch 2 --iterations "$ITERATIONS" --inner-steps 5 \
                --eval-inner-steps 5 --inner-lr 0.01 --outer-lr 1e-3 --val-every 20 --val-episodes 20 \
                --save-every 20 --seed "$seed" --data-root "$DATA" --device cpu --quiet
            json="$meta/test-glyphs.json"
            [[ -f "$json" ]] || mh eval --checkpoint "$meta" --benchmark glyphs-a,glyphs-b --split test \
                --episodes "$EPISODES" --seed 0 --data-root "$DATA" --device cpu --quiet -o "$json"
        done
    done
}
run_lanes

jsons=()
for model in "${MODELS[@]}"; do
    for algorithm in $ALGORITHMS; do
        for seed in $SEEDS; do jsons+=("$RUNS/seed$seed/$model/$algorithm-$HEAD/test-glyphs.json"); done
    done
done
mh report "${jsons[@]}" --markdown "$RUNS/table.md"
wall_time
