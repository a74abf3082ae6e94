# m2ib — every recipe installs libtorch on first use (scripts/setup-libtorch.sh) and builds into
# $HOME/.cache/m2ib/target-cpu (or target-cuda with M2IB_TORCH=cuda).
set shell := ["bash", "-euo", "pipefail", "-c"]

run := "scripts/with-libtorch.sh"
# The test build's binary (scripts/m2ib.sh): one build serves tests and runs.
m2ib := run + " scripts/m2ib.sh"
# M2IB's selection criterion, fixed before any look at the test split: mean rank per modality.
select := "drop,increase,intervention,localization_iou:percentile,localization_auroc"

# List recipes.
default:
    @{{just_executable()}} --list

# Install libtorch 2.13.0 into $HOME/.cache/m2ib (idempotent; M2IB_TORCH=cuda for the GPU build).
setup:
    scripts/setup-libtorch.sh

# The whole test suite (what CI runs): the Rust tests, then the Python module's.
test:
    {{run}} cargo test --workspace --no-fail-fast
    {{run}} scripts/python-test.sh

# The Python module's tests only (pytest arguments pass through, e.g. `-k parity`).
[positional-arguments]
test-python *args:
    {{run}} scripts/python-test.sh "$@"

# A wheel of the Python module for this machine's Python (maturin, release build); prints its path.
wheel:
    {{run}} scripts/python-wheel.sh

# Lints as the codebase keeps them: rustfmt, and clippy with every warning an error.
lint:
    {{run}} cargo fmt --all --check
    {{run}} cargo clippy --workspace --all-targets -- -D warnings

# Build the optimised `m2ib` binary.
build:
    {{run}} cargo build --release -p m2ib-cli

# Reproduce a paper table on the embedded default (e.g. `./just reproduce table1`; extra flags such as `--devices auto` pass through).
[positional-arguments]
reproduce experiment="table1" *flags:
    {{m2ib}} reproduce "$@"

# Cosine similarity of one image and one caption (`./just embed tiny-shapes scene.png "a red circle" --json`).
[positional-arguments]
embed model image text *flags:
    {{m2ib}} embed --model "$1" --image "$2" --text "$3" "${@:4}"

# Any other m2ib command, e.g. `just m2ib attribute --help` (arguments keep their quoting).
[positional-arguments]
m2ib *args:
    {{m2ib}} "$@"

# Benchmarks against the PyTorch reference in the same run (needs the Python venv: ~6 GB, made once).
bench target="m2ib":
    {{run}} cargo run -q --release -p m2ib-cli -- bench {{target}} --python "$(scripts/python/setup_venv.sh)"

# Rewrite reports/baselines/<experiment>.csv from 3 seeds (only for intended score changes; README "Score guard").
baseline experiment="smoke":
    {{m2ib}} baseline {{experiment}} --seeds 0 1 2

# Run an experiment and compare its scores with reports/baselines/<experiment>.csv.
guard experiment="smoke":
    {{m2ib}} guard {{experiment}}

# The Table 2 grid on the tune split, its best 3 settings per modality re-scored on a second tune
# draw, and the winner written to experiments/selected/<model>.toml (README "Table 2").
grid experiment="table2":
    {{m2ib}} run experiments/{{experiment}}_grid.toml
    {{m2ib}} report {{experiment}}_grid --select {{select}} --top 3
    {{m2ib}} run experiments/{{experiment}}_confirm.toml
    {{m2ib}} report {{experiment}}_confirm --select {{select}}
