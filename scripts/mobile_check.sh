#!/usr/bin/env bash
# The C ABI as static libraries for Android (aarch64-linux-android) and iOS (aarch64-apple-ios),
# CPU-only (the ffi crate's default features), built with the size-tuned `app` profile. Checks
# that every function of the header is exported and prints the sizes. Needs the target's linker
# (Android NDK clang via CARGO_TARGET_AARCH64_LINUX_ANDROID_LINKER, Xcode on a Mac): the dependency
# `constriction` also declares a cdylib, which cargo links for the target (docs/apps.md). Not part of the test command (two cold burn builds, ~30 min on
# 2 cores): run it when the ABI or the dependency tree changes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR
functions=$(grep -oE '\bldmae_[a-z_0-9]+\(' ffi/include/ldmae.h | tr -d '(' | sort -u)
for target in aarch64-linux-android aarch64-apple-ios; do
    rustup target add "$target" >/dev/null
    cargo rustc -q -p ldmae-ffi --profile app --target "$target" --crate-type staticlib
    lib="$CARGO_TARGET_DIR/$target/app/libldmae.a"
    # The archive's symbol table (GNU nm reads ELF members; for Mach-O, the archive index).
    if [ "$target" = aarch64-linux-android ]; then
        symbols=$(aarch64-linux-gnu-nm -g --defined-only "$lib" 2>/dev/null | awk '{print $3}')
    else
        symbols=$(python3 - "$lib" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
print("\n".join(sorted(set(m.decode().lstrip("_") for m in re.findall(rb"_ldmae_[a-z_0-9]+", data)))))
PY
)
    fi
    missing=$(comm -23 <(echo "$functions") <(echo "$symbols" | sed 's/^_//' | sort -u))
    if [ -n "$missing" ]; then
        echo "$target: missing from libldmae.a: $missing" >&2
        exit 1
    fi
    echo "$target: libldmae.a $(du -h "$lib" | cut -f1), all $(echo "$functions" | wc -l) header functions exported"
done
