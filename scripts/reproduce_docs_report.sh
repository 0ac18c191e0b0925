#!/usr/bin/env bash
# Re-runs every sweep behind docs/report at the small CPU budget used there, then regenerates
# the reports. About 70 minutes on 2 CPU cores. A rerun skips finished sweeps (each study
# resumes from outputs/optuna/<study>.journal and has nothing left to do).
#   bash scripts/reproduce_docs_report.sh            # sweeps + reports
#   bash scripts/reproduce_docs_report.sh reports    # reports only, from outputs/experiments
set -euo pipefail
cd "$(dirname "$0")/.."

runs=outputs/experiments
docs=docs/report
# 2 epochs over a quarter of the training batches: about 27,500 images seen per run
budget=(trainer.max_epochs=2 trainer.limit_train_batches=0.25 trainer.enable_progress_bar=false)

sweep() {  # sweep <folder name> <overrides...>
    local name=$1
    shift
    python src/train.py -m "$@" "${budget[@]}" hydra.sweeper.study_name="$name" hydra.sweep.dir="$runs/$name"
}

run_sweeps() {
    # 11 activations x 5 seeds (seeds 0-2 and 3-4 are two studies: the first report had 3 seeds)
    sweep compare_activations experiment=compare_activations \
        "hydra.sweeper.params.seed='choice(0,1,2)'" hydra.sweeper.n_trials=33
    sweep compare_activations_seeds34 experiment=compare_activations \
        "hydra.sweeper.params.seed='choice(3,4)'" hydra.sweeper.n_trials=22

    # norm x placement x activation: batch/none (seeds 0-1), layer/group (seeds 0-1), all norms seed 2
    sweep norm_placement experiment=norm_placement "hydra.sweeper.params.seed='choice(0,1)'" \
        "hydra.sweeper.params.norm='choice(batch,none)'" hydra.sweeper.n_trials=32
    sweep norm_placement_layer_group experiment=norm_placement "hydra.sweeper.params.seed='choice(0,1)'" \
        "hydra.sweeper.params.norm='choice(layer,group)'" hydra.sweeper.n_trials=32
    sweep norm_placement_seed2 experiment=norm_placement "hydra.sweeper.params.seed='choice(2)'" \
        hydra.sweeper.n_trials=32

    # Sgmod ablations (3 seeds) and gamma/beta's learning-rate multiplier
    sweep sgmod_ablations experiment=sgmod_ablations "hydra.sweeper.params.seed='choice(0,1,2)'" \
        hydra.sweeper.n_trials=18
    sweep sgmod_lr_mult experiment=sgmod_lr_mult

    # MLP depth 2..20 without norm, 3 seeds
    sweep depth experiment=depth

    # GAN: Sgmod in G / D / both vs the DCGAN baseline, 2 seeds, 1 epoch over half the batches
    python src/train.py -m experiment=gan_placement "hydra.sweeper.params.seed='choice(0,1)'" \
        hydra.sweeper.n_trials=8 trainer.max_epochs=1 trainer.limit_train_batches=0.5 \
        trainer.enable_progress_bar=false hydra.sweeper.study_name=gan_placement \
        hydra.sweep.dir="$runs/gan_placement"
}

report() {  # report <out> <report.py options and folders...>
    local out=$1
    shift
    python scripts/report.py --metric test/acc --out "$docs/$out" "$@"
}

write_reports() {
    for baseline in relu sigmoid; do
        report "compare_activations/vs_$baseline" --group-by activation.name --baseline $baseline \
            -- "$runs/compare_activations" "$runs/compare_activations_seeds34"
    done
    for act in sgmod sigmoid tanh relu; do
        report "norm_placement/$act" --where "activation.name=$act" --group-by norm.name norm.placement \
            --baseline "batch, before" -- "$runs"/norm_placement*
    done
    report sgmod_ablations --baseline "sgmod, True, True, 1.0" \
        --group-by activation.name activation.learn_gamma activation.per_channel activation.gamma_init \
        -- "$runs/sgmod_ablations"
    report sgmod_lr_mult --group-by activation.lr_mult --baseline 1.0 -- "$runs/sgmod_lr_mult"
    for depth in 2 5 10 20; do
        report "depth/$depth" --where "model.depth=$depth" --group-by activation.name --baseline relu -- "$runs/depth"
    done
    python scripts/report.py --metric test/fid --out "$docs/gan_placement" \
        --group-by model.generator.activation.name model.discriminator.activation.name \
        --baseline "relu, leaky_relu" -- "$runs/gan_placement"
}

if [[ ${1:-all} != reports ]]; then
    run_sweeps
fi
write_reports
