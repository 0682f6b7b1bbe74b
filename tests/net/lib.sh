# Shared by the tests in tests/net: a scratch directory, the clean-up that runs on every exit,
# and hosts made of network namespaces (a bridge in a switch namespace, hosts a, b and
# optionally c on veth pairs). The test defines die and skip, and sets run, ns_*, ip_* and work_name, before
# sourcing it (node_bin too, for start_node).
work=$(mktemp -d "/tmp/$work_name.XXXXXX") || die "mktemp failed"
created_ns=()
started=() # pids of the nodes and line stampers this script started
input_fds=()

# ---- teardown: always, whatever happened ---------------------------------------------

cleanup() {
	local pid ns
	trap - EXIT INT TERM
	exec 2>/dev/null # no "Killed" notices for the processes ended here
	for pid in "${started[@]}"; do
		kill -9 "$pid" 2>/dev/null
	done
	for ns in "${created_ns[@]}"; do
		# Only this run's processes can be in its namespaces; a namespace outlives
		# `ip netns del` while a process is still in it.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -9 "$pid" 2>/dev/null
		done
	done
	for pid in "${started[@]}"; do
		wait "$pid" 2>/dev/null
	done
	for ns in "${created_ns[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- time and reporting ----------------------------------------------------------------

now_us() {
	echo "${EPOCHREALTIME/./}"
}

ms_since() { # START_US [END_US]
	local end=${2:-$(now_us)}
	echo $(((end - $1) / 1000))
}

passed=0
ok() {
	passed=$((passed + 1))
	echo "ok $passed - $*"
}

dump_logs() {
	local f
	for f in "$work"/*.out "$work"/*.err "$work"/*.json; do
		[ -f "$f" ] || continue
		echo "---- ${f##*/}"
		tail -n 40 "$f"
	done
}

fail() {
	echo "FAIL: $name: $*"
	dump_logs
	exit 1
}

# ---- the network -----------------------------------------------------------------------

# Runs a command in namespace NS. nsenter switches the network namespace only; `ip netns
# exec` and `ip -n` also remount / and /sys in a new mount namespace, which fails in a
# chroot whose / is not a mount point (../shared/tools/fresh-debian, like many CI jobs).
netns_dir=/var/run/netns # where `ip netns add` puts them
in_ns() { # NS COMMAND...
	nsenter --net="$netns_dir/$1" "${@:2}"
}

add_namespace() {
	local out
	out=$(ip netns add "$1" 2>&1) || skip "cannot create network namespaces here (ip netns add: $out)"
	created_ns+=("$1")
	out=$(in_ns "$1" true 2>&1) || skip "cannot enter a network namespace here (nsenter: $out)"
}

# Creates HOST's veth0 inside HOST and its peer inside the switch: the host's own
# namespace never holds either end.
attach_host() { # NS ADDRESS PORTNAME
	local out
	out=$(in_ns "$1" ip link add veth0 type veth peer name "$3" netns "$ns_sw" 2>&1) ||
		skip "cannot create veth pairs here ($out)"
	in_ns "$ns_sw" ip link set "$3" master br0 up &&
		in_ns "$1" ip link set lo up &&
		in_ns "$1" ip addr add "$2/24" dev veth0 &&
		in_ns "$1" ip link set veth0 up &&
		in_ns "$1" ip route add 224.0.0.0/4 dev veth0 ||
		die "configuring $1 failed"
}

# The switch and hosts a and b, and c when the test sets ns_c.
build_network() {
	local out
	add_namespace "$ns_sw"
	add_namespace "$ns_a"
	add_namespace "$ns_b"
	[ -z "${ns_c:-}" ] || add_namespace "$ns_c"
	out=$(in_ns "$ns_sw" ip link add br0 type bridge mcast_snooping 0 2>&1) ||
		skip "cannot create a bridge here ($out)"
	in_ns "$ns_sw" ip link set br0 up || die "bridge up failed"
	attach_host "$ns_a" "$ip_a" port-a
	attach_host "$ns_b" "$ip_b" port-b
	[ -z "${ns_c:-}" ] || attach_host "$ns_c" "$ip_c" port-c
}

# ---- nodes: mc_node processes in namespaces, their stamped output -----------------------

declare -A node_pid node_fd

# Children must not inherit the write ends of other nodes' stdin: a node ends cleanly
# when its stdin reaches end of file, which needs every writer closed.
close_inputs() {
	local fd
	for fd in "${input_fds[@]}"; do
		eval "exec $fd>&-"
	done
}

# Prefixes each line with the microsecond it was read, so that waits measure when a
# line was written, not when it was polled.
stamp() {
	local line
	while IFS= read -r line; do
		printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"
	done
}

# Starts $node_bin -c CONFIG ARGS... in namespace NS; its stdout and stderr, stamped, go to
# $work/NAME.out and .err, and it reads stdin from a fifo this script holds open.
start_node() { # NAME NS CONFIG ARGS...
	local name=$1 ns=$2 config=$3 fd stream
	mkfifo "$work/$name.in" "$work/$name.outpipe" "$work/$name.errpipe" || die "mkfifo failed"
	for stream in out err; do
		(
			close_inputs
			exec <&- >/dev/null
			stamp <"$work/$name.${stream}pipe" >"$work/$name.$stream"
		) &
		started+=($!)
	done
	exec {fd}<>"$work/$name.in" # read-write: opening does not wait for the reader
	(
		close_inputs
		exec nsenter --net="$netns_dir/$ns" "$node_bin" -c "$config" "${@:4}" \
			<"$work/$name.in" >"$work/$name.outpipe" 2>"$work/$name.errpipe" {fd}>&-
	) &
	node_pid[$name]=$!
	started+=($!)
	node_fd[$name]=$fd
	input_fds+=("$fd")
}

# Closes NAME's stdin (a clean exit: mc_context_close says goodbye).
close_node() {
	local fd=${node_fd[$1]} i
	eval "exec $fd>&-"
	for i in "${!input_fds[@]}"; do
		[ "${input_fds[$i]}" = "$fd" ] && unset 'input_fds[i]'
	done
}

# Finds the first line of FILE matching the extended regex PATTERN, polling until
# DEADLINE_US; sets `line` (and `line_us`, its stamp, for stamped files).
line=
line_us=
wait_line() { # FILE PATTERN DEADLINE_US
	while :; do
		line=$(grep -m1 -E -- "$2" "$1" 2>/dev/null)
		if [ -n "$line" ]; then
			line_us=${line%% *}
			return 0
		fi
		[ "$(now_us)" -lt "$3" ] || return 1
		sleep 0.01
	done
}

deadline_in() { # MS
	echo $(($(now_us) + $1 * 1000))
}
