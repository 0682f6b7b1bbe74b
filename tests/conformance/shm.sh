#!/bin/sh
# memcast-conformance against the shm plugin of the build tree. shm bridges processes of
# one host (scope host) and has no registration role, so the runner joins its contexts and
# processes through the udp plugin found on MEMCAST_PLUGIN_PATH (its default): the
# delivery suites run with publisher and subscriber in two contexts of one process, and
# multiprocess and robustness in processes of their own. Every case but the registration
# suite's must pass: a case that silently skips again fails this test.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

shm=$MC_BUILDDIR/plugins/shm/mc_shm.la
cases=$("$runner" --list | grep -Ec '^[a-z]+/[a-z_]+ ')
passed=$((cases - 2))
context_cases=$("$runner" --list | grep -c 'else two joined by registration')

if expect 0 "^# $cases cases: $passed passed, 0 failed, 2 skipped" --format tap "$shm"; then
    expect_not '^not ok'
    grep -Eq '^# registration: udp \(.*/plugins/udp/mc_udp\.la\)$' "$tmp/out" ||
        { echo "FAIL: udp is not the default registration transport"; status=1; }
    [ "$(count_lines "^ok [0-9]+ - registration/[a-z_]+ # SKIP plugin 'shm' has no registration role\$")" -eq 2 ] ||
        { echo "FAIL: only the registration suite may skip, for want of the role"; status=1; }
    for case in loopback/deliver loopback/pull multiprocess/pub_sub limits/max_size \
        ordering/single_publisher zerocopy/loan_commit reliable/slow_subscriber \
        robustness/publisher_killed concurrency/publishers; do
        grep -Eq "^ok [0-9]+ - $case\$" "$tmp/out" || { echo "FAIL: $case did not pass"; status=1; }
    done
    # The delivery suites ran across two contexts, lossless as shm's claim of MC_CAP_RELIABLE
    # is asked for.
    [ "$(count_lines "^# two contexts joined through 'udp'; reliability asked: MEMCAST_SHM_ACK_TIMEOUT=")" -eq "$context_cases" ] ||
        { echo "FAIL: the delivery cases did not run in two contexts"; status=1; }
fi

# --registration names the same transport explicitly; one without the role is refused.
expect 0 '^ok 1 - multiprocess/pub_sub$' --format tap --registration udp --suite multiprocess "$shm"
expect 99 "--registration inproc: plugin 'inproc' has no MC_ROLE_REGISTRATION" --format tap \
    --registration inproc "$shm"

# Without udp on the search path the cases that need it skip, and say why.
search_path=$MEMCAST_PLUGIN_PATH
MEMCAST_PLUGIN_PATH=$MC_BUILDDIR/plugins/shm
if expect 0 "^# $cases cases: 9 passed, 0 failed, $((cases - 9)) skipped" --format tap "$shm"; then
    [ "$(count_lines "# SKIP (two contexts|processes) meet only through a registration transport: plugin 'shm' has no MC_ROLE_REGISTRATION, no --registration was given, and the default: plugin 'udp' not found")" -eq $((cases - 11)) ] ||
        { echo "FAIL: the cases that need udp are not skipped with the reason"; status=1; }
fi
MEMCAST_PLUGIN_PATH=$search_path
# Registration datagrams dropped (nftables, in a network namespace of our own): the cases
# across contexts and processes fail, naming the side that was not matched; they neither
# pass by luck nor skip. Needs root, unshare and nft; skipped without them.
if can_drop_packets; then
    run_without_registration --format tap --timeout 4 --suite loopback,multiprocess \
        --exclude '^loopback/[^d]' "$shm"
    got=$?
    if [ "$got" -ne 1 ] ||
        ! grep -q "^# the publisher in the publishing context matched 0 of 1 subscribers within 2000 ms (publisher and subscriber are in two contexts: registration through 'udp' did not bring them together)$" "$tmp/out" ||
        ! grep -q "^# the subscriber process got no MATCHED event for the publisher within 2000 ms (registration through 'udp')$" "$tmp/out" ||
        [ "$(count_lines '^not ok [0-9]+ - (loopback/deliver|multiprocess/pub_sub)$')" -ne 2 ]; then
        echo "FAIL: with registration datagrams dropped: exit $got, expected 1 with both reasons"
        sed 's/^/    /' "$tmp/out"
        status=1
    else
        echo "ok: with registration datagrams dropped, loopback/deliver and multiprocess/pub_sub fail with the reason"
    fi
else
    echo "skipped: no root, unshare -n or nft: cannot drop registration datagrams"
fi
finish
