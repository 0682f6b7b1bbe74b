#!/bin/sh
# Fuzzes the parsers that read what other processes wrote:
#   registration  the udp plugin's registration datagrams (plugins/udp/wire.c)
#   config        the configuration reader (framework/config.c over inih)
#   shm_header    a shm segment's header check and the ring reader (plugins/shm/ring.c)
#   udp_data      the udp plugin's data datagrams and their reassembly (plugins/udp/data_wire.c,
#                 plugins/udp/reassembly.c)
#
#   tests/fuzz/run.sh [TARGET] [SECONDS] [libFuzzer options...]
#                     build, then fuzz TARGET (default registration) for SECONDS (60)
#   tests/fuzz/run.sh [TARGET] --seeds      rewrite tests/fuzz/corpus/TARGET
#
# Builds tests/fuzz/fuzz_TARGET.c and the code it tests straight from the sources with
#   clang -g -O1 -fsanitize=fuzzer,address,undefined
# (no configure needed), starts from the committed seeds (written by the same file built
# with -DMC_FUZZ_WRITE_SEEDS), and prints the executions, the time and the findings. New
# inputs go to a scratch corpus, never into the source tree.
# Environment: CLANG (default clang), MC_FUZZ_WORK (scratch directory, default a new one
# under /tmp; findings are written there as crash-*, leak-*, timeout-*).
# Exit status: 0 without findings, 1 with findings, 2 when the build failed or TARGET is
# unknown.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
target=registration
case "${1:-}" in
[a-z]*) target=$1 && shift ;;
esac
seeds=$here/corpus/$target
clang=${CLANG:-clang}
work=${MC_FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mc_fuzz.XXXXXX")}
mkdir -p "$work/include/memcast" "$work/corpus" || exit 2

# memcast.h includes the version header that configure generates; the decoder needs none
# of its values, so fill it in from the template.
sed -e 's/@PACKAGE_VERSION@/0.0.0/' -e 's/@MC_PLUGIN_ABI_MAJOR@/1/' -e 's/@MC_[A-Z_]*@/0/' \
    "$top/include/memcast/version.h.in" >"$work/include/memcast/version.h" || exit 2

libs=
max_len=4096
case "$target" in
registration)
    sources="$top/plugins/udp/wire.c"
    includes="-I$top/plugins/udp"
    ;;
config)
    sources="$top/framework/config.c $top/framework/error.c"
    includes="-I$top/framework"
    libs=-linih
    ;;
shm_header)
    sources="$top/plugins/shm/ring.c $top/plugins/shm/doorbell.c $top/plugins/shm/segment.c"
    includes="-I$top/plugins/shm"
    max_len=16384 # slots start on a page boundary: a segment is a few KiB at least
    ;;
udp_data)
    sources="$top/plugins/udp/data_wire.c $top/plugins/udp/reassembly.c"
    includes="-I$top/plugins/udp"
    max_len=16384 # several datagrams of a few fragments each
    ;;
*)
    echo "unknown target '$target' (registration, config, shm_header, udp_data)" >&2
    exit 2
    ;;
esac
sources="$here/fuzz_$target.c $sources"
includes="-I$work/include -I$top/include $includes"
cflags="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"

if [ "${1:-}" = "--seeds" ]; then
    # shellcheck disable=SC2086
    "$clang" $cflags -DMC_FUZZ_WRITE_SEEDS $includes $sources $libs -o "$work/write_seeds" || exit 2
    mkdir -p "$seeds" && rm -f "$seeds"/* && "$work/write_seeds" "$seeds" || exit 2
    echo "seeds written to $seeds:"
    ls -l "$seeds"
    exit 0
fi

seconds=${1:-60}
[ $# -gt 0 ] && shift
echo "building $work/fuzz_$target with $clang"
# shellcheck disable=SC2086
"$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $cflags $includes $sources $libs -o "$work/fuzz_$target" || exit 2

echo "fuzzing for $seconds s; seeds: $(ls "$seeds" | wc -l) files in $seeds; work: $work"
start=$(date +%s)
"$work/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/" -max_len="$max_len" "$@" "$work/corpus" "$seeds" >"$work/log" 2>&1
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
