#!/bin/sh
# Separate processes over the default transports (shm for data, udp for registration): the
# memcast command publishes generated payloads and subscribers check every byte and every
# sequence number. Reliable mode, so nothing may be lost: each subscriber must get exactly
# --count messages, intact, with no gap and no overrun.
#   1 subscriber: 0 B, 1 B, 4 KiB, 1 MiB and 64 MiB messages
#   8 subscribers: 4 KiB and 1 MiB messages
# Every process runs under a time limit, so a hang fails the test instead of stalling it.
set -u
memcast=${MC_BUILDDIR:?run me through make check}/tools/memcast
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mc_shm_processes.XXXXXX") || exit 99
status=0
cleanup() {
    # shellcheck disable=SC2046
    kill -9 $(jobs -p) 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/memcast.ini" <<EOF
[framework]
plugins = shm, udp
domain = shmproc-$$

[shm]
slots = 2
reserve_percent = 0
ack_timeout = 30s
EOF

# run SUBSCRIBERS SIZE COUNT: one publisher, SUBSCRIBERS subscriber processes.
run() {
    subs=$1 size=$2 count=$3 topic=procs/$1x$2
    i=0
    while [ "$i" -lt "$subs" ]; do
        timeout 120 "$memcast" -c "$tmp/memcast.ini" sub "$topic" --count "$count" --verify \
            --quiet 2>"$tmp/sub$i.err" &
        eval "pid$i=\$!"
        i=$((i + 1))
    done
    if ! timeout 120 "$memcast" -c "$tmp/memcast.ini" pub "$topic" --size "$size" \
        --count "$count" --wait "$subs" 2>"$tmp/pub.err"; then
        echo "FAIL: $subs x $size B: the publisher failed: $(cat "$tmp/pub.err")"
        status=1
    fi
    i=0
    while [ "$i" -lt "$subs" ]; do
        eval "pid=\$pid$i"
        wait "$pid"
        code=$?
        want="memcast sub: $count received, 0 lost (sequence gaps), 0 overrun, 0 corrupt"
        if [ "$code" -ne 0 ] || ! grep -qxF "$want" "$tmp/sub$i.err"; then
            echo "FAIL: $subs x $size B: subscriber $i exited $code: $(cat "$tmp/sub$i.err")"
            status=1
        fi
        i=$((i + 1))
    done
    [ "$status" -eq 0 ] && echo "ok: $subs subscriber(s) x $count messages of $size B, intact"
}

for size in 0 1 4096 1048576; do
    run 1 "$size" 200
done
run 1 67108864 3
run 8 4096 500
run 8 1048576 50
exit $status
