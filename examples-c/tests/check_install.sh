#!/bin/sh
# check_install.sh PREFIX VERSION
#
# The installed tree of `cmake --install`: the library file libneco.so.VERSION with the links
# libneco.so.MAJOR and libneco.so, its soname, both headers, neco.pc with normalised absolute
# paths, and the neco CLI running without LD_LIBRARY_PATH. Prints "INSTALL OK" on success.
set -eu
prefix=$1 version=$2
major=${version%%.*}
status=0
fail() { echo "FAIL: $*"; status=1; }

lib=$(cd "$prefix/lib" 2>/dev/null && pwd) || { echo "FAIL: no $prefix/lib"; exit 1; }
[ -f "$lib/libneco.so.$version" ] && [ ! -L "$lib/libneco.so.$version" ] || fail "lib/libneco.so.$version is not a file"
[ "$(readlink "$lib/libneco.so.$major")" = "libneco.so.$version" ] || fail "libneco.so.$major does not link to libneco.so.$version"
[ "$(readlink "$lib/libneco.so")" = "libneco.so.$major" ] || fail "libneco.so does not link to libneco.so.$major"
soname=$(readelf -d "$lib/libneco.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libneco.so.$major" ] || fail "soname '$soname', expected libneco.so.$major"
for h in neco.h neco.hpp; do [ -f "$prefix/include/$h" ] || fail "include/$h missing"; done

export PKG_CONFIG_PATH="$lib/pkgconfig"
pc_libdir=$(pkg-config --variable=libdir neco)
pc_includedir=$(pkg-config --variable=includedir neco)
[ "$pc_libdir" = "$lib" ] || fail "neco.pc libdir '$pc_libdir', expected '$lib'"
[ "$pc_includedir" = "$(cd "$prefix/include" && pwd)" ] || fail "neco.pc includedir '$pc_includedir'"
for v in "$pc_libdir" "$pc_includedir" "$(pkg-config --variable=prefix neco)"; do
    case "$v" in
        /*) ;;
        *) fail "neco.pc path '$v' is not absolute" ;;
    esac
    case "$v" in
        *//* | */./* | */../* | */. | */.. | */) fail "neco.pc path '$v' is not normalised" ;;
    esac
done
[ "$(pkg-config --modversion neco)" = "$version" ] || fail "neco.pc version $(pkg-config --modversion neco)"

if [ -e "$prefix/bin/neco" ]; then
    env -u LD_LIBRARY_PATH "$prefix/bin/neco" --help > /dev/null || fail "bin/neco --help failed"
else
    echo "note: no bin/neco (configured with -DNECO_INSTALL_CLI=OFF)"
fi
[ $status = 0 ] || exit 1
echo "INSTALL OK ($lib/libneco.so.$version, soname $soname, libdir $pc_libdir)"
