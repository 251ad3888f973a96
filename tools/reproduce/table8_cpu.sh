#!/usr/bin/env bash
# A CPU-sized Table 8 on the built-in glyphs (no download): pretrain and meta-train on glyphs-a,
# test on glyphs-b (another set of scripts: cross-domain), WRN-10-1 vs Hyper-WRN-10-1 (variant 1),
# second-order MAML, 5-way 1-shot and 5-shot, every seed in SEEDS (default 3), then
# `metahyper report` (per seed and over seeds), the movement plot (Figure 4) and the validation
# curves (Figure 5). Results and settings: docs/table8-cpu.md.
#
# Protocol: glyphs-b is opened only by the final `metahyper eval`; meta-training selects best.pt
# on glyphs-a's val classes (--select-on source) and validates on nothing else. The sizes below
# were fixed in advance to fit about 30 minutes on 2 shared CPU cores, not tuned on any split; they
# are not the paper's (Sun et al.'s 50 inner steps at lr 0.01 over 10,000 tasks do not fit a CPU):
# inner lr 0.1 with 5 / 10 inner steps (as `metahyper demo`), 50 iterations of 2 tasks; pretraining as
# the demo's (6 epochs of batch 64, lr 0.05 x0.2 after epochs 3 and 4: 2 epochs of batch 128 left
# the glyphs-a val accuracy at chance), pretrain's defaults otherwise (Nesterov momentum,
# reflection-padded crops). The two models run side by side (one process each, one thread each).
#
# Knobs (environment): RUNS (default runs/table8-cpu), SEEDS ("0 1 2"), METAHYPER (default
# metahyper), DATA (glyphs cache root, default $RUNS/data, built at 16x16 if missing), and the sizes
# PRE_EPOCHS, PRE_MILESTONES, ITERATIONS, VAL_EVERY, EPISODES (test episodes per model, seed and shot count). Finished steps
# are skipped, so the script can be started again after a crash.
RUNS=${RUNS:-runs/table8-cpu}
source "$(dirname "$0")/cpu_common.sh"
ITERATIONS=${ITERATIONS:-50}
VAL_EVERY=${VAL_EVERY:-25}

# lane MODEL: every seed of MODEL, one step after another (the two models' lanes run side by side).
lane() {
    local model=$1 seed dir shots meta json
    for seed in $SEEDS; do
        dir="$RUNS/seed$seed/$model"
        pretrain_glyphs "$model" "$seed" "$dir/pretrain"
        for shots in 1 5; do
            meta="$dir/meta-${shots}shot"
            [[ -f "$meta/summary.json" ]] || timed "$meta" meta-train --train glyphs-a --select-on source \
                --init "$dir/pretrain" --out "$meta" --ways 5 --shots "$shots" --queries 5 --meta-batch 2 --iterations "$ITERATIONS" \
                --inner-steps 5 --eval-inner-steps 10 --inner-lr 0.1 --outer-lr 1e-3 --lr-halve-every 1000 \
                --val-every "$VAL_EVERY" --val-episodes 20 --save-every "$VAL_EVERY" --seed "$seed" --data-root "$DATA" \
                --device cpu --quiet
            json="$meta/test-glyphs-b-${shots}shot.json"
            [[ -f "$json" ]] || mh eval --checkpoint "$meta" --dataset glyphs-b --split test --ways 5 --shots "$shots" \
                --queries 15 --episodes "$EPISODES" --seed 0 --data-root "$DATA" --device cpu --quiet -o "$json"
        done
    done
}
run_lanes

title="5-way accuracy (%) on glyphs-b test, meta-trained on glyphs-a (CPU Table 8), $EPISODES episodes"
for seed in $SEEDS; do
    mh report "$RUNS/seed$seed" --title "$title, seed $seed" --markdown "$RUNS/table-seed$seed.md"
done
# shellcheck disable=SC2046
mh report $(for s in $SEEDS; do echo "$RUNS/seed$s"; done) --title "$title, mean +- sd over seeds $SEEDS" \
    --markdown "$RUNS/table.md" --csv "$RUNS/table.csv" --json "$RUNS/table.json"
first=${SEEDS%% *}
mh movement-plot "$RUNS/seed$first/hyper-wrn-10-1/meta-1shot" "$RUNS/seed$first/wrn-10-1/meta-1shot" \
    --smooth 5 -o "$RUNS/figure4-movement.png"
for shots in 1 5; do
    mh curves "$RUNS/seed$first/hyper-wrn-10-1/meta-${shots}shot" "$RUNS/seed$first/wrn-10-1/meta-${shots}shot" \
        --smooth 5 -o "$RUNS/figure5-curves-${shots}shot.png"
done
wall_time
