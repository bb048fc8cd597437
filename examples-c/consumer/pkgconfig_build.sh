#!/bin/sh
# pkgconfig_build.sh PREFIX OUTDIR MODEL N_HEADS
# Builds consumer/main.c against an INSTALLED libneco found through pkg-config, then runs it.
set -eu
prefix=$1 out=$2 model=$3 heads=$4
here=$(cd "$(dirname "$0")" && pwd)
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists --print-errors neco
echo "pkg-config: neco $(pkg-config --modversion neco): $(pkg-config --cflags --libs neco)"
libdir=$(pkg-config --variable=libdir neco)
mkdir -p "$out"
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -Wall -Wextra -Werror -pedantic "$here/main.c" -o "$out/consumer_pkgconfig" \
    $(pkg-config --cflags --libs neco) -Wl,-rpath,"$libdir"
"$out/consumer_pkgconfig" "$model" "$heads"
