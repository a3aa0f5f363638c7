#!/usr/bin/env bash
# The whole test suite, installing what it needs: the PyTorch reference (for the full-size
# parity fixtures), formatting and lint checks, the no_std builds, and every Rust test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FULL=${LDMAE_FULL_FIXTURES:-$PWD/fixtures-full}
export LDMAE_FULL_FIXTURES=$FULL
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "Python reference requirements"
$PYTHON -m pip install --quiet --disable-pip-version-check -r export/reference/requirements.txt

step "full-size fixtures and ONNX exports (official sizes, random weights, official file formats)"
# Regenerated only when the reference code changes.
stamp=$(cat export/reference/*.py export/reference/*.sh export/reference/requirements.txt | sha256sum | cut -c1-16)
if [ "$(cat "$FULL/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$FULL"
    bash export/reference/make_all.sh full "$FULL"
    # PyTorch → ONNX at the official sizes, each graph checked with onnxruntime.
    bash export/reference/onnx_check.sh "$FULL"
    echo "$stamp" > "$FULL/.stamp"
fi
# f16 noise of the reference at full size, for the f16 GPU test's tolerance (tests/gpu.rs).
[ -f "$FULL/f16_noise.json" ] || $PYTHON export/gpu/f16_noise.py "$FULL" --vmae-only

step "Vulkan driver for the GPU-path tests (Mesa lavapipe: Vulkan on the CPU, with shader-f16)"
# Without it wgpu falls back to OpenGL, which has no f16 (and deadlocked in a probe here).
if ! dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q && $SUDO apt-get install -y -q mesa-vulkan-drivers libvulkan1
fi

# Mesa's Vulkan loader complains on every start without a runtime dir (a headless CI machine).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR=$(mktemp -d); fi

step "formatting and lints"
if cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "rustfmt is not installed and cannot be added here: format check skipped"
fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy >/dev/null 2>&1 || true; fi
cargo clippy --workspace --all-targets --features ndarray,wgpu -- -D warnings

step "no_std builds"
# The crate with std off (#![no_std] + alloc), linted for a bare-metal target. (Not for the
# host: constriction also builds as a cdylib, which cannot link without std on a std target.)
if rustup target list --installed 2>/dev/null | grep -q thumbv7em-none-eabihf \
    || rustup target add thumbv7em-none-eabihf >/dev/null 2>&1; then
    cargo clippy -p ldmae --lib --no-default-features --features flex --target thumbv7em-none-eabihf -- -D warnings
else
    echo "thumbv7em-none-eabihf is not installable here: no_std lint skipped"
fi

step "tests (flex and ndarray CPU backends, wgpu on lavapipe)"
cargo test --release --workspace --features ndarray,wgpu
# The models again on the narrower CPU kernels (the kernels' own tests cover every level already).
for level in baseline avx2; do
    echo "-- LDMAE_CPU=$level"
    LDMAE_CPU=$level cargo test -q --release --workspace --features ndarray,wgpu --test parity_tiny
done

step "C ABI: header, examples and tests under AddressSanitizer"
bash scripts/ffi_check.sh

# The last three checks build for other feature sets and other targets: on a cold machine (empty
# target dir) they are what could push the suite past CI's 90 minutes, so each runs only while the
# time left covers its cold cost with a margin (this 2-core machine, empty target dir: feature
# matrix 14 min alone; aarch64 16 and the mobile pair 28 min, each beside other builds); a skip
# says so.
fits() { [ "$SECONDS" -le $(( ${LDMAE_CI_MINUTES:-90} * 60 - $1 * 60 )) ] || { echo "skipped: $SECONDS s elapsed, $1 min needed (run it alone)"; false; }; }

step "feature matrix: every feature set a user may pick builds"
if fits 25; then
    # The default set and the no_std set are built above; these add one capability each to std+flex,
    # plus the ndarray-only CPU build (each set re-checks only the crates whose features it changes).
    for features in std,flex std,flex,cli std,flex,checkpoint std,flex,onnx std,flex,embedded-models std,ndarray,cli; do
        echo "-- $features"
        cargo clippy -q -p ldmae --lib --bins --no-default-features --features "$features" -- -D warnings
    done
    # burn's CUDA backend downloads an LLVM bundle in a build script (tracel-llvm-bundler), which this
    # offline machine cannot: DOCS_RS=1 makes it skip that, which is enough to type-check our code.
    echo "-- std,flex,cli,cuda (type-checked only)"
    DOCS_RS=1 cargo clippy -q -p ldmae --lib --bins --no-default-features --features std,flex,cli,cuda -- -D warnings
fi

step "aarch64: the CPU tests cross-built and run under qemu (NEON kernel variants)"
fits 20 && bash scripts/arm_check.sh

step "the C ABI as static libraries for Android and iOS (no SDK needed)"
if fits 30; then
    if rustup target add aarch64-linux-android aarch64-apple-ios >/dev/null 2>&1 \
        && rustup component add llvm-tools >/dev/null 2>&1; then
        bash scripts/mobile_check.sh
    else
        echo "skipped: rustup cannot add the mobile targets or llvm-tools here"
    fi
fi
step "done"
