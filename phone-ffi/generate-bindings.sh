#!/bin/sh
# Generate the UniFFI bindings of mcs-phone-ffi (Kotlin, Swift, Python) from the built
# cdylib, in library mode: the exported interface is read from the library itself, so the
# bindings match the Rust code bit for bit.
#
# Usage: phone-ffi/generate-bindings.sh OUT_DIR   write OUT_DIR/{kotlin,swift,python} and
#                                                 OUT_DIR/lib/libmcs_phone_ffi.so (the library
#                                                 they were generated from)
#        phone-ffi/generate-bindings.sh --update  also replace the checked-in
#                                                 phone-ffi/bindings/{kotlin,swift} (then commit)
#
# Builds with `cargo build -j2`: the library as an app ships it (no features), then the
# `uniffi-bindgen` command (feature `bindgen`). `--no-format`: the output does not depend on
# whether ktlint or swift-format happen to be installed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

update=false
case "${1:-}" in
  --update) update=true; out="$target/phone-ffi" ;;
  ""|-*) echo "usage: $0 OUT_DIR | --update" >&2; exit 2 ;;
  *) out=$1 ;;
esac

cd "$root"
cargo build -j2 -p mcs-phone-ffi
mkdir -p "$out/lib"
# Copied at once: building the generator below rebuilds the crate with another feature set,
# and the library an app ships is the one without it.
cp "$target/debug/libmcs_phone_ffi.so" "$out/lib/libmcs_phone_ffi.so"
cargo build -j2 -p mcs-phone-ffi --features bindgen --bin uniffi-bindgen

for lang in kotlin swift python; do
  rm -rf "$out/$lang"
  "$target/debug/uniffi-bindgen" generate --no-format --library "$out/lib/libmcs_phone_ffi.so" \
    --language "$lang" --out-dir "$out/$lang" >/dev/null
done

if $update; then
  for lang in kotlin swift; do
    rm -rf "$here/bindings/$lang"
    mkdir -p "$here/bindings"
    cp -R "$out/$lang" "$here/bindings/$lang"
  done
  echo "generate-bindings.sh: phone-ffi/bindings/{kotlin,swift} updated; commit them"
fi
