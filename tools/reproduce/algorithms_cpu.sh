#!/usr/bin/env bash
# The MAML family on the CPU Table 8 proxy (table8_cpu.sh's data, models and budget): pretrain
# WRN-10-1 and Hyper-WRN-10-1 (variant 1) on glyphs-a, then for every --algorithm preset in
# ALGORITHMS meta-train on glyphs-a (selected on glyphs-a val) and test 5-way 1-shot and 5-shot on
# glyphs-b, every seed in SEEDS (default 3); one `metahyper report` table (a row per model and
# preset, mean +- sd over seeds) and each meta-training's wall time (meta-train.seconds beside it).
#
# Protocol and sizes as table8_cpu.sh (its header says why): second order, 5 inner steps at lr 0.1
# (10 at test), 50 iterations of 2 tasks, 5 queries; glyphs-b is opened only by the final eval.
#
# maml++ keeps MAML++'s proportions of its 150 epochs within ITERATIONS: one iteration per epoch, the
# multi-step loss over the first 10% (15/150) and first order for the first third (50/150).
#
# Knobs (environment): RUNS (default runs/algorithms-cpu), SEEDS ("0 1 2"), ALGORITHMS ("maml fomaml
# anil boil meta-sgd maml++"), HEAD (learned), METAHYPER, DATA, PRE_EPOCHS, PRE_MILESTONES, ITERATIONS,
# VAL_EVERY, EPISODES. Finished steps are skipped, so the script can be started again after a crash.
RUNS=${RUNS:-runs/algorithms-cpu}
source "$(dirname "$0")/cpu_common.sh"
ALGORITHMS=${ALGORITHMS:-maml fomaml anil boil meta-sgd maml++}
HEAD=${HEAD:-learned}
ITERATIONS=${ITERATIONS:-50}
VAL_EVERY=${VAL_EVERY:-25}

# lane MODEL: every seed of MODEL, one step after another (the two models' lanes run side by side).
lane() {
    local model=$1 seed dir algorithm shots meta json extra
    for seed in $SEEDS; do
        dir="$RUNS/seed$seed/$model"
        pretrain_glyphs "$model" "$seed" "$dir/pretrain"
        for algorithm in $ALGORITHMS; do
            for shots in 1 5; do
                meta="$dir/$algorithm-$HEAD-${shots}shot"
                if [[ ! -f "$meta/summary.json" ]]; then
                    extra=()
                    [[ $algorithm == maml++ ]] && extra=(--iterations-per-epoch 1 --msl-epochs $(( (ITERATIONS + 9) / 10 ))
                                                         --first-order-iterations $(( ITERATIONS / 3 )))
                    timed "$meta" meta-train --train glyphs-a --select-on source --init "$dir/pretrain" --out "$meta" \
                        --algorithm "$algorithm" --head "$HEAD" --ways 5 --shots "$shots" --queries 5 --meta-batch 2 \
                        --iterations "$ITERATIONS" --inner-steps 5 --eval-inner-steps 10 --inner-lr 0.1 --outer-lr 1e-3 \
                        --lr-halve-every 1000 --val-every "$VAL_EVERY" --val-episodes 20 --save-every "$VAL_EVERY" \
                        --seed "$seed" --data-root "$DATA" --device cpu --quiet "${extra[@]}"
                fi
                json="$meta/test-glyphs-b-${shots}shot.json"
                [[ -f "$json" ]] || mh eval --checkpoint "$meta" --dataset glyphs-b --split test --ways 5 \
                    --shots "$shots" --queries 15 --episodes "$EPISODES" --seed 0 --data-root "$DATA" --device cpu \
                    --quiet -o "$json"
            done
        done
    done
}
run_lanes

title="5-way accuracy (%) on glyphs-b test, meta-trained on glyphs-a by each preset ($HEAD head), $EPISODES episodes"
# shellcheck disable=SC2046
mh report $(for s in $SEEDS; do echo "$RUNS/seed$s"; done) --title "$title, mean +- sd over seeds $SEEDS" \
    --markdown "$RUNS/table.md" --csv "$RUNS/table.csv" --json "$RUNS/table.json"
wall_time
