#!/bin/sh
# Build the Java gateway SDK with javac/jar and run its tests: the unit tests (offline), then
# the live tests against a daemon that is ALREADY RUNNING. This script starts no daemon.
#
# Environment (the live tests need all of the first three):
#   MCS_SERVER   the daemon's API URL, https://127.0.0.1:PORT (the "listening on" address)
#   MCS_DEV_DIR  its `mcsd dev-init` directory: pki/ (gateway.pem/.key, app1, admin,
#                server.pem, ca.pem) and mcsd.toml; the dev platforms must allow private
#                callback targets (dev-init's default), since the receiver runs on 127.0.0.1
#   MCS_BIN      the directory holding the `mcs` CLI (target/debug)
#   MCS_VECTORS  the known-answer file (default: docs/test-vectors.json of this workspace)
#   JAVA_HOME    optional; else javac/java/jar from PATH (Java 17 or later)
#
# Usage: sdk/java/run-tests.sh            unit tests, then live tests (fails without the env)
#        sdk/java/run-tests.sh --unit     unit tests only (says so; for machines without a daemon)
#
# Output: target/sdk/java/{classes,test-classes,mcs-gateway-sdk.jar} under the workspace root.
# BouncyCastle comes from Debian's libbcprov-java (/usr/share/java/bcprov.jar), installed
# with apt-get when missing. Exits non-zero on any build or test failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/sdk/java"
unit_only=false
case "${1:-}" in
  "") ;;
  --unit) unit_only=true ;;
  *) echo "usage: $0 [--unit]" >&2; exit 2 ;;
esac

fail() { echo "run-tests.sh: $*" >&2; exit 1; }

if [ -n "${JAVA_HOME:-}" ]; then
  PATH="$JAVA_HOME/bin:$PATH"
fi
for tool in javac java jar; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: install a JDK 17 (apt-get install -y openjdk-17-jdk-headless)"
done

bcprov=/usr/share/java/bcprov.jar
if [ ! -r "$bcprov" ]; then
  echo "run-tests.sh: installing libbcprov-java (BouncyCastle)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y libbcprov-java >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y libbcprov-java >/dev/null; } \
    || fail "could not install libbcprov-java"
  [ -r "$bcprov" ] || fail "libbcprov-java installed but $bcprov is missing"
fi

if ! $unit_only; then
  : "${MCS_SERVER:?the live tests need MCS_SERVER (the running daemon's https URL); or run with --unit}"
  : "${MCS_DEV_DIR:?the live tests need MCS_DEV_DIR (the daemon's mcsd dev-init directory)}"
  : "${MCS_BIN:?the live tests need MCS_BIN (the directory holding the mcs CLI)}"
  case "$MCS_SERVER" in https://*) ;; *) fail "MCS_SERVER must be https://host:port, got $MCS_SERVER" ;; esac
  for f in gateway.pem gateway.key ca.pem server.pem app1.pem app1.key admin.pem; do
    [ -r "$MCS_DEV_DIR/pki/$f" ] || fail "MCS_DEV_DIR=$MCS_DEV_DIR has no readable pki/$f"
  done
  [ -x "$MCS_BIN/mcs" ] || fail "MCS_BIN=$MCS_BIN has no executable mcs"
fi
MCS_VECTORS=${MCS_VECTORS:-$root/docs/test-vectors.json}
[ -r "$MCS_VECTORS" ] || fail "no known-answer file at MCS_VECTORS=$MCS_VECTORS"
export MCS_VECTORS

echo "== building the SDK into $out"
rm -rf "$out/classes" "$out/test-classes"
mkdir -p "$out/classes" "$out/test-classes"
# -Xlint:-path: the Debian jar's manifest names optional jars that are not installed.
javac --release 17 -encoding UTF-8 -Xlint:all,-path -cp "$bcprov" -d "$out/classes" \
  $(find "$here/src/main/java" -name '*.java' | sort)
jar --create --file "$out/mcs-gateway-sdk.jar" -C "$out/classes" .
javac --release 17 -encoding UTF-8 -Xlint:all,-path -cp "$bcprov:$out/classes" -d "$out/test-classes" \
  $(find "$here/src/test/java" "$here/src/example/java" -name '*.java' | sort)

cp="$out/mcs-gateway-sdk.jar:$out/test-classes:$bcprov"
# The receiver logs refused callbacks (which the tests provoke) at WARNING: keep them out.
quiet="-Djava.util.logging.config.file=/dev/null"

echo "== unit tests (vectors: $MCS_VECTORS)"
(cd "$root" && java $quiet -cp "$cp" cn.mcsd.gateway.TestRunner unit)

if $unit_only; then
  echo "== live tests NOT run (--unit): they need a running daemon, see the top of $0"
  exit 0
fi
echo "== live tests against $MCS_SERVER (dev dir $MCS_DEV_DIR, mcs from $MCS_BIN)"
(cd "$root" && java $quiet -cp "$cp" cn.mcsd.gateway.TestRunner live)
echo "== all Java SDK tests passed"
