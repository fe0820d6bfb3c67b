# Recipes wrap plain cargo commands; nothing here is needed to build or test.

# Run the main job: Fashion-MNIST unseen-class retrieval (see README).
demo:
    cargo run -p oml-cli -- train examples/configs/fashion_mnist.yaml

# The README's test command.
test:
    cargo test --workspace

# The same suites on the GPU backend (wgpu; lavapipe works without a GPU).
test-wgpu:
    OML_TEST_DEVICE=wgpu cargo test --workspace --features oml-tests/wgpu

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Benchmarks: one JSON line per measurement.
bench *ARGS:
    cargo run -p oml-bench -- {{ARGS}}

ci:
    bash .ci/run
