#!/bin/sh
# memcast-conformance against the udp plugin of the build tree. udp carries registration
# and data (host and network scope): every case passes but those of capabilities it does
# not declare (ordered, zero-copy, reliable), which skip; --data is ignored (udp carries
# data itself) and the registration cases' message goes through udp.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

udp=$MC_BUILDDIR/plugins/udp/mc_udp.la
cases=$("$runner" --list | grep -Ec '^[a-z]+/[a-z_]+ ')

if expect 0 "^# $cases cases: $((cases - 5)) passed, 0 failed, 5 skipped" --format tap "$udp"; then
    expect_not '^not ok'
    grep -q '^# registration: the plugin itself$' "$tmp/out" ||
        { echo "FAIL: udp does not join contexts itself"; status=1; }
    [ "$(count_lines '^ok [0-9]+ - [a-z]+/[a-z_]+ # SKIP needs capability ')" -eq 5 ] ||
        { echo "FAIL: not exactly the 5 cases of undeclared capabilities skip"; status=1; }
    for case in limits/max_size multiprocess/pub_sub robustness/publisher_killed \
        registration/endpoints_seen registration/matched_both_ways; do
        grep -Eq "^ok [0-9]+ - $case\$" "$tmp/out" || { echo "FAIL: $case did not pass"; status=1; }
    done
    grep -q "^# matched both ways; the message went through 'udp'$" "$tmp/out" ||
        { echo "FAIL: no message went through udp"; status=1; }
fi

# --data names the transport loaded next to a plugin without a data role: udp has one.
expect 0 "ignoring --data nosuch: plugin 'udp' carries data" --format tap --suite registration \
    --data nosuch "$udp"

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
