# Shared by the conformance suite's own tests (sourced; run by make check with MC_BUILDDIR,
# MC_FIXTURE_DIR and MEMCAST_PLUGIN_PATH set by tests/Makefile.inc).
#
#   expect CODE PATTERN [ARGS...]   runs memcast-conformance ARGS; fails the test unless it
#                                   exits with CODE and its output matches the extended
#                                   regular expression PATTERN ('' matches anything)
#   expect_not PATTERN              the last output must not match PATTERN
#   can_drop_packets                true when run_without_registration can work here
#   run_without_registration ARGS   runs memcast-conformance ARGS where udp registration
#                                   datagrams are dropped
#   finish                          exits 0 or 1

runner=${MC_BUILDDIR:?run me through make check}/tests/conformance/memcast-conformance
status=0
checks=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mc_conformance_test.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT HUP INT TERM
# The runner re-executes itself to set this; setting it here keeps valgrind in the loop.
LD_BIND_NOW=1
export LD_BIND_NOW

expect() {
    want=$1
    pattern=$2
    shift 2
    checks=$((checks + 1))
    "$runner" "$@" >"$tmp/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: memcast-conformance $*: exit $got, expected $want"
        sed 's/^/    /' "$tmp/out"
        status=1
        return 1
    fi
    if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$tmp/out"; then
        echo "FAIL: memcast-conformance $*: exit $got as expected, but no line matches /$pattern/"
        sed 's/^/    /' "$tmp/out"
        status=1
        return 1
    fi
    echo "ok: memcast-conformance $* -> exit $got${pattern:+, /$pattern/}"
    return 0
}

expect_not() {
    if grep -Eq -- "$1" "$tmp/out"; then
        echo "FAIL: the output matches /$1/:"
        grep -E -- "$1" "$tmp/out" | sed 's/^/    /'
        status=1
    fi
}

# Counts the lines of the last output that match PATTERN.
count_lines() {
    grep -Ec -- "$1" "$tmp/out"
}

# True when this test may drop packets: root, unshare -n, ip and nft.
can_drop_packets() {
    [ "$(id -u)" -eq 0 ] && command -v nft >/dev/null && command -v ip >/dev/null &&
        unshare -n true 2>/dev/null
}

# Runs memcast-conformance ARGS in a network namespace of its own whose input drops UDP to
# port 14000 (udp's registration): output in $tmp/out, returns its exit status.
run_without_registration() {
    checks=$((checks + 1))
    unshare -n sh -c 'ip link set lo up &&
        nft add table inet mcconf &&
        nft add chain inet mcconf in "{ type filter hook input priority 0; }" &&
        nft add rule inet mcconf in udp dport 14000 drop &&
        exec "$@"' sh "$runner" "$@" >"$tmp/out" 2>&1
}

finish() {
    echo "$checks checks, $([ $status -eq 0 ] && echo all passed || echo some failed)"
    exit $status
}
