#!/usr/bin/env bash
# Stands in for a mobile target's linker (Android NDK clang, Xcode's ld) where neither is
# installed, for one artefact only: the shared library of the dependency `constriction`, which
# declares `crate-type = ["rlib", "cdylib"]`, so cargo links it for every target although nothing
# uses it (the static library `libldmae.a` takes constriction's rlib). It writes an empty file
# where that shared library would go and refuses every other link, so a build that needs a real
# linker still fails, with this message.
set -euo pipefail
out=
while [ $# -gt 0 ]; do
    if [ "$1" = -o ] && [ $# -gt 1 ]; then out=$2; shift; fi
    shift
done
case "$(basename "$out")" in
    libconstriction*.so | libconstriction*.dylib)
        : > "$out"
        ;;
    *)
        echo "placeholder linker: cannot link '${out:-?}' (only constriction's unused cdylib);" \
            "set the target's real linker (Android NDK clang, Xcode)" >&2
        exit 1
        ;;
esac
