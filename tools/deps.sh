#!/bin/sh
# Installs the Debian packages ringproxy builds and tests with, when pkg-config or PATH
# says they are missing. As root it runs apt-get; otherwise it prints the command to run.
set -e
# `tools/deps.sh fuzz` adds what `make fuzz` needs (clang and libFuzzer).
PKGS="build-essential pkg-config liburing-dev libconfig-dev libcmocka-dev libxxhash-dev \
libwolfssl-dev libdeflate-dev libnghttp2-dev nghttp2-client python3-h2 python3-grpcio curl python3 openssl groff-base prometheus haproxy"
TOOLS="gcc make curl python3 pkg-config openssl groff promtool haproxy h2load nghttp"
if [ "${1:-}" = fuzz ]; then
    PKGS="$PKGS clang-14 libfuzzer-14-dev"
    TOOLS="$TOOLS clang-14"
fi
missing=""
for pc in liburing libconfig cmocka libxxhash wolfssl libdeflate libnghttp2; do
    pkg-config --exists "$pc" 2>/dev/null || missing="yes"
done
for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || missing="yes"
done
[ "${1:-}" = fuzz ] && [ ! -e /usr/lib/llvm-14/lib/libFuzzer.a ] && missing="yes"
[ -e /usr/lib/python3/dist-packages/h2/__init__.py ] || missing="yes" # python3-h2 (test_h2)
[ -e /usr/lib/python3/dist-packages/grpc/__init__.py ] || missing="yes" # python3-grpcio
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends $PKGS"
if [ "$(id -u)" != 0 ]; then
    echo "ringproxy needs build dependencies. Run as root:" >&2
    echo "  apt-get update && $cmd" >&2
    exit 1
fi
echo "installing build dependencies: $PKGS" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
$cmd
