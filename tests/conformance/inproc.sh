#!/bin/sh
# memcast-conformance against the inproc plugin of the build tree: the whole suite must
# pass (skips allowed), and the runner's options, formats and exit codes behave.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

inproc=$MC_BUILDDIR/plugins/inproc/mc_inproc.la
cases=$("$runner" --list | grep -Ec '^[a-z]+/[a-z_]+ ')

# The whole suite, TAP: one plan, every case reported, nothing failed, the two multi-process
# suites skipped for want of a scope and the registration suite for want of the role; the
# delivery suites run in one context (scope process) and need no registration transport.
if expect 0 "^1\.\.$cases\$" --format tap "$inproc"; then
    [ "$(count_lines '^(not )?ok [0-9]+ - ')" -eq "$cases" ] ||
        { echo "FAIL: not $cases results"; status=1; }
    expect_not '^not ok'
    [ "$(count_lines '^ok [0-9]+ - (multiprocess|robustness)/[a-z_]+ # SKIP needs scope host or network')" -eq 2 ] ||
        { echo "FAIL: multiprocess and robustness are not skipped for want of a scope"; status=1; }
    [ "$(count_lines "^ok [0-9]+ - registration/[a-z_]+ # SKIP plugin 'inproc' has no registration role\$")" -eq 2 ] ||
        { echo "FAIL: the registration suite is not skipped for want of the role"; status=1; }
    [ "$(count_lines '^ok [0-9]+ - [a-z]+/[a-z_]+$')" -eq $((cases - 4)) ] ||
        { echo "FAIL: not every other case passed"; status=1; }
    expect_not 'two contexts'
fi

# Text output: aligned verdicts and a summary.
expect 0 '^[0-9]+ cases: [0-9]+ passed, 0 failed, 0 skipped in' \
    --format text --suite abi,loopback "$inproc"
expect 0 '^PASS  abi/descriptor +[0-9.]+s$' --format text --suite abi "$inproc"

# The plugin as a .so, and as a bare name found through MEMCAST_PLUGIN_PATH.
expect 0 '^ok 4 - abi/entry_pure$' --format tap --suite abi \
    "$MC_BUILDDIR/plugins/inproc/.libs/mc_inproc.so"
expect 0 "plugin 'inproc' .*/plugins/inproc/mc_inproc\.la" --format tap --suite abi inproc

# Nothing applicable: 77. Excluded cases are reported as skipped.
expect 77 '^ok 1 - multiprocess/pub_sub # SKIP' --format tap --suite multiprocess,robustness "$inproc"
expect 0 '^ok [0-9]+ - loopback/topic_filter # SKIP excluded by --exclude' \
    --format tap --suite loopback --exclude 'topic_' --exclude '^loopback/pull$' "$inproc"
[ "$(count_lines '# SKIP excluded')" -eq 2 ] || { echo "FAIL: --exclude did not exclude 2"; status=1; }

# A --config section reaches the plugin: an invalid value makes it unusable (99).
printf '[inproc]\nqueue_depth = 0\n' >"$tmp/bad.ini"
expect 99 "queue_depth" --format tap --config "$tmp/bad.ini" --suite abi "$inproc"
printf '[inproc]\nmax_message_size = 4K\n' >"$tmp/small.ini"
expect 0 '^# .*max message 4096 bytes' --format tap --config "$tmp/small.ini" --suite limits "$inproc"

# --list, --help and bad usage.
expect 0 '^concurrency/publishers ' --list
for suite in abi config lifecycle loopback multiprocess limits ordering zerocopy reliable \
    robustness concurrency registration; do
    grep -q "^$suite/" "$tmp/out" || { echo "FAIL: --list lacks suite $suite"; status=1; }
done
expect 0 '^usage: memcast-conformance' --help
grep -q -- '--registration PLUGIN' "$tmp/out" && grep -q -- '--data PLUGIN' "$tmp/out" ||
    { echo "FAIL: --help lacks --registration or --data"; status=1; }
expect 2 'unknown suite' --suite nosuch "$inproc"
expect 2 'no PLUGIN given' --format tap
expect 2 "--timeout '0'" --timeout 0 "$inproc"

# Plugins that cannot be found or named.
expect 99 "plugin 'nosuch' not found; looked in: " --format tap nosuch
: >"$tmp/libfoo.so"
expect 99 'cannot tell the plugin name from the file name' --format tap "$tmp/libfoo.so"

finish
