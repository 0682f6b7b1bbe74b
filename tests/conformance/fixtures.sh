#!/bin/sh
# Every deliberately broken plugin of tests/plugins is unusable: memcast-conformance exits
# 99 (automake's hard error), bails out of the TAP stream, and the reason names the defect.
. "${MC_SRCDIR:?run me through make check}/tests/conformance/lib.sh"

fixtures=${MC_FIXTURE_DIR:?}

check() {
    name=$1
    reason=$2
    if expect 99 "^Bail out! plugin .*/mc_$name\.la is unusable: .*$reason" --format tap \
        "$fixtures/mc_$name.la"; then
        expect_not '^(not )?ok '
    fi
}

check bad_magic 'descriptor magic is 0xdeadbeef, expected 0x4c50434d'
check bad_abi 'built for plugin ABI 99\.[0-9]+'
check short_struct 'descriptor struct_size is 8'
check missing_op 'ops->send is NULL'
check undefined_symbol 'undefined symbol: mc_fixture_function_that_exists_nowhere'
check init_fails 'init failed: .*this fixture always fails to initialise'
check name_mismatch "descriptor name is 'someone_else', expected 'name_mismatch'"
check no_entry "no entry symbol 'memcast_plugin_entry'"
check bad_schema "default of key 'retry_count': 'lots' is not a valid INT"
check entry_null 'memcast_plugin_entry\(1, [0-9]+\) returned NULL'

# Text output says the same.
expect 99 '^UNUSABLE  .*/mc_bad_magic\.la$' --format text "$fixtures/mc_bad_magic.la"
expect 99 'magic' --format text "$fixtures/mc_bad_magic.la"

finish
