#!/usr/bin/env bash
# The C ABI end to end: the committed header is what cbindgen makes of ffi/src/lib.rs; the C and
# C++ examples build against it and give the CLI's bytes and pixels; the C tests pass under
# AddressSanitizer and LeakSanitizer (leaks and overruns across the boundary fail).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

command -v cbindgen >/dev/null || cargo install -q --locked cbindgen --version 0.29.4
cbindgen -q --config ffi/cbindgen.toml --crate ldmae-ffi --output "$tmp/ldmae.h" ffi
if ! diff -u ffi/include/ldmae.h "$tmp/ldmae.h"; then
    echo "ffi/include/ldmae.h is stale: regenerate it with the cbindgen command in docs/apps.md" >&2
    exit 1
fi
if [ ! -f /usr/include/zlib.h ]; then  # the examples' PNG helper
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get install -y -q zlib1g-dev
fi

# The targets and features of the test build (dev-dependencies included), so that this reuses its
# artifacts and only links the C library.
cargo build -q --release --workspace --features ndarray,wgpu --lib --bins --tests --examples
libs="$TARGET/libldmae.a -lz -lm -lpthread -ldl -lrt -lutil -lgcc_s"
cc -std=c99 -Wall -Wextra -Werror -O1 -Iffi/include ffi/examples/compress.c $libs -o "$tmp/compress"
c++ -std=c++17 -Wall -Wextra -Werror -O1 -Iffi/include ffi/examples/generate.cpp $libs -o "$tmp/generate"
cc -std=c99 -Wall -Wextra -Werror -g -fsanitize=address -fno-omit-frame-pointer -Iffi/include \
    ffi/tests/abi_test.c $libs -o "$tmp/abi_test"

echo "-- C tests (AddressSanitizer, LeakSanitizer)"
tol=$(python3 -c 'import json; m = json.load(open("tests/fixtures/tiny/manifest.json"));
print(4 * m["f64_max_abs_diff"]["enc_mean"] + 1e-6 * m["max_abs"]["enc_mean"])')
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$tmp/abi_test" tests/fixtures/tiny "$tol" "$tmp"

echo "-- the C ABI gives the CLI's bytes and pixels"
ldmae="$TARGET/ldmae"
"$ldmae" compress --device cpu "$tmp/picture.png" -o "$tmp/picture-cli.ldz" 2>/dev/null
cmp "$tmp/picture.ldz" "$tmp/picture-cli.ldz"
"$tmp/compress" tests/fixtures/photo/building.png "$tmp/building.ldz" "$tmp/building-back.png" 2>/dev/null
"$ldmae" compress --device cpu tests/fixtures/photo/building.png -o "$tmp/building-cli.ldz" 2>/dev/null
cmp "$tmp/building.ldz" "$tmp/building-cli.ldz"
"$ldmae" decompress --device cpu "$tmp/building.ldz" -o "$tmp/building-cli.png" 2>/dev/null
"$tmp/abi_test" --same-png "$tmp/building-back.png" "$tmp/building-cli.png"
demo=(--dit assets/dit-fashion-2step.pack --vmae assets/vmae-fashion.pack)
"$ldmae" sample --device cpu "${demo[@]}" --class 0,3,7 --seed 5 -o "$tmp/generated-cli.png" 2>/dev/null
"$tmp/abi_test" --same-png "$tmp/generated.png" "$tmp/generated-cli.png"
"$tmp/generate" "$tmp/generated-cpp.png" 5 0,3,7 2>/dev/null
"$tmp/abi_test" --same-png "$tmp/generated-cpp.png" "$tmp/generated-cli.png"
"$tmp/generate" "$tmp/generated-files.png" 5 0,3,7 assets/dit-fashion-2step.pack assets/vmae-fashion.pack 2>/dev/null
"$tmp/abi_test" --same-png "$tmp/generated-files.png" "$tmp/generated-cli.png"
echo "C ABI: all checks passed"
