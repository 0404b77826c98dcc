#!/bin/sh
# Builds mask_digits.wasm from mask_digits.c with the Swift toolchain's clang (wasm32 target,
# no C library). The .wasm is build output and is not committed.
set -e
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
"$CLANG" --target=wasm32 -nostdlib -O2 -Wl,--no-entry -o mask_digits.wasm mask_digits.c
