# Entry points of the project. `just` is optional (`cargo install just`); every recipe is a
# plain cargo command you can run yourself (see the README).

shared := env_var_or_default("UST_SHARED", "../shared")

# List the recipes.
default:
    @just --list

# Run the test suite (the README's test command).
test:
    cargo test --workspace

# Formatting and lints as CI runs them.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The quick start: train on the bundled category, evaluate, write runs/demo/.
demo *args:
    cargo run --release -p ust-cli -- demo {{args}}

# Train the students of one category of an MVTec-layout root.
train root category *args:
    cargo run --release -p ust-cli -- train --data {{root}} --category {{category}} {{args}}

# Anomaly maps (PNG heatmaps/overlays and TIFF) for images or folders.
predict run_dir images out *args:
    cargo run --release -p ust-cli -- predict {{run_dir}} {{images}} --out {{out}} {{args}}

# Predict the test split of the run's category and report AU-PRO, pixel and image AUROC.
evaluate run_dir *args:
    cargo run --release -p ust-cli -- evaluate {{run_dir}} {{args}}

# Seconds per image for dense extraction and a student training step.
bench-dense p="65" size="256" *args:
    cargo run --release -p ust-cli -- bench dense --p {{p}} --size {{size}} --train {{args}}

# Evaluate anomaly maps laid out like the dataset (MAPS/CATEGORY/test/DEFECT/NAME.tiff).
eval dataset maps *args:
    cargo run --release -p ust-cli -- eval --data {{dataset}} --maps {{maps}} {{args}}

# Describe and validate a dataset root (MVTec layout, MNIST or CIFAR-10).
data-info path *args:
    cargo run --release -p ust-cli -- data info {{path}} {{args}}

# Pretrain a teacher: config = p17, p33, p65, p33_dense (the default p = 33 teacher), p65_dense,
# p33_metric or p33_distill (experiments/teacher/CONFIG.toml).
teacher-train config preset="cpu" *args:
    cargo run --release -p ust-cli -- teacher train --config experiments/teacher/{{config}}.toml --preset {{preset}} {{args}}

# Unpack the CIFAR-10 JPEG copy into the ignored data/ folder (data/cifar-10/{train,test}/CLASS).
unpack-cifar archive=(shared + "/data/cifar-10-jpg.tar.gz"):
    mkdir -p data/cifar-10
    tar -xzf {{archive}} -C data/cifar-10

# Benchmark `ust eval` on generated maps: 200 maps of 1024x1024 by default.
bench-eval images="200" size="1024":
    cargo run --release -p ust-cli --example make_eval_fixture -- target/bench-eval {{images}} {{size}}
    /usr/bin/time -v cargo run --release -p ust-cli -- eval --data target/bench-eval/dataset --maps target/bench-eval/maps

# The table recipes take `data=DIR` and `preset=NAME` as words (`just table1 data=../shared/data/mvtec-layout
# preset=cpu`); anything else (`--only X`, `--list-jobs`, `--merge`, ...) goes on to `ust experiment`.

# Table 1: students at p = 65 and the shallow baselines, AU-PRO per category of an MVTec-layout root.
table1 *args:
    @{{just_executable()}} _experiment table1 data {{args}}

# Table 2: one-class MNIST and CIFAR-10 AUROC for the teacher variants and the baselines.
# CIFAR-10 is unpacked from the shared archive first when data/cifar-10 is not there yet.
table2 *args:
    @if [ ! -d data/cifar-10 ] && [ -f "{{shared}}/data/cifar-10-jpg.tar.gz" ]; then {{just_executable()}} unpack-cifar; fi
    @{{just_executable()}} _experiment table2 - {{args}}

# Table 3: receptive field ablation, p = 17, 33, 65 and multi-scale per category.
ablation-p *args:
    @{{just_executable()}} _experiment ablation_p data {{args}}

# Beyond the paper: Table 3's students scored with the regression error e alone.
ablation-score *args:
    @{{just_executable()}} _experiment ablation_score data {{args}}

# ust experiment experiments/FILE.toml with data=/preset= words turned into options
# (default_data "-": the experiment takes no --data).
_experiment file default_data *args:
    #!/usr/bin/env bash
    set -euo pipefail
    data="{{default_data}}"; preset=cpu; rest=()
    for a in {{args}}; do
        case "$a" in
            data=*) data="${a#data=}" ;;
            preset=*) preset="${a#preset=}" ;;
            *) rest+=("$a") ;;
        esac
    done
    opts=(--preset "$preset")
    if [ "$data" != "-" ]; then opts+=(--data "$data"); fi
    cargo run --release -p ust-cli -- experiment "experiments/{{file}}.toml" "${opts[@]}" ${rest[@]+"${rest[@]}"}
