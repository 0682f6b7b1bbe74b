#!/bin/sh
# memcast-conformance against the shm plugin of the build tree. shm bridges processes of
# one host only, so the cases that need one context (scope process) skip with the reason
# and the multi-process ones skip until a registration plugin is passed; everything that
# applies must pass: descriptor, exports, purity, config, and no fd, thread or /dev/shm
# name left after 100 context and 1000 endpoint cycles.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

shm=$MC_BUILDDIR/plugins/shm/mc_shm.la
if expect 0 '^# [0-9]+ cases: 9 passed, 0 failed, [0-9]+ skipped' --format tap "$shm"; then
    expect_not '^not ok'
    for case in abi/descriptor abi/exports abi/entry_pure config/explicit_defaults \
        lifecycle/context_cycles lifecycle/endpoint_cycles; do
        grep -Eq "^ok [0-9]+ - $case\$" "$tmp/out" || { echo "FAIL: $case did not pass"; status=1; }
    done
    [ "$(count_lines '# SKIP needs scope process; plugin .shm. bridges: host')" -gt 0 ] ||
        { echo "FAIL: process-scope cases are not skipped with the reason"; status=1; }
fi
finish
