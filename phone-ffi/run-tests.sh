#!/bin/sh
# Test the phone bindings of mcs-phone-ffi: build the cdylib, generate the Kotlin, Swift and
# Python bindings into target/phone-ffi/, check that the checked-in Kotlin and Swift
# (phone-ffi/bindings/) are what the code generates now, compile the checked-in Kotlin
# binding with the tests of tests/kotlin/ (JetBrains' kotlinc, pinned, fetched by npm into
# target/kotlin/), reproduce docs/test-vectors.json through the Kotlin and the Python
# binding, then drive one activation and one signature through each against a daemon that is
# ALREADY RUNNING (this script starts none), OpenSSL verifying the signatures.
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
# Needs python3 (3.8 or later), openssl 3, a JDK (11 or later: java.net.http), npm (once, to
# fetch kotlin-compiler@$KOTLIN_VERSION; Debian's kotlinc 1.3.31 cannot compile UniFFI's
# Kotlin) and JNA (/usr/share/java/jna.jar; libjna-java is installed with apt-get when
# missing). Exits non-zero on any build, drift or test failure.
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

# The Kotlin compiler: JetBrains' distribution as published on npm (kotlin-compiler,
# Apache-2.0), pinned by version and by the tarball's SHA-256; unpacked under the target
# directory, never into the source tree.
KOTLIN_VERSION=2.4.20
KOTLIN_SHA256=c23dab400d7ce5ea8b6c909947c0ca5454189e4bb1108695b5f464500e5e950f
kotlin_home="$target/kotlin/kotlin-compiler-$KOTLIN_VERSION"
kotlinc="$kotlin_home/package/bin/kotlinc-jvm"
kotlin_stdlib="$kotlin_home/package/lib/kotlin-stdlib.jar"
jna=/usr/share/java/jna.jar

install_kotlinc() {
  [ -x "$kotlinc" ] && [ -r "$kotlin_stdlib" ] && return 0
  command -v npm >/dev/null 2>&1 ||
    fail "npm not found: it fetches the pinned Kotlin compiler (npm pack kotlin-compiler@$KOTLIN_VERSION into $target/kotlin/); install npm (Debian: apt-get install npm)"
  echo "== fetch kotlin-compiler@$KOTLIN_VERSION with npm into $kotlin_home"
  rm -rf "$kotlin_home"
  mkdir -p "$kotlin_home"
  (cd "$kotlin_home" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null) ||
    fail "npm pack kotlin-compiler@$KOTLIN_VERSION failed (is the npm registry reachable?)"
  tgz="$kotlin_home/kotlin-compiler-$KOTLIN_VERSION.tgz"
  [ -r "$tgz" ] || fail "npm pack left no $tgz"
  got=$(sha256sum "$tgz" | cut -d' ' -f1)
  [ "$got" = "$KOTLIN_SHA256" ] || fail "$tgz has SHA-256 $got, expected $KOTLIN_SHA256"
  tar -xzf "$tgz" -C "$kotlin_home"
  rm -f "$tgz"
  [ -x "$kotlinc" ] && [ -r "$kotlin_stdlib" ] || fail "kotlin-compiler@$KOTLIN_VERSION has no package/bin/kotlinc-jvm or lib/kotlin-stdlib.jar"
}

install_jna() {
  [ -r "$jna" ] && return 0
  echo "== install libjna-java ($jna is missing)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y libjna-java >/dev/null || fail "apt-get install libjna-java failed; the Kotlin binding needs JNA ($jna)"
  [ -r "$jna" ] || fail "libjna-java is installed but $jna is missing"
}

command -v python3 >/dev/null 2>&1 || fail "python3 not found"
command -v java >/dev/null 2>&1 || fail "java not found (a JDK 11 or later runs the Kotlin tests; Debian: default-jdk-headless)"
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

install_kotlinc
install_jna

# The checked-in binding and the tests, compiled apart (the binding is the slow half and
# changes seldom); each is recompiled only when its sources (or the compiler) changed. Not
# into $out/kotlin: that is the freshly generated source the drift check compares.
classes="$out/kotlin-test"
compile() { # NAME CLASSPATH SOURCES...
  name=$1 cp=$2
  shift 2
  stamp=$(cat "$@" | sha256sum | cut -d' ' -f1)-$KOTLIN_VERSION
  if [ -r "$classes/$name.stamp" ] && [ "$(cat "$classes/$name.stamp")" = "$stamp" ]; then
    echo "$classes/$name: current"
    return 0
  fi
  rm -rf "$classes/$name" "$classes/$name.stamp"
  mkdir -p "$classes"
  "$kotlinc" -nowarn -cp "$cp" -d "$classes/$name" "$@" || fail "kotlinc failed on $*"
  echo "$stamp" >"$classes/$name.stamp"
  echo "$classes/$name: compiled"
  if [ "$name" = binding ]; then
    rm -f "$classes/tests.stamp" # the tests are compiled against the binding: again after it
  fi
}
echo "== compile the checked-in Kotlin binding and tests/kotlin with kotlinc $KOTLIN_VERSION into $classes"
compile binding "$jna" "$here/bindings/kotlin/cn/mcsd/phone/mcs_phone_ffi.kt"
compile tests "$classes/binding:$jna" "$here"/tests/kotlin/*.kt
# UniFFI's Kotlin asks JNA for "mcs_phone_ffi" (libmcs_phone_ffi.so), the cdylib just built.
kotlin_run() {
  java -cp "$classes/tests:$classes/binding:$kotlin_stdlib:$jna" -Djna.library.path="$target/debug" "$@"
}

echo "== known-answer vectors through the Kotlin binding ($vectors)"
kotlin_run cn.mcsd.phone.test.Vectors "$vectors" || fail "the Kotlin vector checks failed"

# The Python binding loads the library from its own directory.
cp "$out/lib/libmcs_phone_ffi.so" "$out/python/"
MCS_PHONE_FFI_PY="$out/python"
export MCS_PHONE_FFI_PY

echo "== known-answer vectors through the Python binding ($vectors)"
python3 "$here/tests/python/vectors.py" "$vectors"

if $offline; then
  echo "run-tests.sh: --offline: the live tests against a daemon (Kotlin and Python) did NOT run"
  exit 0
fi

MCS_WORK=$(mktemp -d "${TMPDIR:-/tmp}/phone-ffi-live.XXXXXX")
export MCS_WORK
trap 'rm -rf "$MCS_WORK"' EXIT
echo "== live: one activation and one signature through the Kotlin binding against $MCS_SERVER"
kotlin_run cn.mcsd.phone.test.Live || fail "the Kotlin live test failed"
echo "== live: one activation and one signature through the Python binding against $MCS_SERVER"
python3 "$here/tests/python/live.py"
echo "run-tests.sh: all phone-ffi binding tests passed"
