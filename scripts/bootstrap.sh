#!/bin/bash
# Shared by run-demo and run-tests: installs the Debian packages the build needs (only
# those missing; apt-get update only then), then bootstraps, configures and builds in
# BUILD_DIR (default ./build). Extra configure flags come from CONFIGURE_FLAGS.
set -euo pipefail

# iproute2: the tests that build hosts out of network namespaces (they skip without root).
# MC_EXTRA_PACKAGES: more, space-separated (.ci/run adds valgrind).
MC_PACKAGES=(gcc make autoconf automake libtool pkg-config libltdl-dev libinih-dev libcmocka-dev
	libsodium-dev binutils file iproute2 ${MC_EXTRA_PACKAGES:-})

mc_install_missing() {
	local missing=()
	for pkg in "${MC_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "memcast: missing Debian packages: ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "memcast: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mc_build() {
	local top build
	top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	build=${BUILD_DIR:-$top/build}
	[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null 2>&1) ||
		{ echo "memcast: autogen.sh failed; run it by hand to see why" >&2; exit 1; }
	mkdir -p "$build"
	if [ ! -f "$build/Makefile" ] || [ "$top/configure" -nt "$build/Makefile" ]; then
		(cd "$build" && "$top/configure" --enable-silent-rules ${CONFIGURE_FLAGS:-} >configure.out 2>&1) ||
			{ tail -20 "$build/configure.out" >&2; exit 1; }
	fi
	make -C "$build" -j"$(nproc)" >"$build/make.out" 2>&1 ||
		{ tail -40 "$build/make.out" >&2; exit 1; }
	MC_BUILD=$build
}
