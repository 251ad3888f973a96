# Shared settings and helpers of the paper-reproduction scripts (sourced, not run).
#
# Environment knobs (all optional):
#   RUNS     where run directories go            (default: runs/paper)
#   DEVICE   cpu | cuda | cuda:N | auto           (default: auto)
#   SEEDS    seeds averaged as in the paper       (default: "0 1 2", the paper's 3 runs)
#   WORKERS  DataLoader workers                   (default: 8, at most the CPUs)
#   METAHYPER  the command                        (default: metahyper; several GPUs:
#              METAHYPER="torchrun --nproc_per_node 8 -m metahyper", see the README's multi-GPU section)
# The data caches must exist: `metahyper prepare cifar10|cifar100|fc100 --source ...` and
# `metahyper prepare miniimagenet --source ...` (see `metahyper datasets`).
# Every step is skipped when its run finished (summary.json) and resumed when it was interrupted
# (config.json: --resume continues from last.pt, or starts again when it was killed before one), so
# a script can simply be started again after a crash.
set -euo pipefail
RUNS=${RUNS:-runs/paper}
DEVICE=${DEVICE:-auto}
SEEDS=${SEEDS:-0 1 2}
WORKERS=${WORKERS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}
METAHYPER=${METAHYPER:-metahyper}

# run_stage OUT COMMAND [ARGS...]: `metahyper COMMAND --out OUT ARGS`, skipped/resumed as above.
run_stage() {
    local out=$1 command=$2
    shift 2
    if [[ -f "$out/summary.json" ]]; then
        echo "done already: $out"
        return
    fi
    local resume=()
    [[ -f "$out/config.json" ]] && resume=(--resume)
    # shellcheck disable=SC2086  # METAHYPER may be a torchrun command line
    $METAHYPER "$command" --out "$out" --device "$DEVICE" --workers "$WORKERS" "${resume[@]}" "$@"
}

# cifar RUN_NAME DATASET MODEL [EXTRA...]: section 5.1: SGD momentum 0.9, lr 0.1, 200 epochs, lr /5
# at 60/120/160, weight decay 5e-4 (plain weights), 6.25e-5 (generated weights), "accuracies on the
# validation set" (CIFAR's test set); from Zagoruyko & Komodakis, whose "standard hyperparameters"
# 5.1 cites: batch 128, Nesterov momentum, reflection-padded crops (pretrain's defaults). One run per seed.
cifar() {
    local name=$1 dataset=$2 model=$3
    shift 3
    for seed in $SEEDS; do
        run_stage "$RUNS/$dataset/$name/seed$seed" pretrain --dataset "$dataset" --model "$model" --eval-split test \
            --epochs 200 --batch-size 128 --lr 0.1 --momentum 0.9 --milestones 60,120,160 --gamma 0.2 \
            --seed "$seed" --quiet "$@"
    done
}

# Table 1's hypernetwork bias starts as PyTorch initialises a convolution's bias (uniform in
# +-1/sqrt(fan_in); the paper states no initialisation): HYPER_BIAS_INIT=zero starts it at zero.
# The runs are named after it (...-bias-uniform-noreg, ...-bias-zero-noreg).
HYPER_BIAS_INIT=${HYPER_BIAS_INIT:-uniform}
case $HYPER_BIAS_INIT in uniform | zero) ;; *) echo "HYPER_BIAS_INIT must be uniform or zero, got '$HYPER_BIAS_INIT'" >&2; exit 2 ;; esac

# cifar_report DATASET NAME...: mean final test accuracy over seeds of each named CIFAR run.
cifar_report() {
    local dataset=$1
    shift
    python - "$RUNS/$dataset" "$@" <<'PY'
import json, statistics, sys
from pathlib import Path
root, names = Path(sys.argv[1]), sys.argv[2:]
for name in names:
    accs = []
    for s in sorted((root / name).glob("seed*/summary.json")):
        d = json.loads(s.read_text())
        accs.append(d.get("swa_val_acc") or d["final"]["val_acc"])
    if accs:
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        print(f"{root.name:>9} {name:<28} {100 * statistics.mean(accs):6.2f} +- {100 * sd:.2f}  ({len(accs)} runs)")
PY
}

# evaluate JSON ARGS...: `metahyper eval ARGS -o JSON` (600 episodes, 15 queries) unless JSON exists.
evaluate() {
    local json=$1
    shift
    [[ -f "$json" ]] && return
    $METAHYPER eval --device "$DEVICE" --episodes 600 --queries 15 --quiet -o "$json" "$@"
}

# Few-shot experiments (section 5.4). The paper states the meta-training recipe "Following Sun et al.
# (2019)": inner SGD lr 0.01, outer Adam 1e-3 halved every 1000 iterations to 1e-4, meta-batch 4,
# 15 test samples per class. Not in the paper, from Sun et al.'s public code (Meta-Transfer
# Learning, pytorch/main.py update_step=50; pytorch/trainer/meta.py runs the same meta forward at
# meta-training, meta-validation and meta-test): 50 inner steps everywhere (EVAL_INNER_STEPS=100
# is the 100 of their pretraining-time validation only). Our choices (docs/protocol.md): 5000
# iterations (the halving schedule reaches its 1e-4 floor after 3322; Sun et al. meta-train 100
# epochs x 100 tasks); second order (MAML's exact meta-gradient) with the checkpointed inner loop,
# whose memory does not grow with the inner steps. Their code differs from this recipe elsewhere
# (only its classifier head adapts, first order, one task per iteration): docs/protocol.md.
ITERATIONS=${ITERATIONS:-5000}
INNER_STEPS=${INNER_STEPS:-50}
EVAL_INNER_STEPS=${EVAL_INNER_STEPS:-50}
# The checkpointed inner loop keeps second-order memory about constant in the steps (same
# meta-gradient, about 1.35x the time): from 20 steps on, every 4th adapted state is kept (the lowest
# peak measured on Hyper-WRN-16-4, docs/inner-checkpoint.md) unless INNER_CHECKPOINT is set.
INNER_CHECKPOINT=${INNER_CHECKPOINT:-$(( INNER_STEPS >= 20 ? 4 : 0 ))}
# Which pretraining checkpoint meta-training starts from (the paper does not say): best (default,
# our choice: best.pt, the epoch best on the 10% of the train split held out) or last (the last
# pretraining epoch, last.pt).
PRETRAINED=${PRETRAINED:-best}
case $PRETRAINED in best | last) ;; *) echo "PRETRAINED must be best or last, got '$PRETRAINED'" >&2; exit 2 ;; esac

# fewshot_pretrain OUT DATASET MODEL EPOCHS MILESTONES [EXTRA...]: classification pretraining on the
# meta-train split's classes (section 4.2), 10% of each class held out for validation (our choice:
# the paper names no validation data for pretraining), one run per seed in OUT/seed<N>.
fewshot_pretrain() {
    local out=$1 dataset=$2 model=$3 epochs=$4 milestones=$5
    shift 5
    for seed in $SEEDS; do
        run_stage "$out/seed$seed" pretrain --dataset "$dataset" --model "$model" --epochs "$epochs" \
            --milestones "$milestones" --batch-size 128 --lr 0.1 --val-fraction 0.1 --seed "$seed" --quiet "$@"
    done
}

# fewshot_meta OUT TRAIN TEST INIT SHOTS SELECT_ON [EVAL_EXTRA...]: per seed, MAML meta-training
# (5-way, second order) of INIT/seed<N> (its best.pt, or last.pt with PRETRAINED=last) on TRAIN's
# train split. Validation every 500 iterations on TRAIN's val classes and, when TEST differs, on
# TEST's val classes too (the curves of Figure 5); best.pt by SELECT_ON (source: TRAIN val, target:
# TEST val, last: the last iterate). Then the 600-episode test on TEST's test split of best.pt into
# OUT/seed<N>/test-TEST-<SHOTS>shot.json and, unless SELECT_ON is last, of the last iterate
# (last.pt) into test-TEST-<SHOTS>shot-last.json (EVAL_EXTRA: e.g. --image-size).
fewshot_meta() {
    local out=$1 train=$2 test=$3 init=$4 shots=$5 select_on=$6 monitor=() start
    shift 6
    [[ $test != "$train" ]] && monitor=(--test "$test")
    for seed in $SEEDS; do
        start="$init/seed$seed"
        [[ $PRETRAINED == last ]] && start="$init/seed$seed/last.pt"
        run_stage "$out/seed$seed" meta-train --train "$train" "${monitor[@]}" --select-on "$select_on" --init "$start" \
            --ways 5 --shots "$shots" --queries 15 --meta-batch 4 --iterations "$ITERATIONS" --inner-steps "$INNER_STEPS" \
            --eval-inner-steps "$EVAL_INNER_STEPS" --inner-checkpoint "$INNER_CHECKPOINT" --inner-lr 0.01 --outer-lr 1e-3 \
            --lr-halve-every 1000 --min-lr 1e-4 --val-every 500 --val-episodes 300 --seed "$seed" --quiet
        evaluate "$out/seed$seed/test-$test-${shots}shot.json" --checkpoint "$out/seed$seed" --dataset "$test" --split test \
            --ways 5 --shots "$shots" --seed 0 "$@"
        [[ $select_on == last ]] && continue
        evaluate "$out/seed$seed/test-$test-${shots}shot-last.json" --checkpoint "$out/seed$seed/last.pt" --dataset "$test" \
            --split test --ways 5 --shots "$shots" --seed 0 "$@"
    done
}

# table8_runs RES MODEL...: FC100-train pretraining + FC100 -> MiniImageNet meta-training at 1 and 5
# shots, at input resolution RES: 32 (FC100's own size; MiniImageNet test images downscaled) or 84
# (MiniImageNet's size; FC100 upscaled). The paper does not say which it used. Selection: SELECT_ON
# (default target: MiniImageNet val, the only data Figure 5's curves "with experimental setup
# similar to Table 8" can come from; the last iterate is scored from the same runs; source, FC100
# val, is our alternative, runs under fc100-RES/to-mini-source/).
SELECT_ON=${SELECT_ON:-target}
case $SELECT_ON in target | last | source) ;; *) echo "SELECT_ON must be target, last or source, got '$SELECT_ON'" >&2; exit 2 ;; esac

# table8_meta_dir: the folder (under fc100-RES/) of the meta-training runs of SELECT_ON.
table8_meta_dir() {
    if [[ $SELECT_ON == target ]]; then echo to-mini; else echo "to-mini-$SELECT_ON"; fi
}

table8_runs() {
    local res=$1 model size
    shift
    size=()
    [[ $res == 84 ]] && size=(--image-size 84)
    for model in "$@"; do
        fewshot_pretrain "$RUNS/fc100-$res/pretrain/$model" fc100 "$model" 200 60,120,160 "${size[@]}"
        for shots in 1 5; do
            fewshot_meta "$RUNS/fc100-$res/$(table8_meta_dir)/$model-${shots}shot" fc100 miniimagenet \
                "$RUNS/fc100-$res/pretrain/$model" "$shots" "$SELECT_ON" --image-size "$res"
        done
    done
}
