#!/bin/sh
# Checks what the shared objects export (run by make check with MC_SRCDIR and MC_BUILDDIR):
#  - libmemcast.so exports exactly the functions include/memcast/memcast.h declares MC_API,
#    and nothing that lacks the mc_ prefix;
#  - every plugin exports only the entry point (tests/abi/expected-plugin-exports.txt).
# Exit 0 when both hold, 1 with the extra and missing names otherwise, 77 without nm.

srcdir=${MC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${MC_BUILDDIR:-.}
lib=$builddir/framework/.libs/libmemcast.so
header=$srcdir/include/memcast/memcast.h
expected_plugin=$srcdir/tests/abi/expected-plugin-exports.txt

if ! command -v nm >/dev/null 2>&1; then
    echo "exports.sh: nm not found (install binutils); skipping" >&2
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mc_exports.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
status=0

# Defined dynamic symbols, one name a line, sorted. Version nodes (type A, such as
# MEMCAST_0) are not symbols of the code; nm may append @@VERSION to names.
exports_of() {
    nm -D --defined-only "$1" | awk 'NF >= 3 && $2 != "A" { print $3 }' | sed 's/@.*//' |
        LC_ALL=C sort -u
}

# Prints the names only in the first sorted list (prefixed with $3) and only in the
# second (prefixed with $4); returns 1 when there are any.
report_difference() {
    LC_ALL=C comm -23 "$1" "$2" | sed "s/^/$3 /" >"$tmp/diff"
    LC_ALL=C comm -13 "$1" "$2" | sed "s/^/$4 /" >>"$tmp/diff"
    if [ -s "$tmp/diff" ]; then
        cat "$tmp/diff"
        return 1
    fi
    return 0
}

check_library() {
    if [ ! -f "$lib" ]; then
        echo "FAIL: $lib not found: build framework/libmemcast.la first"
        return 1
    fi
    # The name of every MC_API declaration: the identifier right before the first '('.
    sed -n 's/^MC_API[^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$header" |
        LC_ALL=C sort -u >"$tmp/declared"
    if [ ! -s "$tmp/declared" ]; then
        echo "FAIL: no MC_API declaration found in $header"
        return 1
    fi
    exports_of "$lib" >"$tmp/exported" || return 1
    rc=0
    if grep -v '^mc_' "$tmp/exported" >"$tmp/unprefixed"; then
        sed 's/^/FAIL: libmemcast.so exports a name without the mc_ prefix: /' "$tmp/unprefixed"
        rc=1
    fi
    if ! report_difference "$tmp/exported" "$tmp/declared" \
        "FAIL: libmemcast.so exports a name memcast.h does not declare MC_API:" \
        "FAIL: memcast.h declares MC_API but libmemcast.so does not export:"; then
        rc=1
    fi
    [ $rc -eq 0 ] && echo "ok: libmemcast.so exports the $(wc -l <"$tmp/declared") MC_API functions, nothing else"
    return $rc
}

check_plugins() {
    LC_ALL=C sort -u "$expected_plugin" >"$tmp/plugin_expected"
    rc=0
    found=0
    for so in "$builddir"/plugins/*/.libs/mc_*.so; do
        [ -f "$so" ] || continue
        found=$((found + 1))
        exports_of "$so" >"$tmp/plugin_exported" || return 1
        name=${so##*/}
        if report_difference "$tmp/plugin_exported" "$tmp/plugin_expected" \
            "FAIL: $name exports an extra symbol:" "FAIL: $name does not export:"; then
            echo "ok: $name exports only $(paste -s -d ' ' "$tmp/plugin_expected")"
        else
            rc=1
        fi
    done
    if [ $found -eq 0 ]; then
        echo "FAIL: no plugin found under $builddir/plugins/*/.libs"
        rc=1
    fi
    return $rc
}

check_library || status=1
check_plugins || status=1
exit $status
