# Sourced first by every tests/net script, after it set `name`: skip and die as automake's
# test driver reads them (exit 77 SKIP, 99 ERROR), and what the scripts need before lib.sh
# builds anything.

skip() {
	echo "SKIP: $name: $*"
	exit 77
}
die() {
	echo "ERROR: $name: $*" >&2
	exit 99
}

[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces and enter them (setns)"
command -v ip >/dev/null 2>&1 || skip "needs the ip command (Debian package iproute2)"
command -v nsenter >/dev/null 2>&1 || skip "needs nsenter (Debian package util-linux)"
[ -n "${MC_BUILDDIR:-}" ] || die "MC_BUILDDIR is not set (make check sets it)"
