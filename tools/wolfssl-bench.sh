#!/bin/sh
# tools/wolfssl-bench.sh [BUILD_DIR [SECONDS]]
#
# One-core AEAD throughput, Debian's libwolfssl against the fast build of tools/wolfssl-fast.sh:
# compiles tools/aesgcm_bench.c once against each (Debian's shared library; the fast build's
# static archive, through its pkg-config file) and runs both, pinned to one CPU, SECONDS
# (default 2) per cipher. Records are 16 KiB, the TLS maximum, with 13 bytes of AAD.
# Then, if the fast build produced it, runs wolfSSL's own wolfcrypt benchmark for the same
# ciphers. BUILD_DIR defaults to build; the fast build is made first if it is missing.
set -eu

die() { echo "wolfssl-bench: error: $*" >&2; exit 1; }

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-build}
SECS=${2:-2}
mkdir -p "$BUILD_DIR"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
OUT=$BUILD_DIR/wolfssl-fast
CC=${CC:-gcc}
CFLAGS="-O2 -std=c11 -D_GNU_SOURCE"

pkg-config --exists wolfssl 2>/dev/null ||
    die "Debian's libwolfssl-dev is not installed (apt-get install libwolfssl-dev)"
"$TOP/tools/wolfssl-fast.sh" "$BUILD_DIR"

# shellcheck disable=SC2046,SC2086
$CC $CFLAGS "$TOP/tools/aesgcm_bench.c" $(pkg-config --cflags --libs wolfssl) \
    -o "$OUT/aesgcm_bench-debian" || die "cannot build the benchmark against Debian's libwolfssl"
# shellcheck disable=SC2046,SC2086
$CC $CFLAGS "$TOP/tools/aesgcm_bench.c" \
    $(PKG_CONFIG_PATH="$OUT/prefix/lib/pkgconfig" pkg-config --static --cflags --libs wolfssl) \
    -o "$OUT/aesgcm_bench-fast" || die "cannot build the benchmark against the fast build"

pin=""
command -v taskset >/dev/null 2>&1 && pin="taskset -c 0"

echo "== Debian libwolfssl ($(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null || echo '?'))"
$pin "$OUT/aesgcm_bench-debian" "$SECS"
echo "== fast build ($OUT/prefix, $(sed -n 1p "$OUT/.stamp"))"
$pin "$OUT/aesgcm_bench-fast" "$SECS"

bench=$OUT/build/wolfcrypt/benchmark/benchmark
if [ -x "$bench" ]; then
    echo "== wolfSSL's own benchmark, fast build (1 MiB blocks)"
    $pin "$bench" -aes-gcm -chacha20-poly1305 | grep -E 'GCM|CHA-POLY' || true
fi
