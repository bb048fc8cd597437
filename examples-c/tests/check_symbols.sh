#!/bin/sh
# check_symbols.sh LIBNECO HEADER ABUSE_C
#
# Header conformance of libneco.so:
#   1. the exported (global, defined) dynamic symbols equal the functions declared in neco.h;
#   2. every declared function is called by the abuse test (ABUSE_C);
#   3. the soname is libneco.so.<major> ($NECO_EXPECT_SONAME, default libneco.so.0);
#   4. with NECO_EXPECT_STATIC=1: no Swift runtime library is NEEDED (-static-stdlib build).
# Prints "SYMBOLS OK ..." and exits 0 on success.
set -eu
lib=$1 header=$2 abuse=$3
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Global defined symbols (uppercase nm type), minus the version node (type A).
nm -D --defined-only "$lib" | awk '$2 ~ /^[A-Z]$/ && $2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u > "$tmp/exported"
# Declarations: preprocess (drops comments), then every `neco_name (`.
"$cc" -E -P -x c "$header" | grep -oE '\bneco_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u > "$tmp/declared"

status=0
if ! diff -u "$tmp/declared" "$tmp/exported" > "$tmp/diff"; then
    echo "exported symbols differ from neco.h declarations (- declared only, + exported only):"
    cat "$tmp/diff"
    status=1
fi
while read -r f; do
    if ! grep -qw "$f" "$abuse"; then
        echo "not called by $(basename "$abuse"): $f"
        status=1
    fi
done < "$tmp/declared"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
want_soname=${NECO_EXPECT_SONAME:-libneco.so.0}
if [ "$soname" != "$want_soname" ]; then
    echo "soname is '$soname', expected $want_soname"
    status=1
fi
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if [ "${NECO_EXPECT_STATIC:-0}" = 1 ] && echo "$needed" | grep -q 'swift\|dispatch\|Foundation'; then
    echo "Swift runtime libraries are NEEDED (not a -static-stdlib build): $needed"
    status=1
fi
[ $status = 0 ] || exit 1
echo "NEEDED: $needed"
echo "SYMBOLS OK ($(wc -l < "$tmp/exported") exported = $(wc -l < "$tmp/declared") declared in neco.h, all called by $(basename "$abuse"), soname $soname)"
