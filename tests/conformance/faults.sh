#!/bin/sh
# The suite's verdicts on a transport that breaks one promise at a time (faulty.c, switched
# by its [faulty] fault key): the broken promise fails its case with a reason that names it,
# a crash or a hang fails only the case it happens in, and the suite runs to the end.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

faulty=$MC_BUILDDIR/tests/conformance/mc_faulty.la

fault() {
    printf '[faulty]\nfault = %s\n' "$1" >"$tmp/$1.ini"
    echo "$tmp/$1.ini"
}

# Unbroken it passes everything a process-scoped data transport can be asked (multiprocess,
# robustness and the two registration cases skip).
expect 0 '^# [0-9]+ cases: [0-9]+ passed, 0 failed, 4 skipped' --format tap \
    --config "$(fault none)" "$faulty"

# A crash fails each case that publishes twice; the others, and the rest of the suite, run.
if expect 1 '^not ok 5 - loopback/deliver$' --format tap --suite abi,loopback \
    --config "$(fault crash)" "$faulty"; then
    [ "$(count_lines '^(not )?ok [0-9]+ - ')" -eq 10 ] || { echo "FAIL: the suite stopped"; status=1; }
    [ "$(count_lines '^ok [0-9]+ - abi/')" -eq 4 ] || { echo "FAIL: abi did not pass"; status=1; }
    [ "$(count_lines '^# the case process crashed with signal 11')" -eq 6 ] ||
        { echo "FAIL: not 6 crashes reported"; status=1; }
    grep -q '^# while: publishing 100 messages' "$tmp/out" ||
        { echo "FAIL: the step of the crash is not named"; status=1; }
fi

# A hang is killed at the timeout; the next case still runs.
only_deliver='loopback/(topic|unsub|empty|one)'
if expect 1 '^# no result within 2 s \(--timeout\): the plugin hangs; killed$' --format tap --timeout 2 \
    --suite loopback --exclude "$only_deliver" --config "$(fault hang)" "$faulty"; then
    grep -q '^not ok 6 - loopback/pull$' "$tmp/out" || { echo "FAIL: pull did not run"; status=1; }
fi

# exit() inside the plugin is not a pass.
expect 1 'exited with status 0 before the case finished' --format tap --suite loopback \
    --exclude "$only_deliver" --config "$(fault exit)" "$faulty"

# Broken promises, each caught by its suite.
expect 1 'messages arrived out of order \(the plugin claims MC_CAP_ORDERED\)' --format tap \
    --suite ordering --config "$(fault reorder)" "$faulty"
expect 1 'a slow subscriber lost messages: 4950 of 5000 arrived' --format tap \
    --suite reliable --config "$(fault drop)" "$faulty"
expect 1 'mc_loan.* returned -3' --format tap --suite zerocopy --config "$(fault loan_fails)" \
    "$faulty"

# Leaks, each caught by lifecycle. A leaked thread would crash once its code is unmapped,
# so modules stay mapped here and the thread count tells.
if expect 1 'after 100 context open/close cycles: 10[0-9] file descriptors open' --format tap \
    --suite lifecycle --config "$(fault leak_fd)" "$faulty"; then
    grep -q '^# leaked fd [0-9]* -> /dev/null$' "$tmp/out" || { echo "FAIL: fd not named"; status=1; }
fi
MEMCAST_NO_DLCLOSE=1
export MEMCAST_NO_DLCLOSE
expect 1 'threads were not joined' --format tap --suite lifecycle \
    --config "$(fault leak_thread)" "$faulty"
unset MEMCAST_NO_DLCLOSE
if expect 1 'names of this case in /dev/shm' --format tap --suite lifecycle \
    --config "$(fault leak_shm)" "$faulty"; then
    grep -q '^# left in /dev/shm: mcconf[0-9]*c[0-9]*r[0-9a-f]*-faulty-' "$tmp/out" ||
        { echo "FAIL: name not shown"; status=1; }
    domain=$(sed -n 's|^# left in /dev/shm: \(mcconf[0-9]*c[0-9]*r[0-9a-f]*\)-.*|\1|p' "$tmp/out" |
        head -n 1)
    if ls /dev/shm | grep -q "^$domain-"; then
        echo "FAIL: the runner left the case's names in /dev/shm"
        status=1
    fi
fi

finish
