#!/usr/bin/env bash
# The C ABI as static libraries for Android (aarch64-linux-android) and iOS (aarch64-apple-ios),
# CPU-only (the ffi crate's default features), built with the size-tuned `app` profile. Checks
# that every function of the header is exported and prints the sizes. No SDK is needed for the
# static library itself; cargo also links the dependency `constriction`'s unused cdylib for the
# target, which needs the target's linker: the one set in CARGO_TARGET_<TRIPLE>_LINKER (Android
# NDK clang; on a Mac, Xcode's by default), else scripts/placeholder_linker.sh, which writes an
# empty file for that one by-product and refuses anything else (docs/apps.md). The test command
# runs it last, when the time left covers two cold builds (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR
# llvm-nm / llvm-readobj of rustc's own LLVM (rustup's llvm-tools): an older system LLVM cannot
# read the bitcode sections rustc leaves in some members.
rustup component add llvm-tools >/dev/null
llvm=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin
functions=$(grep -oE '\bldmae_[a-z_0-9]+\(' ffi/include/ldmae.h | tr -d '(' | sort -u)
for target in aarch64-linux-android aarch64-apple-ios; do
    rustup target add "$target" >/dev/null
    linker_var=CARGO_TARGET_$(echo "$target" | tr a-z- A-Z_)_LINKER
    if [ -z "${!linker_var:-}" ] && ! { [ "$target" = aarch64-apple-ios ] && command -v xcrun >/dev/null; }; then
        export "$linker_var=$PWD/scripts/placeholder_linker.sh"
        echo "$target: no target linker set; constriction's unused cdylib gets a placeholder"
    fi
    cargo rustc -q -p ldmae-ffi --profile app --target "$target" --crate-type staticlib
    lib="$CARGO_TARGET_DIR/$target/app/libldmae.a"
    # Exported symbols of the archive (llvm-nm reads the ELF and the Mach-O members; Mach-O
    # names carry a leading underscore); it notes every member without exports on stderr.
    symbols=$("$llvm/llvm-nm" -g --defined-only --format=just-symbols "$lib" 2>/dev/null | sed 's/^_//' | sort -u) \
        || { echo "$target: llvm-nm cannot read $lib" >&2; exit 1; }
    missing=$(comm -23 <(echo "$functions") <(echo "$symbols"))
    if [ -n "$missing" ]; then
        echo "$target: missing from libldmae.a: $missing" >&2
        exit 1
    fi
    # Every member is an object file for the target (ELF aarch64 / Mach-O arm64), none for the host.
    formats=$("$llvm/llvm-readobj" --file-headers "$lib" | sed -n 's/^Format: //p' | sort -u | paste -sd,)
    want=$([ "$target" = aarch64-apple-ios ] && echo "Mach-O arm64" || echo elf64-littleaarch64)
    if [ "$formats" != "$want" ]; then
        echo "$target: libldmae.a holds objects of format '$formats', expected '$want'" >&2
        exit 1
    fi
    echo "$target: libldmae.a $(du -h "$lib" | cut -f1) ($formats), all $(echo "$functions" | wc -l) header functions exported"
done
