#!/bin/sh
# Test the phone bindings of mcs-phone-ffi: build the cdylib, generate the Kotlin, Swift and
# Python bindings into target/phone-ffi/, check that the checked-in Kotlin and Swift
# (phone-ffi/bindings/) are what the code generates now, reproduce docs/test-vectors.json
# through the Python binding, then drive one activation and one signature through it against
# a daemon that is ALREADY RUNNING (this script starts none), OpenSSL verifying the signature.
#
# Environment (the live test needs the first three):
#   MCS_SERVER   the daemon's API URL, https://127.0.0.1:PORT (the "listening on" address)
#   MCS_DEV_DIR  its `mcsd dev-init` directory (pki/ with ca.pem, app1.pem/.key; mcsd.toml)
#   MCS_BIN      the directory holding the `mcs` CLI (target/debug)
#   MCS_VECTORS  the known-answer file (default: docs/test-vectors.json of this workspace)
#
# Usage: phone-ffi/run-tests.sh            everything (fails without the environment)
#        phone-ffi/run-tests.sh --offline  no live test (says so; for machines without a daemon)
#
# Needs python3 (3.8 or later) and openssl 3. Kotlin is generated and checked in, not
# compiled here: Debian's kotlinc 1.3.31 cannot compile UniFFI's Kotlin (phone-ffi/README.md).
# Exits non-zero on any build, drift or test failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out="$target/phone-ffi"
offline=false
case "${1:-}" in
  "") ;;
  --offline) offline=true ;;
  *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
esac

fail() { echo "run-tests.sh: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 not found"
vectors=${MCS_VECTORS:-$root/docs/test-vectors.json}
[ -r "$vectors" ] || fail "no readable known-answer file $vectors (MCS_VECTORS)"
if ! $offline; then
  : "${MCS_SERVER:?the live test needs MCS_SERVER (the running daemon's https URL); or run with --offline}"
  : "${MCS_DEV_DIR:?the live test needs MCS_DEV_DIR (the daemon's mcsd dev-init directory)}"
  : "${MCS_BIN:?the live test needs MCS_BIN (the directory holding the mcs CLI)}"
  case "$MCS_SERVER" in https://*) ;; *) fail "MCS_SERVER must be https://host:port, got $MCS_SERVER" ;; esac
  for f in ca.pem app1.pem app1.key admin.pem admin.key gateway.pem gateway.key; do
    [ -r "$MCS_DEV_DIR/pki/$f" ] || fail "MCS_DEV_DIR=$MCS_DEV_DIR has no readable pki/$f"
  done
  [ -x "$MCS_BIN/mcs" ] || fail "MCS_BIN=$MCS_BIN has no executable mcs"
  command -v openssl >/dev/null 2>&1 || fail "openssl not found (it verifies the signature)"
fi

echo "== build the cdylib and generate the bindings into $out"
"$here/generate-bindings.sh" "$out"

echo "== the checked-in bindings are current"
for lang in kotlin swift; do
  if ! diff -r "$here/bindings/$lang" "$out/$lang" >"$out/$lang.diff" 2>&1; then
    head -n 40 "$out/$lang.diff" >&2
    fail "phone-ffi/bindings/$lang differs from what the code generates now (full diff: $out/$lang.diff); regenerate with phone-ffi/generate-bindings.sh --update and commit phone-ffi/bindings/"
  fi
  echo "phone-ffi/bindings/$lang: current"
done

# The Python binding loads the library from its own directory.
cp "$out/lib/libmcs_phone_ffi.so" "$out/python/"
MCS_PHONE_FFI_PY="$out/python"
export MCS_PHONE_FFI_PY

echo "== known-answer vectors through the Python binding ($vectors)"
python3 "$here/tests/python/vectors.py" "$vectors"

if $offline; then
  echo "run-tests.sh: --offline: the live test against a daemon did NOT run"
  exit 0
fi

echo "== live: one activation and one signature through the Python binding against $MCS_SERVER"
MCS_WORK=$(mktemp -d "${TMPDIR:-/tmp}/phone-ffi-live.XXXXXX")
export MCS_WORK
trap 'rm -rf "$MCS_WORK"' EXIT
python3 "$here/tests/python/live.py"
echo "run-tests.sh: all phone-ffi binding tests passed"
