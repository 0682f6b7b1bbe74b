#!/bin/sh
# memcast-conformance against the udp plugin of the build tree. udp carries registration
# only (no data role yet), so the runner loads it with a data transport (inproc, its
# default) to open contexts: abi, config, lifecycle and the registration suite must pass,
# every data case must skip because udp has no data role, and the registration case that
# needs a data transport of scope host skips until one is given (--data shm, below).
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

udp=$MC_BUILDDIR/plugins/udp/mc_udp.la
cases=$("$runner" --list | grep -Ec '^[a-z]+/[a-z_]+ ')
data_cases=$("$runner" --list | grep -Ec '^ +\[needs role: data')

if expect 0 "^# $cases cases: 10 passed, 0 failed, $((cases - 10)) skipped" --format tap "$udp"; then
    expect_not '^not ok'
    grep -Eq '^# data transport: inproc \(.*/plugins/inproc/mc_inproc\.la\)$' "$tmp/out" ||
        { echo "FAIL: inproc is not the default data transport"; status=1; }
    grep -q '^# registration: the plugin itself$' "$tmp/out" ||
        { echo "FAIL: udp does not join contexts itself"; status=1; }
    [ "$(count_lines "^ok [0-9]+ - [a-z]+/[a-z_]+ # SKIP plugin 'udp' has no data role\$")" -eq "$data_cases" ] ||
        { echo "FAIL: not all $data_cases data cases skip for want of the data role"; status=1; }
    for case in abi/descriptor abi/exports abi/entry_pure config/empty_section \
        config/explicit_defaults lifecycle/context_cycles lifecycle/endpoint_cycles \
        registration/endpoints_seen; do
        grep -Eq "^ok [0-9]+ - $case\$" "$tmp/out" || { echo "FAIL: $case did not pass"; status=1; }
    done
    grep -Eq '^ok [0-9]+ - registration/matched_both_ways # SKIP needs a data transport of scope host' \
        "$tmp/out" || { echo "FAIL: matched_both_ways is not skipped with the reason"; status=1; }
fi

# With shm as the data transport, endpoints of two contexts match both ways through udp.
if expect 0 '^# 2 cases: 2 passed, 0 failed, 0 skipped' --format tap --suite registration \
    --data shm "$udp"; then
    grep -q "^# matched both ways; the message went through 'shm'$" "$tmp/out" ||
        { echo "FAIL: no message went through shm"; status=1; }
fi

# A data transport that cannot be found makes the run unusable, and says what to do.
expect 99 "plugin 'nosuch' not found.*pass --data PLUGIN" --format tap --data nosuch "$udp"

# With its datagrams dropped, two contexts do not learn each other's endpoints: the
# registration case fails, naming what was not learnt.
if can_drop_packets; then
    run_without_registration --format tap --timeout 4 --suite registration "$udp"
    got=$?
    if [ "$got" -ne 1 ] ||
        ! grep -q '^# context 2 did not learn of the publisher of the other context within 2000 ms$' "$tmp/out"; then
        echo "FAIL: with registration datagrams dropped: exit $got, expected 1 with the reason"
        sed 's/^/    /' "$tmp/out"
        status=1
    else
        echo "ok: with registration datagrams dropped, registration/endpoints_seen fails with the reason"
    fi
else
    echo "skipped: no root, unshare -n or nft: cannot drop registration datagrams"
fi
finish
