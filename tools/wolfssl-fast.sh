#!/bin/sh
# tools/wolfssl-fast.sh BUILD_DIR
#
# Builds a static wolfSSL with its x86-64 assembly (AES-NI, AVX2, SP math asm) from Debian's own
# source package, keeping the feature set of Debian's libwolfssl (its debian/rules configure
# flags), and installs it into BUILD_DIR/wolfssl-fast/prefix:
#   include/wolfssl/...   lib/libwolfssl.a   lib/pkgconfig/wolfssl.pc
# Sources go to BUILD_DIR/wolfssl-src/, the object tree to BUILD_DIR/wolfssl-fast/build/.
#
# Debian's libwolfssl is configured without assembly: AES-128-GCM runs at 0.1-0.2 GB/s a core
# there, about 5 GB/s here (tools/wolfssl-bench.sh compares them). This build is for
# `make WOLFSSL=fast`; compile and link with
#   PKG_CONFIG_PATH=BUILD_DIR/wolfssl-fast/prefix/lib/pkgconfig pkg-config --static --cflags --libs wolfssl
# and include <wolfssl/options.h> before any other wolfSSL header.
#
# Idempotent: BUILD_DIR/wolfssl-fast/.stamp records the recipe number and the source version;
# when both match, nothing is done (delete BUILD_DIR/wolfssl-src to fetch a newer Debian
# revision). Missing tools are installed with apt-get (root only), and deb-src is added to the
# apt sources for Debian's archive if apt knows no wolfssl source package (the original file is
# kept in /var/backups). About 2.5 minutes on 2 cores. WOLFSSL_FAST_JOBS overrides -j2.
set -eu

die() { echo "wolfssl-fast: error: $*" >&2; exit 1; }
say() { echo "wolfssl-fast: $*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || die "the fast build needs x86-64 (this is $(uname -m))"
mkdir -p "$1" || die "cannot create $1"
BUILD_DIR=$(cd "$1" && pwd)
SRC_DIR=$BUILD_DIR/wolfssl-src
OUT_DIR=$BUILD_DIR/wolfssl-fast
OBJ_DIR=$OUT_DIR/build
PREFIX=$OUT_DIR/prefix
STAMP=$OUT_DIR/.stamp
JOBS=${WOLFSSL_FAST_JOBS:-2}
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -q -o DPkg::Lock::Timeout=600"

# Bump when the recipe below changes: a different stamp forces a rebuild.
RECIPE=2
# Added to Debian's own flags (read from debian/rules): x86-64 assembly for AES-NI/AVX1/AVX2
# (AES-GCM, ChaCha20-Poly1305, SHA-2, Curve25519), single-precision math with its assembly for
# RSA-2048/3072, P-256/P-384 (sp-math-all stays the fallback for other sizes), and a static,
# position-independent archive (so it can also go into libringproxy.so).
FAST_FLAGS="--enable-intelasm --enable-aesni --enable-sp=yes --enable-sp-asm --enable-sp-math-all \
--enable-static --disable-shared --with-pic"

need_root() {
    [ "$(id -u)" = 0 ] && return 0
    die "$1 needs root; run as root once: $0 $BUILD_DIR"
}

# --- 1. tools -------------------------------------------------------------------------------
ensure_tools() {
    missing=""
    for t in dpkg-source:dpkg-dev autoreconf:autoconf automake:automake libtoolize:libtool \
             make:make gcc:gcc nm:binutils xz:xz-utils; do
        command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
    done
    [ -e /usr/include/stdio.h ] || missing="$missing libc6-dev"
    [ -z "$missing" ] && return 0
    need_root "installing$missing"
    say "installing build tools:$missing"
    $APT update || die "apt-get update failed"
    # shellcheck disable=SC2086
    $APT install -y --no-install-recommends $missing || die "apt-get install$missing failed"
}

# --- 2. a deb-src entry for Debian's archive ------------------------------------------------
codename() {
    # shellcheck disable=SC1091
    . /etc/os-release 2>/dev/null || true
    echo "${VERSION_CODENAME:-bookworm}"
}

have_deb_src() {
    # a deb-src line in one-line format, or deb-src in a deb822 Types: field
    grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        && return 0
    grep -qsiE '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources && return 0
    return 1
}

backup_source() {
    mkdir -p /var/backups
    b=/var/backups/ringproxy-wolfssl.$(basename "$1").orig
    [ -e "$b" ] || cp -p "$1" "$b"
    say "added deb-src to $1 (original saved as $b)"
}

add_deb_src() {
    suite=$(codename)
    added=""
    # deb822 (/etc/apt/sources.list.d/*.sources, Debian 12's default): add deb-src to the Types
    # of every enabled stanza for a Debian archive that lists this release.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        out=$(mktemp)
        awk -v suite="$suite" '
            function flush(   i, t) {
                if (n == 0) return
                hit = (types != "" && uris ~ /debian/ && suites ~ suite && enabled !~ /^[[:space:]]*no/)
                for (i = 1; i <= n; i++) {
                    if (hit && i == typeline) { print lines[i] " deb-src"; changed = 1 }
                    else print lines[i]
                }
                n = 0; types = ""; uris = ""; suites = ""; enabled = ""; typeline = 0
            }
            /^[[:space:]]*$/ { flush(); print; next }
            {
                lines[++n] = $0
                if (tolower($0) ~ /^types:/) { types = $0; typeline = n; if ($0 ~ /deb-src/) types = "" }
                else if (tolower($0) ~ /^uris:/) uris = $0
                else if (tolower($0) ~ /^suites:/) suites = $0
                else if (tolower($0) ~ /^enabled:/) enabled = substr($0, 9)
            }
            END { flush(); exit changed ? 0 : 1 }
        ' "$f" >"$out" && { backup_source "$f"; cat "$out" >"$f"; added=yes; }
        rm -f "$out"
    done
    # one-line format (/etc/apt/sources.list, *.list): a deb-src twin of each Debian deb line
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        extra=$(awk -v suite="$suite" '
            { seen[$0] = 1 }
            /^[[:space:]]*deb[[:space:]]/ && /debian/ && $0 ~ suite { src = $0; sub(/deb/, "deb-src", src); cand[++n] = src }
            END { for (i = 1; i <= n; i++) if (!(cand[i] in seen)) print cand[i] }
        ' "$f")
        if [ -n "$extra" ]; then
            backup_source "$f"
            printf '%s\n' "$extra" >>"$f"
            added=yes
        fi
    done
    if [ -z "$added" ] && ! have_deb_src; then
        f=/etc/apt/sources.list.d/ringproxy-deb-src.sources
        say "no Debian entry to extend; writing $f"
        cat >"$f" <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    fi
}

ensure_source_index() {
    [ -n "$(apt-cache showsrc wolfssl 2>/dev/null)" ] && return 0
    need_root "adding a deb-src entry and running apt-get update"
    add_deb_src
    say "apt-get update (for the source index)"
    $APT update || die "apt-get update failed"
    [ -n "$(apt-cache showsrc wolfssl 2>/dev/null)" ] ||
        die "apt knows no source package 'wolfssl' even after adding deb-src; check /etc/apt/sources.list.d/"
}

# --- 3. the source package ------------------------------------------------------------------
src_tree() {
    for d in "$SRC_DIR"/wolfssl-*/; do
        [ -f "$d/debian/rules" ] && [ -f "$d/configure.ac" ] && { echo "${d%/}"; return 0; }
    done
    return 1
}

fetch_source() {
    if [ -f "$SRC_DIR/.fetched" ] && src_tree >/dev/null; then
        say "source already fetched: $(cat "$SRC_DIR/.fetched") in $(src_tree)"
        return 0
    fi
    ensure_source_index
    # the version of the installed libwolfssl-dev when apt can still fetch it, else the newest
    spec=wolfssl
    inst=$(dpkg-query -W -f='${source:Version}' libwolfssl-dev 2>/dev/null || true)
    if [ -n "$inst" ] && apt-cache showsrc wolfssl | grep -qx "Version: $inst"; then
        spec="wolfssl=$inst"
    fi
    rm -rf "$SRC_DIR"
    mkdir -p "$SRC_DIR"
    say "apt-get source $spec into $SRC_DIR"
    (cd "$SRC_DIR" && $APT -o APT::Sandbox::User=root source "$spec") || die "apt-get source $spec failed"
    tree=$(src_tree) || die "apt-get source left no wolfssl-*/ tree with debian/rules in $SRC_DIR"
    ver=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$tree/debian/changelog")
    echo "${ver:-unknown}" >"$SRC_DIR/.fetched"
}

# Debian's configure flags: the words after `dh_auto_configure --` in override_dh_auto_configure
debian_flags() {
    awk '
        /^override_dh_auto_configure:/ { inrule = 1; next }
        inrule && /^[^\t ]/ { inrule = 0 }
        inrule && /dh_auto_configure/ { grab = 1 }
        grab {
            line = $0; cont = (line ~ /\\[[:space:]]*$/); sub(/\\[[:space:]]*$/, "", line)
            n = split(line, w, /[[:space:]]+/)
            for (i = 1; i <= n; i++) if (w[i] ~ /^--./) printf "%s ", w[i]
            if (!cont) grab = 0
        }
    ' "$1/debian/rules" | sed 's/ *$//'
}

# --- main -----------------------------------------------------------------------------------
# one run at a time per BUILD_DIR (make -j may start this twice)
mkdir -p "$OUT_DIR"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT_DIR/.lock"
    flock 9
fi
if [ -f "$STAMP" ] && [ -f "$PREFIX/lib/libwolfssl.a" ] && [ -f "$SRC_DIR/.fetched" ] &&
   [ "$(sed -n 1p "$STAMP")" = "recipe=$RECIPE source=$(cat "$SRC_DIR/.fetched")" ]; then
    say "up to date: $PREFIX ($(sed -n 1p "$STAMP"))"
    exit 0
fi

start=$(date +%s)
ensure_tools
fetch_source
TREE=$(src_tree)
VERSION=$(cat "$SRC_DIR/.fetched")

DEB_FLAGS=$(debian_flags "$TREE")
[ -n "$DEB_FLAGS" ] || die "could not read Debian's configure flags from $TREE/debian/rules"
# Debian builds the shared and static library; here only the static one, from FAST_FLAGS.
DEB_FLAGS=$(echo "$DEB_FLAGS" | tr ' ' '\n' | grep -vE '^--(enable|disable)-(shared|static)$' |
    tr '\n' ' ' | sed 's/ *$//')

if [ ! -f "$SRC_DIR/.autogen" ] || [ ! -x "$TREE/configure" ]; then
    say "autoreconf (wolfSSL's autogen.sh) in $TREE"
    (cd "$TREE" && ./autogen.sh) >"$SRC_DIR/autogen.log" 2>&1 ||
        { tail -20 "$SRC_DIR/autogen.log" >&2; die "autogen.sh failed; see $SRC_DIR/autogen.log"; }
    touch "$SRC_DIR/.autogen"
fi

# Debian's compiler flags (dpkg-buildflags, as debian/rules sets hardening=+all)
CFLAGS=$(cd "$TREE" && DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)
CPPFLAGS=$(cd "$TREE" && DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)
LDFLAGS=$(cd "$TREE" && DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
export CFLAGS CPPFLAGS LDFLAGS

rm -rf "$OBJ_DIR" "$PREFIX" "$STAMP"
mkdir -p "$OBJ_DIR"
say "wolfSSL $VERSION, Debian flags: $DEB_FLAGS"
say "added flags: $FAST_FLAGS"
say "configure (log: $OUT_DIR/configure.log)"
# shellcheck disable=SC2086
(cd "$OBJ_DIR" && "$TREE/configure" --prefix="$PREFIX" --libdir="$PREFIX/lib" \
    --disable-dependency-tracking $DEB_FLAGS $FAST_FLAGS) >"$OUT_DIR/configure.log" 2>&1 ||
    { tail -20 "$OUT_DIR/configure.log" >&2; die "configure failed; see $OUT_DIR/configure.log"; }
say "make -j$JOBS (log: $OUT_DIR/build.log)"
(cd "$OBJ_DIR" && make -j"$JOBS" && make install) >"$OUT_DIR/build.log" 2>&1 ||
    { tail -30 "$OUT_DIR/build.log" >&2; die "build failed; see $OUT_DIR/build.log"; }

lib=$PREFIX/lib/libwolfssl.a
[ -f "$lib" ] || die "make install left no $lib"
[ -f "$PREFIX/lib/pkgconfig/wolfssl.pc" ] || die "make install left no wolfssl.pc"
rm -f "$PREFIX"/lib/libwolfssl.so* "$PREFIX"/lib/libwolfssl.la
# --enable-distro leaves options.h (the configured feature macros) out of `make install`;
# Debian installs it by hand (debian/libwolfssl-dev.install), and so does this script.
# Include <wolfssl/options.h> before any other wolfSSL header, or the struct layouts differ.
for h in wolfssl/options.h cyassl/options.h; do
    if [ -f "$OBJ_DIR/$h" ]; then
        mkdir -p "$PREFIX/include/${h%/*}" && cp "$OBJ_DIR/$h" "$PREFIX/include/$h"
    fi
done
# wolfssl.pc names no system libraries; a static link needs them (log/pow from libm, dlopen for
# PKCS#11, pthreads): record configure's own list as Libs.private for `pkg-config --static`.
pc=$PREFIX/lib/pkgconfig/wolfssl.pc
priv=$(sed -n -e 's/^LIBM = //p' -e 's/^LIBS = //p' "$OBJ_DIR/Makefile" | tr '\n' ' ' | tr -s ' ' |
    sed 's/^ //; s/ $//')
if [ -n "$priv" ] && ! grep -q '^Libs.private:' "$pc"; then
    echo "Libs.private: $priv" >>"$pc"
fi
[ -f "$PREFIX/include/wolfssl/options.h" ] || die "no wolfssl/options.h in $OBJ_DIR"
grep -q '^#define WOLFSSL_AESNI' "$PREFIX/include/wolfssl/options.h" ||
    die "options.h lacks WOLFSSL_AESNI: configure did not enable AES-NI"
nm "$lib" 2>/dev/null | grep -q 'AES_GCM_encrypt_avx2' ||
    die "$lib has no AES-NI/AVX2 AES-GCM code (AES_GCM_encrypt_avx2): the assembly is not in"

# wolfCrypt's own known-answer tests, built with the library (a few seconds); run from the
# source tree, where they find their test certificates
if [ -x "$OBJ_DIR/wolfcrypt/test/testwolfcrypt" ]; then
    say "self-test (wolfcrypt/test/testwolfcrypt)"
    (cd "$TREE" && "$OBJ_DIR/wolfcrypt/test/testwolfcrypt") >"$OUT_DIR/selftest.log" 2>&1 ||
        { tail -20 "$OUT_DIR/selftest.log" >&2; die "wolfCrypt self-test failed; see $OUT_DIR/selftest.log"; }
fi

end=$(date +%s)
{
    echo "recipe=$RECIPE source=$VERSION"
    echo "debian_flags=$DEB_FLAGS"
    echo "added_flags=$FAST_FLAGS"
    echo "CFLAGS=$CFLAGS"
    echo "CPPFLAGS=$CPPFLAGS"
    echo "build_seconds=$((end - start))"
} >"$STAMP"
say "done in $((end - start)) s: $lib ($(du -k "$lib" | cut -f1) KiB)"
say "use: PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --static --cflags --libs wolfssl"
