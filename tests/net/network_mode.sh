#!/bin/bash
# udp registration, mode = network, across hosts simulated with network namespaces
# (issue #3). Run by make check with MC_BUILDDIR set; by hand: MC_BUILDDIR=build
# tests/net/network_mode.sh (as root). Exit codes: 0 pass, 1 fail, 77 skip, 99 setup error.
#
# Four namespaces, named after this shell's pid so that parallel runs never meet: a switch
# (a bridge, multicast snooping off so that it floods the group) and three hosts a, b, c,
# each joined to the switch by a veth pair created inside the namespaces (nothing is added
# to the host's own network namespace), each with 10.231.0.N/24, lo up and a route for
# 224.0.0.0/4 on its veth. Processes in different network namespaces get different host
# tokens (framework/registry.c), so the framework treats them as different hosts: shm has
# host scope, so a topic meeting across them is carried by udp's data role (network
# scope); what a context knows of another host shows as (1) mc_node's "matched ... udp"
# line when a topic meets across hosts, (2) the udp plugin's debug lines "context X (pid N) appeared / said goodbye /
# expired", and (3) `memcast ls --json`, which lists the other host's endpoints with their
# pid and "this_host":false.
#
# Checks (every wait is bounded; the only negative checks are synchronised on a process
# in the same namespace having received the datagrams in question):
#   1. a subscriber in a, started first, sees a publisher in b appear (the time is printed)
#      and the framework decides network scope; b sees a's subscriber the same way; c too;
#   2. `memcast ls --json` in a lists b's publisher with its pid and this_host false (and
#      a's own subscriber with this_host true); in c it lists both;
#   3. a context in a with another domain receives b's datagrams, rejects them ("another
#      domain"), and never learns of b; `memcast ls` in that domain does not list b;
#   4. a context in a on another group (same port and domain) never receives b's datagrams,
#      though the namespace is a member of b's group through the other contexts in a;
#   5. a context with ttl = 0 in b is heard by b's other contexts, never in a;
#   6. a clean exit in b: a and c see "said goodbye" well before the expiry time;
#   7. kill -9 of a second publisher in b: a sees it "expired", not much before expiry
#      (four heartbeats of slack) and within expiry plus 3 s.
set -u

name=network_mode
# shellcheck source=tests/net/require.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/require.sh"
node_bin=$MC_BUILDDIR/tests/helpers/mc_node
memcast_bin=$MC_BUILDDIR/tools/memcast
if [ ! -x "$node_bin" ] || [ ! -x "$memcast_bin" ]; then
	die "build tests/helpers/mc_node and tools/memcast first"
fi

# The configuration files below say everything: MEMCAST_<SECTION>_<KEY> overrides in the
# caller's environment would win over them.
for var in $(compgen -e | grep '^MEMCAST_'); do
	unset "$var"
done

run=mc-$$
ns_sw=$run-sw ns_a=$run-a ns_b=$run-b ns_c=$run-c
ip_a=10.231.0.1 ip_b=10.231.0.2 ip_c=10.231.0.3
port=14231
group=239.255.231.1
other_group=239.255.231.2
domain=nm-$$-$RANDOM
heartbeat_ms=200
expiry_ms=2000

work_name=mc-netmode
# shellcheck source=tests/net/lib.sh
. "${MC_SRCDIR:?run me through make check}/tests/net/lib.sh"

# ---- configuration -----------------------------------------------------------------------

write_config() { # FILE DOMAIN GROUP INTERFACE
	cat >"$1" <<EOF
[framework]
plugins = shm, udp
domain = $2
log_level = debug
[shm]
path = $MC_BUILDDIR/plugins/shm
[udp]
path = $MC_BUILDDIR/plugins/udp
mode = network
group = $3
port = $port
interface = $4
ttl = 1
heartbeat = ${heartbeat_ms}ms
expiry = ${expiry_ms}ms
EOF
}

# ---- processes (start_node, close_node, wait_line: lib.sh) --------------------------------

# True while PID runs: not gone, not a zombie. One read of /proc/PID/stat: bash reaps its
# children on its own, so the file can vanish between two looks, and a second look (an
# earlier version grepped /proc/PID/status after testing that /proc/PID existed) then took
# a process that had exited cleanly for one still running.
still_running() { # PID
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

# Waits for NAME to exit, DEADLINE_MS at most; returns its exit status (124: still running).
wait_exit() { # NAME DEADLINE_MS
	local pid=${node_pid[$1]} end=$(($(now_us) + $2 * 1000))
	while still_running "$pid" && [ "$(now_us)" -lt "$end" ]; do
		sleep 0.01
	done
	still_running "$pid" && return 124
	wait "$pid"
}


# `memcast ls --json` in NS with CONFIG, into FILE.
memcast_ls() { # NS CONFIG FILE
	(
		close_inputs
		exec nsenter --net="$netns_dir/$1" "$memcast_bin" -c "$2" ls --json --wait 300 --interval 1 \
			>"$3" 2>"$3.err" </dev/null
	)
}

# The endpoint object of pid PID (kind KIND) in the JSON of FILE, or nothing.
endpoint_of() { # FILE KIND PID
	grep -o '{"kind":"'"$2"'"[^{}]*}' "$1" | grep -F "\"pid\":$3,"
}

# Runs memcast ls in NS until it lists the KIND of PID, DEADLINE_US at most; sets `line`.
ls_until_listed() { # NS CONFIG FILE KIND PID DEADLINE_US
	while :; do
		memcast_ls "$1" "$2" "$3" || return 1
		line=$(endpoint_of "$3" "$4" "$5")
		[ -n "$line" ] && return 0
		[ "$(now_us)" -lt "$6" ] || return 1
	done
}

# ---- the test ------------------------------------------------------------------------------

build_network
write_config "$work/a.ini" "$domain" "$group" veth0
write_config "$work/b.ini" "$domain" "$group" veth0
write_config "$work/c.ini" "$domain" "$group" "$ip_c" # interface given by address
write_config "$work/a-other-domain.ini" "$domain-x" "$group" veth0
write_config "$work/a-other-group.ini" "$domain" "$other_group" veth0
write_config "$work/b-ttl0.ini" "$domain-x" "$group" veth0
sed -i 's/^ttl = 1$/ttl = 0/' "$work/b-ttl0.ini"
topic=net/mode

start_node a_sub "$ns_a" "$work/a.ini" sub "$topic"
start_node a_xdomain "$ns_a" "$work/a-other-domain.ini" sub "$topic"
start_node a_xgroup "$ns_a" "$work/a-other-group.ini" sub "$topic"
start_node c_sub "$ns_c" "$work/c.ini" sub "$topic"
for n in a_sub a_xdomain a_xgroup c_sub; do
	wait_line "$work/$n.out" '^[0-9]+ open ' "$(deadline_in 10000)" || fail "$n did not open its context"
done
ok "network mode contexts open in namespaces a and c (group $group, port $port, domain $domain)"

# 1. discovery across hosts
start_node b_pub "$ns_b" "$work/b.ini" pub "$topic"
pid_b=${node_pid[b_pub]}
pid_a=${node_pid[a_sub]}
pid_c=${node_pid[c_sub]}
wait_line "$work/a_sub.err" "context [0-9a-f]+ \\(pid $pid_b\\) appeared" "$(deadline_in 5000)" ||
	fail "a never heard of b's context (pid $pid_b) within 5 s"
appeared_us=$line_us
wait_line "$work/b_pub.out" '^[0-9]+ start ' "$(deadline_in 5000)" || fail "b printed no start line"
b_started=$line_us # mc_node's start, before mc_context_open: process start-up is not counted
appeared_ms=$(ms_since "$b_started" "$appeared_us")
# udp carries data across hosts (network scope): the topic meeting shows as mc_node's
# "matched" line naming udp (shm, host scope, cannot bridge namespaces)
wait_line "$work/a_sub.out" '^[0-9]+ matched [0-9]+ udp 1$' \
	"$(deadline_in 5000)" || fail "a's subscriber never met b's publisher (pid $pid_b) over udp"
met_ms=$(ms_since "$b_started" "$line_us")
ok "a sees b's publisher: context known ${appeared_ms} ms, topic met in network scope ${met_ms} ms after b began to open its context"
wait_line "$work/b_pub.out" '^[0-9]+ matched [0-9]+ udp 2$' \
	"$(deadline_in 5000)" || fail "b's publisher never met both a (pid $pid_a) and c (pid $pid_c) over udp"
wait_line "$work/c_sub.out" '^[0-9]+ matched [0-9]+ udp 1$' \
	"$(deadline_in 5000)" || fail "c's subscriber never met b's publisher (pid $pid_b)"
ok "b sees the subscribers of a and c; c sees b's publisher (interface given by address in c)"
if grep -qE '^[0-9]+ matched [0-9]+ shm ' "$work/a_sub.out" "$work/b_pub.out" "$work/c_sub.out"; then
	fail "shm (host scope) matched across hosts"
fi
# for check 5: ttl = 0 keeps a context's datagrams on its host
start_node b_ttl0 "$ns_b" "$work/b-ttl0.ini" pub "$topic"

# 2. memcast ls --json in a and c
ls_until_listed "$ns_a" "$work/a.ini" "$work/ls-a.json" publisher "$pid_b" "$(deadline_in 10000)" ||
	fail "memcast ls in a does not list b's publisher (pid $pid_b)"
grep -qF '"this_host":false' <<<"$line" || fail "memcast ls in a counts b's publisher as this host: $line"
host_b=$(grep -o '"host":"[0-9a-f]*"' <<<"$line")
line=$(endpoint_of "$work/ls-a.json" subscriber "$pid_a")
grep -qF '"this_host":true' <<<"$line" || fail "memcast ls in a does not list a's own subscriber as this host: $line"
[ "$host_b" != "$(grep -o '"host":"[0-9a-f]*"' <<<"$line")" ] || fail "a and b show the same host token"
ok "memcast ls --json in a lists b's publisher (pid $pid_b, $host_b, this_host false) and a's subscriber (this_host true)"
ls_until_listed "$ns_c" "$work/c.ini" "$work/ls-c.json" publisher "$pid_b" "$(deadline_in 10000)" ||
	fail "memcast ls in c does not list b's publisher"
line=$(endpoint_of "$work/ls-c.json" subscriber "$pid_a")
grep -qF '"this_host":false' <<<"$line" || fail "memcast ls in c does not list a's subscriber as another host: $line"
ok "memcast ls --json in c lists b's publisher and a's subscriber, both on other hosts"
shared=$(grep -o '"shared_transports":"[^"]*"' "$work/ls-a.json" | sort -u)
grep -qF '"shared_transports":"udp"' <<<"$shared" ||
	fail "memcast ls in a offers no udp (network scope) across hosts: $shared"
grep -qE '"shared_transports":"[^"]*shm' <<<"$shared" &&
	fail "memcast ls in a offers shm (host scope) across hosts: $shared"
ok "memcast ls --json shows udp, not shm, shared with the other host"

# 3. another domain: b's datagrams reach it and are rejected
rejected="ignored a datagram from $ip_b: another domain"
end=$(deadline_in 5000)
while [ "$(grep -c -F -- "$rejected" "$work/a_xdomain.err")" -lt 3 ]; do
	grep -qF "(pid $pid_b)" "$work/a_xdomain.err" && fail "a context of domain $domain-x learnt of b (domain $domain)"
	[ "$(now_us)" -lt "$end" ] || fail "the other-domain context in a did not receive b's datagrams"
	sleep 0.05
done
if grep -qE "\\(pid $pid_b\\)|reaches the publisher in pid $pid_b " "$work/a_xdomain.err"; then
	fail "a context of domain $domain-x learnt of b (domain $domain)"
fi
memcast_ls "$ns_a" "$work/a-other-domain.ini" "$work/ls-a-xdomain.json" || fail "memcast ls (other domain) failed"
[ -n "$(endpoint_of "$work/ls-a-xdomain.json" subscriber "${node_pid[a_xdomain]}")" ] ||
	fail "memcast ls in domain $domain-x does not even list its own domain's subscriber"
[ -z "$(endpoint_of "$work/ls-a-xdomain.json" publisher "$pid_b")" ] ||
	fail "memcast ls in domain $domain-x lists b's publisher"
ok "a context of another domain in a rejects $(grep -c -F -- "$rejected" "$work/a_xdomain.err") datagrams of b and never learns of it"

# 4. another group: the namespace is a member of b's group (a_sub joined it), and the
# datagrams counted above were delivered to a while a_xgroup was running
if grep -qE "from $ip_b|\\(pid $pid_b\\)|no data transport reaches" "$work/a_xgroup.err"; then
	fail "the context on group $other_group received b's datagrams (group $group)"
fi
memcast_ls "$ns_a" "$work/a-other-group.ini" "$work/ls-a-xgroup.json" || fail "memcast ls (other group) failed"
[ -n "$(endpoint_of "$work/ls-a-xgroup.json" subscriber "${node_pid[a_xgroup]}")" ] ||
	fail "memcast ls on group $other_group does not even list its own group's subscriber"
[ -z "$(endpoint_of "$work/ls-a-xgroup.json" publisher "$pid_b")" ] ||
	fail "memcast ls on group $other_group lists b's publisher"
ok "a context on group $other_group (same port and domain) in a never receives b's datagrams"

# 5. ttl = 0: b_ttl0 (domain $domain-x) multicasts on b's group with ttl 0. b's publisher
# in the same namespace receives its datagrams (and rejects them: another domain); a's
# subscriber would log them the same way had they left b, and a's context of domain
# $domain-x would learn of it. Three datagrams span two heartbeats: the first ones would
# have reached a's log long before the third reaches b's.
ttl0_seen="ignored a datagram from $ip_b: another domain"
end=$(deadline_in 5000)
while [ "$(grep -c -F -- "$ttl0_seen" "$work/b_pub.err")" -lt 3 ]; do
	[ "$(now_us)" -lt "$end" ] || fail "b's publisher did not receive the ttl 0 context's datagrams"
	sleep 0.05
done
grep -qF -- "$ttl0_seen" "$work/a_sub.err" && fail "datagrams of a ttl 0 context in b reached a"
grep -qF "(pid ${node_pid[b_ttl0]})" "$work/a_xdomain.err" && fail "a learnt of a ttl 0 context in b"
ok "a context with ttl 0 in b is heard in b ($(grep -c -F -- "$ttl0_seen" "$work/b_pub.err") datagrams) and never in a"
close_node b_ttl0
wait_exit b_ttl0 5000 || fail "the ttl 0 context did not exit cleanly (status $?)"

# 6. a clean exit in b says goodbye
closed=$(now_us)
close_node b_pub
for n in c_sub a_sub; do
	wait_line "$work/$n.err" "\\(pid $pid_b\\) said goodbye" $((closed + 1000000)) ||
		fail "$n did not see b's goodbye within 1 s (expiry is $expiry_ms ms)"
done
goodbye_ms=$(ms_since "$closed" "$line_us") # a's
wait_exit b_pub 5000 || fail "b's publisher did not exit cleanly (status $?)"
grep -qF "(pid $pid_b) expired" "$work/a_sub.err" && fail "a expired b instead of taking its goodbye"
ok "a clean exit in b is seen in a and c as a goodbye (a: ${goodbye_ms} ms after b's stdin closed)"

# 7. kill -9 in b: a expires it after the expiry time
start_node b_pub2 "$ns_b" "$work/b.ini" pub "$topic"
pid_b2=${node_pid[b_pub2]}
end=$(deadline_in 5000) # a's second "matched ... udp" line: b's first publisher is gone
while [ "$(grep -c -E '^[0-9]+ matched [0-9]+ udp ' "$work/a_sub.out")" -lt 2 ]; do
	[ "$(now_us)" -lt "$end" ] || fail "a never met b's second publisher (pid $pid_b2)"
	sleep 0.01
done
killed=$(now_us)
{ kill -9 "$pid_b2"; wait "$pid_b2"; } 2>/dev/null # quiet: no "Killed" notice
wait_line "$work/a_sub.err" "\\(pid $pid_b2\\) expired" $((killed + (expiry_ms + 3000) * 1000)) ||
	fail "a did not expire b's killed publisher within $((expiry_ms + 3000)) ms"
expired_ms=$(ms_since "$killed" "$line_us")
# b's last datagram left at most a heartbeat before the kill, or a few more if its thread
# was held up on this busy machine: expiry minus four heartbeats still tells expiry apart
# from anything tied to the heartbeat.
[ "$expired_ms" -ge $((expiry_ms - 4 * heartbeat_ms)) ] ||
	fail "a expired b's killed publisher after $expired_ms ms, long before expiry ($expiry_ms ms)"
grep -qF "(pid $pid_b2) said goodbye" "$work/a_sub.err" && fail "a saw a goodbye from a process killed with -9"
ok "kill -9 in b is seen in a as an expiry after ${expired_ms} ms (expiry $expiry_ms ms, heartbeat $heartbeat_ms ms)"

# The survivors end cleanly and said nothing alarming.
for n in a_sub a_xdomain a_xgroup c_sub; do
	close_node "$n"
done
for n in a_sub a_xdomain a_xgroup c_sub; do
	wait_exit "$n" 5000 || fail "$n did not exit cleanly (status $?)"
done
if grep -E 'memcast (warn|error) ' "$work"/*.err; then
	fail "a process logged a warning or an error"
fi
ok "all processes exited cleanly, no warning or error logged"
echo "PASS: $name: $passed checks; b met by a after ${met_ms} ms, goodbye ${goodbye_ms} ms, kill -9 expired after ${expired_ms} ms"
exit 0
