#!/bin/sh
# Fuzzes the decoder of the udp plugin's registration datagrams (plugins/udp/wire.c).
#
#   tests/fuzz/run.sh [SECONDS] [libFuzzer options...]   build, then fuzz for SECONDS (60)
#   tests/fuzz/run.sh --seeds                             rewrite tests/fuzz/corpus/registration
#
# Builds tests/fuzz/fuzz_registration.c and wire.c straight from the sources with
#   clang -g -O1 -fsanitize=fuzzer,address,undefined
# (no configure needed), starts from the committed seeds (valid datagrams of every type,
# written by the same file built with -DMC_FUZZ_WRITE_SEEDS), and prints the executions,
# the time and the findings. New inputs go to a scratch corpus, never into the source tree.
# Environment: CLANG (default clang), MC_FUZZ_WORK (scratch directory, default a new one
# under /tmp; findings are written there as crash-*, leak-*, timeout-*).
# Exit status: 0 without findings, 1 with findings, 2 when the build failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seeds=$here/corpus/registration
clang=${CLANG:-clang}
work=${MC_FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mc_fuzz.XXXXXX")}
mkdir -p "$work/include/memcast" "$work/corpus" || exit 2

# memcast.h includes the version header that configure generates; the decoder needs none
# of its values, so fill it in from the template.
sed -e 's/@PACKAGE_VERSION@/0.0.0/' -e 's/@MC_PLUGIN_ABI_MAJOR@/1/' -e 's/@MC_[A-Z_]*@/0/' \
    "$top/include/memcast/version.h.in" >"$work/include/memcast/version.h" || exit 2

sources="$here/fuzz_registration.c $top/plugins/udp/wire.c"
includes="-I$work/include -I$top/include -I$top/plugins/udp"
cflags="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"

if [ "${1:-}" = "--seeds" ]; then
    # shellcheck disable=SC2086
    "$clang" $cflags -DMC_FUZZ_WRITE_SEEDS $includes $sources -o "$work/write_seeds" || exit 2
    mkdir -p "$seeds" && rm -f "$seeds"/* && "$work/write_seeds" "$seeds" || exit 2
    echo "seeds written to $seeds:"
    ls -l "$seeds"
    exit 0
fi

seconds=${1:-60}
[ $# -gt 0 ] && shift
echo "building $work/fuzz_registration with $clang"
# shellcheck disable=SC2086
"$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $cflags $includes $sources -o "$work/fuzz_registration" || exit 2

echo "fuzzing for $seconds s; seeds: $(ls "$seeds" | wc -l) files in $seeds; work: $work"
start=$(date +%s)
"$work/fuzz_registration" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/" -max_len=4096 "$@" "$work/corpus" "$seeds" >"$work/log" 2>&1
status=$?
end=$(date +%s)

executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
if [ -z "$executions" ]; then # killed or crashed: take the last progress line instead
    executions=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$work/log" | tail -n 1)
fi
findings=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
corpus=$(ls "$work/corpus" | wc -l)
echo "executions: ${executions:-unknown}"
echo "duration: $((end - start)) s"
echo "corpus: $corpus new inputs (in $work/corpus)"
echo "findings: $findings"
if [ "$findings" -gt 0 ] || [ "$status" -ne 0 ]; then
    echo "libFuzzer exited with $status; log: $work/log; findings:"
    find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) -print
    grep -m 20 -E 'ERROR|SUMMARY|runtime error' "$work/log"
    exit 1
fi
exit 0
