#!/bin/bash
# Runs the shm benchmark campaign of doc/performance.md: every command 3 times, each run
# under the build lock (no build or test of this project at the same time), the JSON of
# each run kept in OUT. Summarise with scripts/bench-shm-summary.py OUT.
#
#   scripts/bench-shm-campaign.sh [BUILD_DIR] [OUT_DIR]    (defaults: build, bench-out)
#
# Fan-out runs take 1 and 8 subscribers back to back, so that their ratio is taken within
# a minute (this VM's speed changes from one minute to the next).
set -u
build=$(cd "${1:-build}" && pwd) || exit 2
out=${2:-bench-out}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
export MEMCAST_PLUGIN_PATH=$build/plugins/shm/.libs:$build/plugins/udp/.libs
memcast=$build/tools/memcast
lock=${MC_BENCH_LOCK:-/tmp/mc-build.lock}
printf '[shm]\nlook_us = 0\n' >"$out/look0.ini"

once() { # NAME ARGS...: one run, NAME.json and NAME.err in OUT
    local name=$1
    shift
    flock "$lock" "$memcast" "$@" >"$out/$name.json" 2>"$out/$name.err"
    echo "$(date +%T) $name: exit $?" | tee -a "$out/progress"
}
thrice() {
    local name=$1
    shift
    for r in 1 2 3; do once "$name.$r" "$@"; done
}

thrice lat_copy bench latency --json
thrice lat_zc bench latency --json --zero-copy
thrice lat_spin bench latency --json --wait spin --size 64,4K
thrice lat_look0 -c "$out/look0.ini" bench latency --json --size 64,4K
thrice lat_look0_zc -c "$out/look0.ini" bench latency --json --zero-copy --size 64,4K
thrice tp_rel bench throughput --json --reliable --size 64,4K,1M
thrice tp_rel_zc bench throughput --json --reliable --zero-copy --size 64,1M
thrice tp_rel_zcu bench throughput --json --reliable --zero-copy --fill-uncached --size 1M,8M
thrice lat_zcu bench latency --json --zero-copy --fill-uncached --size 1M,8M
for r in 1 2 3; do
    for s in 1 8; do
        once fan_be_$s.$r bench throughput --json --size 4K --count 200000 --subscribers $s --no-floor
    done
    for s in 1 8; do
        once fan_rel_$s.$r bench throughput --json --reliable --size 4K --count 200000 \
            --subscribers $s --no-floor
    done
    for s in 1 8; do
        once pace_be_$s.$r bench throughput --json --size 4K --count 20000 --rate 10000 \
            --subscribers $s --no-floor
    done
    for s in 1 8; do
        once pace_rel_$s.$r bench throughput --json --reliable --size 4K --count 20000 \
            --rate 10000 --subscribers $s --no-floor
    done
done
