#!/bin/sh
# installcheck (make distcheck runs it): against the installed tree only,
#  1. the installed memcast-conformance passes the installed inproc plugin, given as a file
#     and as a bare name found in the installed plugin directory;
#  2. a copy of examples/transport-template builds with nothing but the installed headers
#     and `pkg-config memcast-plugin`, and its own make check runs the installed suite.
# usage: template-installcheck.sh TEMPLATE_SRCDIR PKGCONFIGDIR BINDIR PLUGINDIR

template_src=${1:?template source directory}
pcdir=${2:?pkg-config directory}
bindir=${3:?bindir}
plugindir=${4:?plugin directory}

fail() {
    echo "template-installcheck: FAIL: $*" >&2
    exit 1
}

for tool in autoreconf libtoolize pkg-config make cc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "template-installcheck: $tool not found; not building the template" >&2
        missing_tools=yes
    fi
done

PKG_CONFIG_PATH=$pcdir
export PKG_CONFIG_PATH
# Nothing of the build tree may leak in.
unset MEMCAST_PLUGIN_PATH MEMCAST_CONFIG MC_BUILDDIR MC_SRCDIR MC_FIXTURE_DIR

conformance=$(pkg-config --variable=conformance memcast-plugin) ||
    fail "pkg-config finds no memcast-plugin in $pcdir"
[ "$conformance" = "$bindir/memcast-conformance" ] ||
    fail "pkg-config says conformance=$conformance, expected $bindir/memcast-conformance"
[ -x "$conformance" ] || fail "$conformance is not installed"

echo "== $conformance against the installed inproc plugin"
"$conformance" --format tap "$plugindir/mc_inproc.so" || fail "inproc does not pass (exit $?)"
"$conformance" --format tap --suite abi inproc | grep -q "^# .*plugin 'inproc' .*($plugindir/" ||
    fail "the bare name 'inproc' is not found in $plugindir"

[ -z "${missing_tools:-}" ] || exit 0

work=$(mktemp -d "${TMPDIR:-/tmp}/mc_template.XXXXXX") || fail "mktemp"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT HUP INT TERM
# distcheck's source tree is read-only, and so would the copy be.
cp -R "$template_src"/. "$work"/ && chmod -R u+w "$work" || fail "cannot copy $template_src"

echo "== building the template in $work against $pcdir"
cd "$work" || fail "cd $work"
# A make of its own: the outer make's flags and jobserver are not for this tree.
unset MAKEFLAGS MFLAGS MAKELEVEL
autoreconf -fi >autoreconf.log 2>&1 || { cat autoreconf.log; fail "autoreconf"; }
./configure --prefix="$work/prefix" >configure.log 2>&1 || { cat configure.log; fail "configure"; }
make || fail "make"
nm -D --defined-only .libs/mc_template.so | grep -v ' memcast_plugin_entry$' | grep -q . &&
    fail "mc_template.so exports more than memcast_plugin_entry"
make check || fail "the template's make check (memcast-conformance) failed"
echo "== the template builds out of tree and passes the installed conformance suite"
