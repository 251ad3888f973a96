#!/usr/bin/env bash
# The Meta-Dataset protocol (Triantafillou et al., ICLR 2020) for the plain and hyper models: the
# ten sources' caches, pretraining on ILSVRC-2012's 712 train classes, fo-Proto-MAML meta-training
# on ImageNet only (md-ilsvrc) and on all eight training sources (md-all), 600 variable-way
# variable-shot test episodes per source for every checkpoint, one table with the average rank per
# training set. Every step is skipped when done and resumed when interrupted (common.sh), so the
# script can simply be started again.
#
# Step 0, the caches: every source not yet listed `ok` at IMAGE_SIZE by `metahyper datasets --root
# $DATA` is built from its extracted release under RAW (docs/meta-dataset.md, downloads there):
#   $RAW/ILSVRC2012/train/       ILSVRC-2012 train, train/<wnid>/*.JPEG (each class tar extracted)
#   $RAW/omniglot/               images_background.zip, images_evaluation.zip (or their folders)
#   $RAW/fgvc-aircraft-2013b/    FGVC-Aircraft 2013b (or its data/)
#   $RAW/CUB_200_2011/           CUB-200-2011, extracted
#   $RAW/dtd/                    DTD r1.0.1
#   $RAW/quickdraw/              the 345 numpy_bitmap <class>.npy files (or a folder holding numpy_bitmap/)
#   $RAW/fungi/                  FGVCx Fungi 2018: train.json, val.json, images/
#   $RAW/flowers102/             VGG Flower 102: imagelabels.mat and jpg/
#   $RAW/GTSRB/                  GTSRB final training set (Final_Training/Images/)
#   $RAW/mscoco/                 COCO 2017: train2017/ and annotations/instances_train2017.json
# A source built beforehand (e.g. `metahyper prepare md-omniglot --download --root $DATA`) is used
# as it is. At 84 px the caches take about 405 GB, 356 GB of it QuickDraw's 50 million drawings:
# QUICKDRAW_MAX_PER_CLASS=1000 keeps each class's first 1000 (2.4 GB; its episodes then differ
# slightly from Meta-Dataset's, whose shots follow the class sizes).
#
# Models (MODELS): ResNet-18 with He et al.'s 7x7 stride-2 stem and max-pool, which is Meta-Dataset's
# `resnet` backbone (meta_dataset/models/functional_backbones.py `_resnet`), and WRN-16-2, which is
# its `wide_resnet` (`_wide_resnet` with n = 2 blocks per stage, width k = 2, 3x3 stem), each with its
# hyper version: HyperResNet (variant 2, Table 4) and Hyper-WRN (variant 1, Tables 3, 6 and 8). A
# name may carry its variant (`hyper-wrn-16-4:2`); the paper's Table 8 models are
# `MODELS="wrn-16-4 hyper-wrn-16-4"` (about 3.9x WRN-16-2's FLOPs at 84 px).
#
# Pretraining (ours: Meta-Dataset's best/pretrain_imagenet_resnet.gin, lr 3.8e-3 decayed x0.9968
# every 1000 updates, is tuned for its own trainer, not for `metahyper pretrain`'s SGD and steps):
# md-ilsvrc's 712 train classes, 10% of each held out to pick best.pt, SGD with Nesterov momentum
# 0.9, batch 256, lr 0.1 divided by 10 at epochs 10 and 20 of 30 (He et al.'s ImageNet schedule,
# Table 4's, shortened to 30 epochs: Meta-Dataset's ResNet-18 checkpoint, model_27500 of batch 256,
# saw 7.7 epochs), weight decay 1e-4 (He et al.'s), the generated-weight L2 of section 5.1 for the
# hyper models, random crops (padding 4) and flips. Meta-training starts from best.pt (PRETRAINED).
#
# Meta-training: fo-Proto-MAML, what Meta-Dataset reports (--head proto --first-order), the MAML
# preset (ALGORITHMS), one variable episode per update, with the hyperparameters of Meta-Dataset's
# published configs, meta_dataset/learn/gin/best/maml_init_with_proto_{imagenet,all}.gin
# (google-research/meta-dataset at d81344b), unrounded digits cut to 4:
#   setting          ImageNet only (IN_*)       all sources (ALL_*)        their name
#   inner steps      6 (train) / 6 (val, test)  1 (train) / 6 (val, test)  num_update_steps (+ 0 / 5 at test)
#   inner lr         0.005435                   0.01988                    MAMLLearner.alpha
#   outer lr (Adam)  3.634e-4                   2.981e-4                   LearnerConfig.learning_rate
#   lr decay         x0.6478 every 2500         x0.7660 every 500          decay_rate, decay_every
#   our halving      every 3991 iterations      every 1300 iterations      the same rate (2500 ln 2 / ln(1 / 0.6478))
# Meta-Dataset's trainer (meta_dataset/learn/gin/setups/trainer_config.gin): 75,000 updates
# (ITERATIONS; the lr is 1000x lower by 40,000 (ImageNet) and 13,000 (all) of them), checkpoints
# every 500 (--save-every 500), validation every 500 (validate_every; num_eval_episodes 600). Ours:
# validation every VAL_EVERY=2500 on VAL_EPISODES=100 episodes of each training source's val split
# (best.pt: their mean), because 600 episodes every 500 updates on md-all's eight sources would
# cost about 8 times the training itself; MIN_LR=1e-9, where Meta-Dataset has no floor.
# Not Meta-Dataset's (metahyper has no such option): its weight decay (1.4e-5 / 7.2e-4) and
# its BatchNorm, which normalises the query set with the adapted support set's moments; BN (default
# transductive: each set's own batch statistics, as docs/protocol.md for Tables 7-8; frozen: the
# pretrained running statistics) and SUPPORT_CHUNK (needs BN=frozen) choose ours. The 126 px of
# those configs; ours is IMAGE_SIZE=84, Meta-Dataset's default (setups/data_config.gin
# DataConfig.image_height).
#
# Evaluation: `eval --benchmark meta-dataset` of every meta-trained best.pt, EVAL_EPISODES=600
# variable episodes per test source, all from EVAL_SEED=0, so every checkpoint sees the same tasks;
# `metahyper report` writes $RUNS/meta-dataset-ilsvrc.md and $RUNS/meta-dataset-all.md: a row per
# source, a column per model and algorithm (mean +- sd over the seeds), the average and the average rank.
#
# Knobs (environment): RAW (default ~/data), DATA (cache root, default $METAHYPER_DATA or
# datasets/data), IMAGE_SIZE (84), QUICKDRAW_MAX_PER_CLASS (all), MODELS, TRAIN_SETS ("md-ilsvrc
# md-all"), ALGORITHMS (maml; e.g. "maml meta-sgd"), HEAD (proto; or zero),
# ORDER (first; second: second-order MAML), ITERATIONS (75000), META_BATCH (1), IN_/ALL_
# INNER_STEPS, EVAL_INNER_STEPS, INNER_LR, OUTER_LR, LR_HALVE_EVERY (table above), MIN_LR, BN,
# SUPPORT_CHUNK (0), VAL_EVERY, VAL_EPISODES, PRE_EPOCHS (30), PRE_MILESTONES (10,20),
# EVAL_EPISODES, EVAL_SEED, and common.sh's RUNS (default runs/meta-dataset), DEVICE, SEEDS ("0 1
# 2": every pretraining and meta-training once per seed), WORKERS, PRETRAINED, METAHYPER.
#
# Time (one H100, estimated, not measured): FLOPs counted with torch's FlopCounterMode at 84 px,
# forward per image ResNet-18 0.59 GFLOP, WRN-16-2 1.39 (WRN-16-4 5.41); a weight generation adds
# 81 GFLOP (HyperResNet-18 (2)) or 1.2 (Hyper-WRN-16-2 (1)) per pass. A fo-Proto-MAML training
# episode costs (3 + 3 x steps) support + 3 query image-forwards, a test episode 19 support + 1
# query; the sampler's mean episode holds 380 + 191 images (ILSVRC train), 353 + 222 (the eight
# training sources), 332 + 162 (the ten test splits). At an assumed 40 TFLOP/s (fp32 convolutions
# in TF32; the uncertain factor): ResNet-18 about 4.9 GPU-h per seed (pretraining 0.3, ImageNet
# only 2.6, all sources 0.9, validation 0.8, tests 0.3), HyperResNet-18 6.9, WRN-16-2 and
# Hyper-WRN-16-2 11.6 each: about 35 GPU-h per seed, 105 for three (the WRN-16-4 pair instead of
# WRN-16-2: about 90 GPU-h more per seed). Pretraining needs about 20,000 augmented images/s from
# the DataLoader workers to keep up (not measured). The builds take about 5 CPU-hours first
# (docs/meta-dataset.md: ILSVRC 1.8 h and QuickDraw 80 min on one core). Measure first
# (ITERATIONS=500, PRE_EPOCHS=1) and scale.
RUNS=${RUNS:-runs/meta-dataset}
ITERATIONS=${ITERATIONS:-75000}
source "$(dirname "$0")/common.sh"
RAW=${RAW:-$HOME/data}
DATA=${DATA:-${METAHYPER_DATA:-datasets/data}}
IMAGE_SIZE=${IMAGE_SIZE:-84}
QUICKDRAW_MAX_PER_CLASS=${QUICKDRAW_MAX_PER_CLASS:-}
MODELS=${MODELS:-resnet-18 hyper-resnet-18 wrn-16-2 hyper-wrn-16-2}
TRAIN_SETS=${TRAIN_SETS:-md-ilsvrc md-all}
ALGORITHMS=${ALGORITHMS:-maml}
HEAD=${HEAD:-proto}
ORDER=${ORDER:-first}
META_BATCH=${META_BATCH:-1}
IN_INNER_STEPS=${IN_INNER_STEPS:-6}
IN_EVAL_INNER_STEPS=${IN_EVAL_INNER_STEPS:-6}
IN_INNER_LR=${IN_INNER_LR:-0.005435}
IN_OUTER_LR=${IN_OUTER_LR:-3.634e-4}
IN_LR_HALVE_EVERY=${IN_LR_HALVE_EVERY:-3991}
ALL_INNER_STEPS=${ALL_INNER_STEPS:-1}
ALL_EVAL_INNER_STEPS=${ALL_EVAL_INNER_STEPS:-6}
ALL_INNER_LR=${ALL_INNER_LR:-0.01988}
ALL_OUTER_LR=${ALL_OUTER_LR:-2.981e-4}
ALL_LR_HALVE_EVERY=${ALL_LR_HALVE_EVERY:-1300}
MIN_LR=${MIN_LR:-1e-9}
BN=${BN:-transductive}
SUPPORT_CHUNK=${SUPPORT_CHUNK:-0}
VAL_EVERY=${VAL_EVERY:-2500}
VAL_EPISODES=${VAL_EPISODES:-100}
PRE_EPOCHS=${PRE_EPOCHS:-30}
PRE_MILESTONES=${PRE_MILESTONES:-10,20}
EVAL_EPISODES=${EVAL_EPISODES:-600}
EVAL_SEED=${EVAL_SEED:-0}
case $HEAD in zero | proto) ;; *) echo "HEAD must be zero or proto (variable-way episodes), got '$HEAD'" >&2; exit 2 ;; esac
case $ORDER in first | second) ;; *) echo "ORDER must be first or second, got '$ORDER'" >&2; exit 2 ;; esac
for train in $TRAIN_SETS; do
    case $train in md-ilsvrc | md-all) ;; *) echo "TRAIN_SETS takes md-ilsvrc and md-all, got '$train'" >&2; exit 2 ;; esac
done

# shellcheck disable=SC2086  # METAHYPER may be "python -m metahyper"
mh() { $METAHYPER "$@"; }

# ---- step 0: the ten caches, in Meta-Dataset's order: name, raw folder, splits -------------------
SOURCES=(
    "md-ilsvrc|$RAW/ILSVRC2012/train|train val test"
    "md-omniglot|$RAW/omniglot|train val test"
    "md-aircraft|$RAW/fgvc-aircraft-2013b|train val test"
    "md-cub|$RAW/CUB_200_2011|train val test"
    "md-dtd|$RAW/dtd|train val test"
    "md-quickdraw|$RAW/quickdraw|train val test"
    "md-fungi|$RAW/fungi|train val test"
    "md-vgg-flower|$RAW/flowers102|train val test"
    "md-traffic-sign|$RAW/GTSRB|test"
    "md-mscoco|$RAW/mscoco|val test"
)
listing=$(mh datasets --root "$DATA")

# built NAME SPLITS: every split of NAME listed ok at IMAGE_SIZE.
built() {
    local name=$1 split
    for split in $2; do
        grep -Eq "^$name +$split +[0-9]+ +[0-9-]+ +${IMAGE_SIZE}x${IMAGE_SIZE} +ok\$" <<< "$listing" || return 1
    done
}

todo=() missing=()
for entry in "${SOURCES[@]}"; do
    IFS='|' read -r name raw splits <<< "$entry"
    built "$name" "$splits" && continue
    todo+=("$entry")
    [[ -e $raw ]] || missing+=("$raw ($name)")
done
if (( ${#missing[@]} )); then
    echo "raw releases not found: ${missing[*]}; set RAW, or build those sources first (docs/meta-dataset.md)" >&2
    exit 1
fi
for entry in "${todo[@]}"; do
    IFS='|' read -r name raw splits <<< "$entry"
    extra=()
    [[ $name == md-quickdraw && -n $QUICKDRAW_MAX_PER_CLASS ]] && extra=(--max-per-class "$QUICKDRAW_MAX_PER_CLASS")
    mh prepare "$name" --source "$raw" --root "$DATA" --image-size "$IMAGE_SIZE" "${extra[@]}"
done

# model_args ENTRY: the pretrain options of a MODELS entry (NAME or NAME:VARIANT) after --model:
# hyper ResNet-18/34 variant 2 (Table 4), other hyper models variant 1; ResNet-18/34 Meta-Dataset's
# (He et al.'s) stem.
model_args() {
    local name=${1%%:*} variant=
    [[ $1 == *:* ]] && variant=${1#*:}
    echo "$name"
    if [[ $name == hyper-* ]]; then
        [[ -z $variant ]] && { [[ $name =~ ^hyper-resnet-(18|34)$ ]] && variant=2 || variant=1; }
        echo --variant "$variant"
    fi
    [[ $name =~ ^(hyper-)?resnet-(18|34)$ ]] && echo --stem imagenet
    return 0
}
# model_dir ENTRY: its run folder name: NAME, hyper models NAME-v<VARIANT>.
model_dir() {
    local args
    mapfile -t args < <(model_args "$1" | tr ' ' '\n')
    if [[ ${args[0]} == hyper-* ]]; then echo "${args[0]}-v${args[2]}"; else echo "${args[0]}"; fi
}

# ---- pretraining on md-ilsvrc train ------------------------------------------------------------
for entry in $MODELS; do
    mapfile -t args < <(model_args "$entry" | tr ' ' '\n')
    for seed in $SEEDS; do
        run_stage "$RUNS/pretrain/$(model_dir "$entry")/seed$seed" pretrain --dataset md-ilsvrc --data-root "$DATA" \
            --model "${args[@]}" --epochs "$PRE_EPOCHS" --milestones "$PRE_MILESTONES" --gamma 0.1 --batch-size 256 \
            --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --val-fraction 0.1 --seed "$seed" --quiet
    done
done

# ---- meta-training and evaluation --------------------------------------------------------------
order=()
[[ $ORDER == first ]] && order=(--first-order)
for train in $TRAIN_SETS; do
    if [[ $train == md-ilsvrc ]]; then p=IN; else p=ALL; fi
    steps=${p}_INNER_STEPS eval_steps=${p}_EVAL_INNER_STEPS inner_lr=${p}_INNER_LR outer_lr=${p}_OUTER_LR
    halve=${p}_LR_HALVE_EVERY
    jsons=()
    for algorithm in $ALGORITHMS; do
        for entry in $MODELS; do
            for seed in $SEEDS; do
                out="$RUNS/$train/$algorithm-$HEAD-${ORDER:0:1}o/$(model_dir "$entry")/seed$seed"
                start="$RUNS/pretrain/$(model_dir "$entry")/seed$seed"
                [[ $PRETRAINED == last ]] && start="$start/last.pt"
                run_stage "$out" meta-train --train "$train" --episodes variable --data-root "$DATA" --init "$start" \
                    --algorithm "$algorithm" --head "$HEAD" "${order[@]}" --meta-batch "$META_BATCH" \
                    --iterations "$ITERATIONS" --inner-steps "${!steps}" --eval-inner-steps "${!eval_steps}" \
                    --inner-lr "${!inner_lr}" --outer-lr "${!outer_lr}" --lr-halve-every "${!halve}" \
                    --min-lr "$MIN_LR" --bn "$BN" --support-chunk "$SUPPORT_CHUNK" --select-on source \
                    --val-every "$VAL_EVERY" --val-episodes "$VAL_EPISODES" --save-every 500 --seed "$seed" --quiet
                json="$out/eval-meta-dataset-test-variable-seed$EVAL_SEED.json"
                [[ -f $json ]] || mh eval --checkpoint "$out" --benchmark meta-dataset --data-root "$DATA" \
                    --episodes "$EVAL_EPISODES" --seed "$EVAL_SEED" --device "$DEVICE" --quiet -o "$json"
                jsons+=("$json")
            done
        done
    done
    mh report "${jsons[@]}" --markdown "$RUNS/meta-dataset-${train#md-}.md"
done
