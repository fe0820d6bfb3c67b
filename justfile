# Recipes wrap plain cargo commands; nothing here is needed to build or test.

# Run the main job: Fashion-MNIST unseen-class retrieval (see README).
demo:
    cargo run -p oml-cli -- train examples/configs/fashion_mnist.yaml

# The README's test command.
test:
    cargo test --workspace

# The filters are module names of the crates' `it` binaries (models and sampling: all of theirs).
# The numeric suites on the GPU backend, as CI runs them (wgpu; lavapipe works without a GPU).
test-wgpu:
    bash .ci/lavapipe.sh
    OML_TEST_DEVICE=wgpu cargo test --workspace --test it -- golden:: properties:: reference_values:: knn:: postprocess:: embedding_metrics:: common:: configs:: download:: loading:: parity:: training:: errors:: learner:: loader:: oracle::
    OML_TEST_DEVICE=wgpu cargo test --workspace --test pipeline

# The examples at small sizes (cargo test builds them).
examples:
    cargo build --workspace --examples
    bash examples/run-all.sh ${CARGO_TARGET_DIR:-target}/debug/examples

# Check and time a GPU in one go (cuda or wgpu; --quick for small sizes).
gpu-bench *ARGS:
    bash crates/bench/gpu-bench.sh {{ARGS}}

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Benchmarks: one JSON line per measurement.
bench *ARGS:
    cargo run -p oml-bench -- {{ARGS}}

# Pack and build every published crate alone, as crates.io would hand it to a user (CI packs
# them without this verifying build; see docs/library.md).
package:
    cargo package --workspace --exclude oml-bench --exclude oml-examples --exclude oml-tests

ci:
    bash .ci/run
