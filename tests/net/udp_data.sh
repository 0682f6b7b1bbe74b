#!/bin/bash
# The udp data path across hosts made of network namespaces (root only; exit 77, SKIP,
# otherwise). The namespaces, veth pairs, bridge and teardown are tests/net/lib.sh's: a
# switch holding a bridge and hosts a, b, c on 10.232.0.0/24, nothing added to the
# machine's own namespace, everything removed on exit, failure or signal.
#
# For each size, 1 B, 64 KiB and 8 MiB: a publisher in b sends $count messages to two
# subscribers on other hosts (a and c: udp, 1472-byte datagrams, paced by send_rate since
# veth pairs and the bridge queue only netdev_max_backlog packets) and one on its own host
# (b: shm, which the framework picks first for host scope). Every subscriber must get
# every message intact (mc_node checks the pattern of every byte) over the transport
# expected, and the udp ones must count nothing lost.
#
# Topics go to multicast groups (data_groups). Here every topic shares one group (a /32),
# so each subscriber's socket also gets what it must not deliver: the same topic of
# another domain (a subscriber in a), the same topic with another data type (a subscriber
# in c, not matched), and for b's own subscriber, which shm serves, the looped-back copy.
# Each of those must end with nothing received. The publisher's interface must send each
# datagram once for both remote subscribers; with data_groups = none (unicast, the last
# run) once per subscriber.
set -u

name=udp_data
# shellcheck source=tests/net/require.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/require.sh"
node_bin=$MC_BUILDDIR/tests/helpers/mc_node
if [ ! -x "$node_bin" ]; then
	die "build tests/helpers/mc_node first"
fi

# The configuration files below say everything: MEMCAST_<SECTION>_<KEY> overrides in the
# caller's environment would win over them.
for var in $(compgen -e | grep '^MEMCAST_'); do
	unset "$var"
done

run=mcd-$$
ns_sw=$run-sw ns_a=$run-a ns_b=$run-b ns_c=$run-c
ip_a=10.232.0.1 ip_b=10.232.0.2 ip_c=10.232.0.3
port=14232
group=239.255.232.1
domain=ud-$$-$RANDOM
count=5

work_name=mc-udpdata
# shellcheck source=tests/net/lib.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/lib.sh"

# ---- configuration -----------------------------------------------------------------------

write_config() { # FILE DOMAIN DATA_GROUPS [UDP_LINE]
	cat >"$1" <<CONF
[framework]
plugins = shm, udp
domain = $2
log_level = info
[shm]
path = $MC_BUILDDIR/plugins/shm
[udp]
path = $MC_BUILDDIR/plugins/udp
mode = network
group = $group
port = $port
interface = veth0
heartbeat = 200ms
expiry = 2s
send_rate = 200M
data_groups = $3
${4:-}
CONF
}

# ---- processes (start_node, close_node, wait_line: lib.sh) --------------------------------

# Packets veth0 of namespace NS has sent (/proc/net/dev is the reader's namespace's).
tx_packets() {
	in_ns "$1" cat /proc/net/dev | sed -n 's/^ *veth0://p' | awk '{print $10}'
}

# ---- the checks ----------------------------------------------------------------------------

build_network
write_config "$work/host.ini" "$domain" 239.255.233.7/32
write_config "$work/other.ini" "$domain-other" 239.255.233.7/32
write_config "$work/unicast.ini" "$domain" none
write_config "$work/lossy.ini" "$domain" 239.255.233.7/32 "test_drop_every = 97"

# SIZE CONFIG COPIES: one run; the publisher's interface must send COPIES of each datagram
# (1 with a group, 2 with unicast to a and c).
run_size() {
	local size=$1 config=$2 copies=$3 topic=net/data/$size-$2 n tx_before
	local tag=$size-$config
	start_node "a$tag" "$ns_a" "$work/$config.ini" sub "$topic" --count "$count" --exit --type pose
	start_node "c$tag" "$ns_c" "$work/$config.ini" sub "$topic" --count "$count" --exit --type pose
	start_node "b$tag" "$ns_b" "$work/$config.ini" sub "$topic" --count "$count" --exit --type pose
	start_node "x$tag" "$ns_a" "$work/other.ini" sub "$topic" --type pose
	start_node "t$tag" "$ns_c" "$work/$config.ini" sub "$topic" --type other
	for n in a c b x t; do
		wait_line "$work/$n$tag.out" '^[0-9]+ open ' "$(deadline_in 10000)" ||
			fail "the subscriber in $n ($tag) did not open"
	done
	tx_before=$(tx_packets "$ns_b")
	# no --exit: a publisher that left at once could be gone before the subscriber of its
	# own host opened its segment; it stays until every subscriber is done
	start_node "p$tag" "$ns_b" "$work/$config.ini" pub "$topic" --count "$count" --size "$size" \
		--wait-matched 3 --type pose
	for n in a c b; do
		transport=udp
		[ "$n" = b ] && transport=shm
		wait_line "$work/$n$tag.out" "^[0-9]+ matched [0-9]+ $transport 1\$" "$(deadline_in 10000)" ||
			fail "the subscriber in $n did not match the publisher in b over $transport ($tag)"
		wait_line "$work/$n$tag.out" "^[0-9]+ done $count 0 0\$" "$(deadline_in 30000)" ||
			fail "the subscriber in $n did not get $count intact messages of $size B (want 'done $count 0 0', $tag)"
		wait "${node_pid[$n$tag]}" || fail "the subscriber in $n exited with $? ($tag)"
	done
	check_copies "$size" "$(($(tx_packets "$ns_b") - tx_before))" "$copies"
	for n in x t; do
		close_node "$n$tag"
		wait_line "$work/$n$tag.out" "^[0-9]+ done 0 0 0\$" "$(deadline_in 10000)" ||
			fail "the subscriber in $n ($tag: other domain or other type) got messages it must not"
		wait "${node_pid[$n$tag]}" || fail "the subscriber $n exited with $? ($tag)"
	done
	close_node "p$tag"
	wait "${node_pid[p$tag]}" || fail "the publisher ($tag) exited with $?"
	# the other type's subscriber and the publisher say once that they do not match
	if grep -E 'memcast (warn|error) ' "$work"/*"$tag".err | grep -v "not matching type"; then
		fail "a process logged a warning or an error ($tag)"
	fi
	ok "$count messages of $size B ($config) from b reached a and c over udp and b over shm, intact, none lost; other domain and type got none"
}

# SIZE SENT COPIES: datagrams of the run (registration adds a few dozen packets).
check_copies() {
	local datagrams=$((($1 + 1391) / 1392 * count))
	[ "$datagrams" -ge 1000 ] || return 0 # too few to tell copies from registration traffic
	[ "$2" -ge $((datagrams * $3)) ] && [ "$2" -lt $((datagrams * $3 + datagrams / 2)) ] ||
		fail "b's veth0 sent $2 packets for $datagrams datagrams of $1 B: want $3 copies of each"
	ok "b's veth0 sent $2 packets for $datagrams datagrams of $1 B ($3 copies of each)"
}

for size in 1 65536 8388608; do
	run_size "$size" host 1
done
run_size 8388608 unicast 2

# Loss: the publisher skips every 97th data datagram it sends (test_drop_every; netem is
# not in every kernel). Of 20 messages of 64 KiB, 48 datagrams each, those holding a
# skipped datagram are lost, the last one is not; a and c must get the others intact and
# in order and count exactly those lost, b (shm) gets all 20.
run_loss() {
	local topic=net/data/loss tag=loss n d m=0 last=0 lost=0 count_loss=20
	for ((d = 97; d <= count_loss * 48; d += 97)); do
		m=$(((d + 47) / 48))
		[ "$m" = "$last" ] || lost=$((lost + 1))
		last=$m
	done
	[ "$m" -lt "$count_loss" ] || die "the last message must not lose a datagram"
	local got=$((count_loss - lost))
	start_node "a$tag" "$ns_a" "$work/host.ini" sub "$topic" --count "$got" --exit --type pose
	start_node "c$tag" "$ns_c" "$work/host.ini" sub "$topic" --count "$got" --exit --type pose
	start_node "b$tag" "$ns_b" "$work/host.ini" sub "$topic" --type pose
	start_node "t$tag" "$ns_c" "$work/host.ini" sub "$topic" --type other
	for n in a c b t; do
		wait_line "$work/$n$tag.out" '^[0-9]+ open ' "$(deadline_in 10000)" ||
			fail "the subscriber in $n ($tag) did not open"
	done
	start_node "p$tag" "$ns_b" "$work/lossy.ini" pub "$topic" --count "$count_loss" --size 65536 \
		--wait-matched 3 --type pose
	for n in a c; do
		wait_line "$work/$n$tag.out" "^[0-9]+ done $got $lost 0\$" "$(deadline_in 30000)" ||
			fail "the subscriber in $n did not get $got of $count_loss messages intact with $lost missing"
		wait_line "$work/$n$tag.out" "^[0-9]+ counted [0-9]+ $lost\$" "$(deadline_in 1000)" ||
			fail "the subscriber in $n did not count exactly $lost lost"
		wait "${node_pid[$n$tag]}" || fail "the subscriber in $n exited with $? ($tag)"
	done
	close_node "p$tag"
	wait "${node_pid[p$tag]}" || fail "the publisher ($tag) exited with $?"
	# b's udp socket hears the looped copies, t (another type) the group: neither may count
	# the publisher's udp losses as its own. b gets shm (best effort: a slow b, as under
	# ThreadSanitizer, may overrun and count that, never more than it missed)
	close_node "b$tag"
	wait_line "$work/b$tag.out" "^[0-9]+ done [0-9]+ [0-9]+ 0\$" "$(deadline_in 10000)" ||
		fail "the subscriber in b did not end cleanly or got corrupt messages"
	local b_done b_counted
	b_done=$(grep -E '^[0-9]+ done ' "$work/b$tag.out")
	b_counted=$(grep -E '^[0-9]+ counted ' "$work/b$tag.out" | awk '{print $4}')
	read -r _ _ b_got b_lost _ <<<"$b_done"
	[ "$b_got" -ge 1 ] && [ "$((b_got + b_lost))" -le "$count_loss" ] &&
		[ "$b_counted" -le "$((count_loss - b_got))" ] ||
		fail "the subscriber in b got $b_got, missed $b_lost and counted $b_counted lost of $count_loss sent over shm"
	close_node "t$tag"
	wait_line "$work/t$tag.out" "^[0-9]+ counted [0-9]+ 0\$" "$(deadline_in 10000)" ||
		fail "the subscriber of another type in c counted losses of a publisher it is not matched with"
	wait_line "$work/t$tag.out" "^[0-9]+ done 0 0 0\$" "$(deadline_in 10000)" ||
		fail "the subscriber of another type in c got messages"
	ok "every 97th datagram skipped: a and c got $got of $count_loss messages intact and counted $lost lost; b got $b_got over shm and counted only what it missed ($b_counted); a subscriber of another type counted none"
}
run_loss
echo "PASS: $name: $passed checks"
exit 0
