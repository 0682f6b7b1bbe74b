#!/bin/bash
# memcast bench latency and throughput over udp between two hosts made of network
# namespaces (root only). Builds the hosts, runs the benches, prints every result (JSON)
# and the medians, and removes everything it made on exit, failure or signal.
#
#   sudo scripts/bench-udp-netns.sh [--runs N] [--sizes LIST] [--send-rate LIST]
#                                   [--udp KEY=VALUE]... [--lock FILE] [--out DIR]
#                                   [--build DIR] [--quick]
#
# The network (tests/net/lib.sh, as tests/net/udp_data.sh has it): a switch namespace
# holding a bridge (multicast snooping off) and hosts a and b, each on a veth pair to it,
# 10.234.0.N/24, lo up and 224.0.0.0/4 routed on veth0. Nothing is added to the machine's
# own namespace.
#
# Each run, for every size of --sizes (default 64,64K,1M):
#   latency    pinger in a, ponger in b, with the copy floor of the same run
#              (the floor's two processes stay in this shell's namespace: shared memory);
#   latency    reference: both in a, with [udp] ttl = 0 so that nothing leaves a (the
#              same udp settings otherwise: the kernel's local path instead of veth +
#              bridge + veth; without ttl = 0 a multicast data group would also go out
#              to the bridge);
#   throughput publisher in a, subscriber in b; then the reference, both in a.
# udp settings come from a -c FILE this script writes (network mode, its own group and
# port, interface veth0, heartbeat 200ms). Latency runs unpaced (one message is in flight,
# and 1 MiB is 754 datagrams, under the 1000 packets of net.core.netdev_max_backlog);
# throughput runs once for each [udp] send_rate of --send-rate (default 200M, as
# udp_data.sh has it; 0 is unpaced), e.g. --send-rate 200M,0.
# memcast and the udp plugin are copied from the build tree when the script starts (their
# sha256 is printed), so a rebuild during the runs does not change what is measured
# (memcast links the framework statically; the plugin is found through [udp] path).
#
# --udp KEY=VALUE adds a key to [udp] of every run (data_groups = none, auth_key_file, ...).
# --lock FILE takes flock FILE around each latency pair and each throughput pair, so a
# measurement and its reference see the same machine and nothing built meanwhile.
# --quick: small counts (a check that it works, not figures).
# Exit: 0 done, 1 a bench failed or bad usage, 2 not root / tools missing.
set -u

name=bench-udp-netns
die() {
	echo "$name: $*" >&2
	exit 1
}
skip() { # lib.sh calls this when the kernel refuses namespaces, veth pairs or bridges
	echo "$name: $*" >&2
	exit 2
}
usage() { # EXIT_STATUS
	sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit "$1"
}

src=$(cd "$(dirname "$0")/.." && pwd)
build=${MC_BUILDDIR:-$src/build}
runs=1 sizes=64,64K,1M send_rate=200M lock='' out='' quick=0
extra_keys=()
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:?} && shift ;;
	--sizes) sizes=${2:?} && shift ;;
	--send-rate) send_rate=${2:?} && shift ;;
	--udp) extra_keys+=("${2:?}") && shift ;;
	--lock) lock=${2:?} && shift ;;
	--out) out=${2:?} && shift ;;
	--build) build=${2:?} && shift ;;
	--quick) quick=1 ;;
	-h | --help) usage 0 ;;
	*) echo "$name: unknown argument '$1'" >&2 && usage 1 ;;
	esac
	shift
done
case $runs in '' | *[!0-9]* | 0) die "--runs wants a number of runs, 1 or more" ;; esac

for key in "${extra_keys[@]}"; do
	case $key in [a-z]*=*) ;; *) die "--udp wants KEY=VALUE, e.g. data_groups=none" ;; esac
done
case $send_rate in '' | ,* | *, | *,,* | *[!0-9kKmMgG,]*) die "--send-rate wants a list of sizes, like 200M,0" ;; esac

if [ "$(id -u)" != 0 ]; then
	echo "$name: needs root (it creates network namespaces, and memcast bench --netns" \
		"enters them with setns); try: sudo $0" >&2
	exit 2
fi
for tool in ip nsenter flock setsid timeout awk sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || skip "needs $tool (Debian: iproute2, util-linux, coreutils, gawk/mawk)"
done
memcast=$build/tools/memcast
[ -x "$memcast" ] || die "no $memcast: build it (make tools/memcast) or pass --build DIR"
plugin=$build/plugins/udp/.libs/mc_udp.so
[ -e "$plugin" ] || die "no $plugin: build plugins/udp/mc_udp.la"
[ -z "$out" ] || mkdir -p "$out" || die "cannot create $out"

# The files written below say every udp setting; a MEMCAST_UDP_* in the caller's
# environment would silently win over them.
for var in $(compgen -e | grep '^MEMCAST_'); do
	unset "$var"
done

run=mcbn-$$
ns_sw=$run-sw ns_a=$run-a ns_b=$run-b
ip_a=10.234.0.1 ip_b=10.234.0.2
work_name=mc-bench-netns
# shellcheck source=tests/net/lib.sh
. "$src/tests/net/lib.sh"

# The bench runs in a session of its own: a signal to this script ends all of it (the
# floor's processes too, which stay in this namespace), then lib.sh's cleanup removes the
# namespaces.
bench_pid=
stop_bench() {
	[ -n "$bench_pid" ] || return 0
	kill -9 -- "-$bench_pid" 2>/dev/null || kill -9 "$bench_pid" 2>/dev/null
	wait "$bench_pid" 2>/dev/null
	bench_pid=
}
trap 'stop_bench; cleanup' EXIT

write_config() { # FILE SEND_RATE TTL
	cat >"$1" <<CONF
[udp]
path = $work/plugin
mode = network
group = 239.255.234.1
port = 14234
interface = veth0
heartbeat = 200ms
expiry = 2s
send_rate = $2
ttl = $3
CONF
	local key
	for key in "${extra_keys[@]}"; do
		echo "${key%%=*} = ${key#*=}" >>"$1"
	done
}

# Runs memcast bench ARGS... with its JSON on FILE; fails the script on a non-zero exit.
bench() { # FILE ARGS...
	local file=$1 rc
	shift
	echo "\$ memcast $*" >&2
	setsid timeout -k 10 600 "$memcast" "$@" >"$file" 2>"$file.err" &
	bench_pid=$!
	wait "$bench_pid"
	rc=$?
	bench_pid=
	cat "$file"
	[ $rc = 0 ] || die "memcast bench exited $rc: $(cat "$file.err")"
	[ -z "$out" ] || cp "$file" "$out/"
}

# Throughput counts by size, so that 64 B takes seconds rather than minutes.
tp_count() { # SIZE_TEXT
	local bytes
	bytes=$(echo "$1" | awk '/[kK]$/ { print $0 * 1024; next } /[mM]$/ { print $0 * 1048576; next } { print $0 + 0 }')
	if [ $quick = 1 ]; then
		echo 20
	elif [ "$bytes" -le 4096 ]; then
		echo 200000
	elif [ "$bytes" -le 65536 ]; then
		echo 5000
	else
		echo 1000
	fi
}

latency_pair() { # RUN
	local n=()
	[ $quick = 0 ] || n=(--count 50 --warmup 10)
	bench "$work/run$1-latency-cross.json" -c "$work/latency-cross.ini" bench latency -t udp \
		--netns "$ns_a,$ns_b" --size "$sizes" --json "${n[@]}"
	bench "$work/run$1-latency-same.json" -c "$work/latency-same.ini" bench latency -t udp \
		--netns "$ns_a,$ns_a" --size "$sizes" --json --no-floor "${n[@]}"
}

throughput_pair() { # RUN RATE
	local size placement netns
	for placement in cross same; do
		netns=$ns_a,$ns_b
		[ $placement = same ] && netns=$ns_a,$ns_a
		for size in ${sizes//,/ }; do
			bench "$work/run$1-throughput_$2-$placement-$size.json" \
				-c "$work/throughput_$2-$placement.ini" \
				bench throughput -t udp --netns "$netns" --size "$size" \
				--count "$(tp_count "$size")" --json --no-floor
		done
	done
}

# One row per figure: RUN KIND PLACEMENT SIZE METRIC VALUE (the JSON layout of memcast
# bench; jq is not needed).
extract() { # RUN
	local f
	for f in "$work/run$1"-*.json; do
		awk -v run="$1" -v file="${f##*/}" '
		{
			split(file, part, "-")
			kind = part[2]; placement = part[3]; sub(/\..*/, "", placement)
			n = split($0, sizes, /\{"size": /)
			for (i = 2; i <= n; i++) {
				s = sizes[i]; size = s + 0
				if (kind == "latency") {
					if (match(s, /"memcast": \{[^}]*\}/)) {
						m = substr(s, RSTART, RLENGTH)
						emit(m, "p50_us"); emit(m, "p90_us"); emit(m, "p99_us")
					}
					if (match(s, /"floor": \{[^}]*\}/)) {
						m = substr(s, RSTART, RLENGTH)
						if (match(m, /"p50_us": [0-9.]+/))
							print run, kind, "floor", size, "p50_us", substr(m, RSTART + 10, RLENGTH - 10)
					}
				} else {
					emit(s, "msgs_per_s"); emit(s, "mb_per_s"); emit(s, "lost"); emit(s, "pub_cpu_ns_per_msg")
				}
			}
		}
		function emit(text, key) {
			if (match(text, "\"" key "\": [0-9.]+"))
				print run, kind, placement, size, key, substr(text, RSTART + length(key) + 4, RLENGTH - length(key) - 4)
		}' "$f"
	done
}

# Medians over the runs of every figure, and the ratios cross / same (and latency cross /
# copy floor), taken per run and then the median of those.
summarise() { # ROWS_FILE
	sort -k2,2 -k3,3 -k4,4n -k5,5 -k1,1n "$1" | awk '
	function median(list, k,   v, c, i, j, t) {
		c = split(list, v, " ")
		for (i = 2; i <= c; i++)
			for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
				t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
			}
		return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
	}
	{
		key = $2 " " $4 " " $5
		val[$2 " " $3 " " $4 " " $5] = val[$2 " " $3 " " $4 " " $5] " " $6
		one[$1 " " $2 " " $3 " " $4 " " $5] = $6
		if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
		runs[$1] = 1
	}
	END {
		printf "%-16s %8s %-18s %12s %12s %12s %10s %10s\n", "bench", "size", "figure", "cross", "same ns", "floor", "cross/same", "cross/floor"
		for (k = 1; k <= keys; k++) {
			split(order[k], f, " ")
			kind = f[1]; size = f[2]; metric = f[3]
			c = val[kind " cross " size " " metric]; s = val[kind " same " size " " metric]
			fl = val[kind " floor " size " " metric]
			if (c == "") continue
			rs = ""; rf = ""
			for (r in runs) {
				x = one[r " " kind " cross " size " " metric]
				y = one[r " " kind " same " size " " metric]
				z = one[r " " kind " floor " size " " metric]
				if (x != "" && y + 0 > 0) rs = rs " " x / y
				if (x != "" && z + 0 > 0) rf = rf " " x / z
			}
			printf "%-16s %8s %-18s %12.2f %12s %12s %10s %10s\n", kind, size, metric, median(c),
				s == "" ? "-" : sprintf("%.2f", median(s)), fl == "" ? "-" : sprintf("%.2f", median(fl)),
				rs == "" ? "-" : sprintf("%.2f", median(rs)), rf == "" ? "-" : sprintf("%.2f", median(rf))
		}
	}'
}

# Measurements hold --lock; so does the copy of the plugin (no build is writing it then).
lock_fd=
[ -z "$lock" ] || exec {lock_fd}>>"$lock" || die "cannot open $lock"
hold() {
	[ -z "$lock_fd" ] || flock "$lock_fd"
}
release() {
	[ -z "$lock_fd" ] || flock -u "$lock_fd"
}

build_network
mkdir "$work/plugin" || die "mkdir failed"
hold
cp -p "$plugin" "$work/plugin/" || die "cannot copy $plugin"
cp -p "$memcast" "$work/memcast" || die "cannot copy $memcast"
release
built_memcast=$memcast
memcast=$work/memcast
write_config "$work/latency-cross.ini" 0 1
write_config "$work/latency-same.ini" 0 0
for rate in ${send_rate//,/ }; do
	write_config "$work/throughput_$rate-cross.ini" "$rate" 1
	write_config "$work/throughput_$rate-same.ini" "$rate" 0
done
echo "# $name: hosts $ns_a ($ip_a) and $ns_b ($ip_b) on a bridge in $ns_sw;" \
	"$runs run(s), sizes $sizes, throughput send_rate $send_rate${extra_keys[*]:+, [udp] ${extra_keys[*]}}" >&2
echo "# $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "# memcast $(sha256sum <"$memcast" | cut -c1-16) ($(date -u -r "$built_memcast" +%FT%TZ))," \
	"udp plugin $(sha256sum <"$work/plugin/mc_udp.so" | cut -c1-16)" \
	"($(date -u -r "$plugin" +%FT%TZ))" >&2
: >"$work/rows"
for r in $(seq 1 "$runs"); do
	echo "# run $r of $runs, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	hold
	latency_pair "$r"
	release
	for rate in ${send_rate//,/ }; do
		hold
		throughput_pair "$r" "$rate"
		release
	done
	extract "$r" >>"$work/rows"
done
[ -z "$out" ] || cp "$work/rows" "$out/rows.txt"
echo
echo "medians of $runs run(s); latency one way in us; cross = a to b, same ns = both in a"
summarise "$work/rows"
