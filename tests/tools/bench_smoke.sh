#!/bin/sh
# memcast bench latency and throughput run end to end between processes (shm data, udp
# registration) and report what they measured. No timing is asserted: the machine may be
# busy. What is asserted: exit 0, every byte intact (corrupt 0), nothing lost in reliable
# mode, as many round trips / messages as asked for, and the JSON fields a reader needs.
# The hidden --test-corrupt flag damages some payloads on purpose: then the checker must
# count them and the command must fail, so a checker that sees nothing fails this test.
set -u
memcast=${MC_BUILDDIR:?run me through make check}/tools/memcast
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mc_bench_smoke.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0

fail() {
    echo "FAIL: $*" >&2
    status=1
}

# has FILE PATTERN...: every grep -E pattern occurs in FILE
has() {
    file=$1
    shift
    for pattern in "$@"; do
        grep -Eq -- "$pattern" "$file" || fail "$file lacks $pattern: $(cat "$file")"
    done
}

timeout 120 "$memcast" bench latency --size 64,4K --count 200 --json --no-floor \
    >"$tmp/lat.json" 2>"$tmp/lat.err" || fail "bench latency exited $?: $(cat "$tmp/lat.err")"
has "$tmp/lat.json" '"bench": "latency"' '"corrupt": 0,' '"size": 64, "count": 200,' \
    '"size": 4096, "count": 200,' '"memcast": \{"n": 200, "p50_us": [0-9.]+, "p90_us"' \
    '"p99_us"' '"p999_us"' '"max_us"'

timeout 120 "$memcast" bench latency --size 64 --count 200 --json --no-floor --zero-copy \
    >"$tmp/latz.json" 2>"$tmp/latz.err" || fail "bench latency --zero-copy exited $?"
has "$tmp/latz.json" '"zero_copy": true' '"corrupt": 0,' '"n": 200,'

timeout 120 "$memcast" bench throughput --size 64,64K --count 2000 --reliable --json \
    --no-floor >"$tmp/tp.json" 2>"$tmp/tp.err" ||
    fail "bench throughput exited $?: $(cat "$tmp/tp.err")"
has "$tmp/tp.json" '"bench": "throughput"' '"reliable": true' \
    '"size": 64, "count": 2000, "received": 2000, "msgs_per_s": [0-9]+, "mb_per_s": [0-9.]+, "lost": 0, "corrupt": 0,' \
    '"size": 65536, "count": 2000, "received": 2000, .*"lost": 0, "corrupt": 0,' \
    '"pub_cpu_ns_per_msg": [0-9.]+'

# With one subscriber the streaming floor is measured before each size; with several it is
# not (it is a two-process figure), and its fields say 0.
timeout 120 "$memcast" bench throughput --size 4K --count 2000 --reliable --json \
    >"$tmp/tpf.json" 2>"$tmp/tpf.err" || fail "bench throughput with floor: $(cat "$tmp/tpf.err")"
has "$tmp/tpf.json" '"received": 2000, .*"lost": 0, "corrupt": 0,' \
    '"floor_msgs_per_s": [1-9][0-9]*, "floor_mb_per_s": [0-9.]+, "floor_ratio": ([1-9]|0\.0*[1-9])'

timeout 120 "$memcast" bench throughput --size 4K --count 500 --reliable --json \
    --subscribers 3 >"$tmp/tp3.json" 2>"$tmp/tp3.err" || fail "bench throughput 3 subscribers"
has "$tmp/tp3.json" '"subscribers": 3' '"received": 500, .*"lost": 0, "corrupt": 0,' \
    '"floor_msgs_per_s": 0, "floor_mb_per_s": 0.0, "floor_ratio": 0.000'

# --rate paces the publisher: 300 messages at 2000/s cannot all arrive in less than the
# 149.5 ms the last one waits for, so the rate measured stays at or below 2007/s.
timeout 120 "$memcast" bench throughput --size 4K --count 300 --rate 2000 --reliable --json \
    --no-floor >"$tmp/tpr.json" 2>"$tmp/tpr.err" || fail "bench throughput --rate: $(cat "$tmp/tpr.err")"
has "$tmp/tpr.json" '"rate": 2000,' '"received": 300, .*"lost": 0, "corrupt": 0,' \
    '"publish_ns_per_msg": [1-9][0-9.]*'
rate=$(sed -n 's/.*"msgs_per_s": \([0-9]*\).*/\1/p' "$tmp/tpr.json")
[ -n "$rate" ] && [ "$rate" -le 2007 ] || fail "--rate 2000 measured $rate messages/s"

# Damaged payloads must be seen: 1 in 10 answers (latency), 1 in 100 messages (throughput).
if timeout 120 "$memcast" bench latency --size 64 --count 200 --warmup 0 --json --no-floor \
    --test-corrupt >"$tmp/bad.json" 2>/dev/null; then
    fail "bench latency --test-corrupt exited 0"
fi
has "$tmp/bad.json" '"corrupt": 20,'
if timeout 120 "$memcast" bench throughput --size 64 --count 1000 --reliable --json --no-floor \
    --test-corrupt >"$tmp/badtp.json" 2>/dev/null; then
    fail "bench throughput --test-corrupt exited 0"
fi
has "$tmp/badtp.json" '"received": 1000, .*"corrupt": 10,'

# --fill-uncached writes loans with non-temporal stores: every byte still arrives, also of
# sizes that end inside a store; without --zero-copy it is a usage error.
timeout 120 "$memcast" bench throughput --size 64,100,100003 --count 500 --reliable --zero-copy \
    --fill-uncached --json --no-floor >"$tmp/tpu.json" 2>"$tmp/tpu.err" ||
    fail "bench throughput --fill-uncached exited $?: $(cat "$tmp/tpu.err")"
for size in 64 100 100003; do
    has "$tmp/tpu.json" '"fill_uncached": true' \
        "\"size\": $size, \"count\": 500, \"received\": 500, [^}]*\"lost\": 0, \"corrupt\": 0,"
done
timeout 120 "$memcast" bench latency --size 1000 --count 200 --json --zero-copy --fill-uncached \
    >"$tmp/latu.json" 2>"$tmp/latu.err" || fail "bench latency --fill-uncached exited $?"
has "$tmp/latu.json" '"fill_uncached": true' '"corrupt": 0,' '"n": 200,'
timeout 10 "$memcast" bench throughput --fill-uncached --size 64 >/dev/null 2>"$tmp/u.err"
[ $? -eq 2 ] && grep -q -- '--fill-uncached needs --zero-copy' "$tmp/u.err" ||
    fail "bench throughput --fill-uncached without --zero-copy should exit 2 saying why"

# A usage error is an error, not a hang.
timeout 10 "$memcast" bench latency --size 3 >/dev/null 2>&1
[ $? -eq 2 ] || fail "bench latency --size 3 should exit 2"
exit $status
