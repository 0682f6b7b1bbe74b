#!/bin/bash
# memcast bench latency and throughput with --transport udp --netns across two hosts made
# of network namespaces (root only; exit 77, SKIP, otherwise). The network is lib.sh's: a
# switch namespace with a bridge, hosts a and b on veth pairs, 10.233.0.0/24; everything
# removed on exit, failure or signal. No timing is asserted (the machine is shared).
#
# Checked:
#   1. latency, pinger in a and ponger in b, 64 B, 64 KiB and 1 MiB: exit 0, the namespaces
#      named in the JSON, nothing corrupt, and per size the round trips asked for with
#      percentiles, beside the copy floor of the run;
#   2. throughput, publisher in a and subscriber in b, the same sizes (udp is best effort,
#      paced by send_rate as in udp_data.sh): exit 0, nothing corrupt, and per size the
#      count asked for, what was received and lost adding up to it, something received,
#      and a rate;
#   3. the bench really left this namespace: interface veth0, which the contexts bind
#      to, exists only in the hosts (checked absent here), so a context opened here fails;
#   4. clear errors: a namespace that does not exist is named (exit 1), an unprivileged
#      user is told that entering needs root (exit 1, when setpriv is there), and --netns
#      without --transport udp is a usage error (exit 2).
set -u

name=udp_bench
# shellcheck source=tests/net/require.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/require.sh"
memcast=$MC_BUILDDIR/tools/memcast
[ -x "$memcast" ] || die "build tools/memcast first"

# The configuration file below says every udp setting: MEMCAST_<SECTION>_<KEY> overrides in
# the caller's environment would win over it.
for var in $(compgen -e | grep '^MEMCAST_'); do
	unset "$var"
done

run=mcbb-$$
ns_sw=$run-sw ns_a=$run-a ns_b=$run-b
ip_a=10.233.0.1 ip_b=10.233.0.2
sizes="64 65536 1048576"
work_name=mc-udpbench
# shellcheck source=tests/net/lib.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/lib.sh"

cat_config() {
	cat <<CONF
[udp]
path = $MC_BUILDDIR/plugins/udp
group = 239.255.233.1
port = 14233
interface = veth0
heartbeat = 200ms
expiry = 2s
send_rate = 200M
CONF
}

has() { # FILE PATTERN...: every grep -E pattern occurs in FILE
	local file=$1 pattern
	shift
	for pattern in "$@"; do
		grep -Eq -- "$pattern" "$file" || fail "${file##*/} lacks /$pattern/: $(cat "$file")"
	done
}

bench() { # NAME ARGS...: memcast bench, output in $work/NAME.json and NAME.err
	local file=$1
	shift
	timeout 300 "$memcast" -c "$work/host.ini" bench "$@" >"$work/$file.json" 2>"$work/$file.err"
}

build_network
cat_config >"$work/host.ini"
size_list=${sizes// /,}
netns_json="\"netns\": \\[\"$ns_a\", \"$ns_b\"\\]"

# 1. latency
bench latency latency -t udp --netns "$ns_a,$ns_b" --size "$size_list" --count 30 \
	--warmup 5 --json || fail "bench latency exited $?"
has "$work/latency.json" '"bench": "latency", "transport": "udp"' "$netns_json" '"corrupt": 0,'
for size in $sizes; do
	has "$work/latency.json" "\"size\": $size, \"count\": 30, \"memcast\": \\{\"n\": 30, \"p50_us\": [0-9.]+, \"p90_us\": [0-9.]+, \"p99_us\": [0-9.]+, \"p999_us\": [0-9.]+, \"max_us\": [0-9.]+\\}, \"floor\": \\{\"n\": 30, \"p50_us\": [0-9.]+"
done
ok "latency a -> b over udp: 30 round trips of 64 B, 64 KiB and 1 MiB, none corrupt"

# 2. throughput
counts=(400 100 20)
i=0
for size in $sizes; do
	count=${counts[i]}
	i=$((i + 1))
	bench "tp$size" throughput -t udp --netns "$ns_a,$ns_b" --size "$size" --count "$count" \
		--json --no-floor || fail "bench throughput $size B exited $?"
	has "$work/tp$size.json" '"bench": "throughput", "transport": "udp"' "$netns_json" \
		"\"size\": $size, \"count\": $count, \"received\": [0-9]+, \"msgs_per_s\": [0-9]+, \"mb_per_s\": [0-9.]+, \"lost\": [0-9]+, \"corrupt\": 0,"
	line=$(grep -Eo '"received": [0-9]+, "msgs_per_s": [0-9]+, "mb_per_s": [0-9.]+, "lost": [0-9]+' "$work/tp$size.json")
	read -r received rate lost <<<"$(echo "$line" | awk -F'[:,] *' '{ print $2, $4, $8 }')"
	[ $((received + lost)) = "$count" ] ||
		fail "throughput $size B: received $received + lost $lost is not the $count sent"
	[ "$received" -gt 0 ] && [ "$rate" -gt 0 ] || # fail exits
		fail "throughput $size B: nothing arrived (received $received, $rate msg/s)"
	ok "throughput a -> b over udp, $size B: $received of $count received, $lost lost, $rate msg/s"
done

# 3. the contexts were not in this namespace
if ip link show veth0 >/dev/null 2>&1; then
	echo "# this namespace has a veth0 of its own: check 3 proves nothing here, skipped"
else
	MEMCAST_FRAMEWORK_PLUGINS=udp MEMCAST_UDP_MODE=network timeout 30 "$memcast" \
		-c "$work/host.ini" ls --wait 0 >"$work/here.out" 2>"$work/here.err" &&
		fail "a context in this namespace opened with interface veth0: the check means nothing"
	has "$work/here.err" "interface 'veth0': neither an IPv4 address nor the name of an interface"
	ok "interface veth0 exists only in the hosts, so the bench's contexts ran there"
fi

# 4. errors
bench missing latency -t udp --netns "$ns_a,$run-nowhere" --size 64 --count 5 --no-floor
rc=$?
[ $rc = 1 ] || fail "a missing namespace: exit $rc, want 1"
has "$work/missing.err" "network namespace '$run-nowhere': cannot open /var/run/netns/$run-nowhere: No such file or directory"
bench notudp throughput --netns "$ns_a,$ns_b" --size 64 --count 5
rc=$?
[ $rc = 2 ] || fail "--netns with shm: exit $rc, want 2"
has "$work/notudp.err" "--netns needs --transport udp"
# as nobody, when nobody may run the build tree's memcast
unprivileged=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
if command -v setpriv >/dev/null 2>&1 && "${unprivileged[@]}" "$memcast" --help >/dev/null 2>&1; then
	"${unprivileged[@]}" "$memcast" bench latency -t udp --netns "$ns_a,$ns_b" --size 64 --count 5 \
		--no-floor >"$work/user.out" 2>"$work/user.err"
	rc=$?
	[ $rc = 1 ] || fail "an unprivileged user: exit $rc, want 1"
	has "$work/user.err" "cannot enter network namespace '$ns_a': Operation not permitted \\(needs root"
fi
ok "errors name the namespace: missing, not permitted; --netns without udp is a usage error"
echo "PASS: $name: $passed checks"
exit 0
