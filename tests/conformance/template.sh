#!/bin/sh
# The transport template of examples/transport-template, built in the tree, passes the suite.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

template=$MC_BUILDDIR/examples/transport-template/mc_template.la
if expect 0 '^# [0-9]+ cases: [0-9]+ passed, 0 failed' --format tap "$template"; then
    expect_not '^not ok'
    [ "$(count_lines '^ok [0-9]+ - zerocopy/[a-z_]+ # SKIP needs capability zero-copy')" -eq 3 ] ||
        { echo "FAIL: zerocopy is not skipped"; status=1; }
fi
finish
