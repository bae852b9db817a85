#!/usr/bin/env bash
# Builds the Debian packages (libpcow0, libpcow-dev, pcow-utils) from a copy
# of the source tree, runs lintian on them (an error fails), and smoke-tests
# what they hold.
#
#   tests/deb/deb.sh [OUTDIR]    OUTDIR receives the .deb files (make deb)
#
# The packages are unpacked with dpkg -x into a temporary directory and run
# from there with LD_LIBRARY_PATH.  They are installed with dpkg -i (and
# purged again) only on a throwaway machine, CI=true as root: elsewhere that
# would put a second libpcow and pcow-img into /usr on the machine that runs
# the other tests (and the QEMU build, which finds libpcow by pkg-config).
# Exits 0 (pass), 1 (fail) or 77 (skip: the packaging tools are missing).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
outdir=${1:-}

skip() { echo "SKIP: deb: $*"; exit 77; }
fail() { echo "FAIL: deb: $*" >&2; exit 1; }

for tool in dpkg-buildpackage dpkg-checkbuilddeps dh lintian fakeroot; do
	command -v "$tool" >/dev/null ||
		skip "$tool is missing (apt-get install dpkg-dev debhelper lintian fakeroot)"
done
if ! unmet=$(cd "$src" && dpkg-checkbuilddeps 2>&1); then
	skip "build dependencies are missing: ${unmet#*: }"
fi

version=$(cd "$src" && dpkg-parsechangelog -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/pcow-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

# dpkg-buildpackage writes its results next to the source tree: build in a
# copy of the tree (without build directories or other ignored files).
tree=$work/pcow-$version
mkdir "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf -) | tar -C "$tree" -xf -
else
	tar -C "$src" --exclude=./.git --exclude='./build' --exclude='./build-*' -cf - . |
		tar -C "$tree" -xf -
fi

echo "deb: building pcow $version"
if ! (cd "$tree" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log"
	fail "dpkg-buildpackage failed (last lines above)"
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
changes=$work/pcow_${version}_$arch.changes
for p in libpcow0 libpcow-dev pcow-utils; do
	[ -f "$work/${p}_${version}_$arch.deb" ] || fail "${p}_${version}_$arch.deb was not built"
done

# lintian: every tag is shown; an error (E:) fails.
lintian --info --display-level '>=warning' "$changes" >"$work/lintian.log" 2>&1 || true
sed 's/^/    lintian: /' "$work/lintian.log"
if grep -q '^E: ' "$work/lintian.log"; then
	fail "lintian reports errors"
fi

# What each package holds.
contents() { dpkg-deb -c "$work/${1}_${version}_$arch.deb" | awk '{print $6}'; }
expect_file() { # PACKAGE PATH-ERE
	contents "$1" | grep -qE "$2" || fail "$1 does not hold $2"
}
expect_file libpcow0 '/usr/lib/[^/]+/libpcow\.so\.0$'
expect_file libpcow0 '/usr/lib/[^/]+/libpcow\.so\.0\.[0-9.]+$'
expect_file libpcow-dev '/usr/include/pcow\.h$'
expect_file libpcow-dev '/usr/lib/[^/]+/libpcow\.so$'
expect_file libpcow-dev '/usr/lib/[^/]+/pkgconfig/pcow\.pc$'
expect_file libpcow-dev '/usr/share/man/man3/libpcow\.3\.gz$'
for f in /usr/bin/pcow-img /usr/bin/pcow-io /usr/share/man/man1/pcow-img.1.gz \
	/usr/share/man/man1/pcow-io.1.gz /usr/share/bash-completion/completions/pcow-img \
	/usr/share/bash-completion/completions/pcow-io /usr/share/pcow/pcow.magic; do
	expect_file pcow-utils "^\.$f$"
done
if contents libpcow0 | grep -E '/(bin|include)/'; then
	fail "libpcow0 holds more than the library"
fi
deps=$(dpkg-deb -f "$work/pcow-utils_${version}_$arch.deb" Depends)
[[ $deps == *"libpcow0 (>= "* ]] || fail "pcow-utils does not depend on libpcow0: $deps"

# Unpack and run the tools from the packages.
root=$work/root
for p in libpcow0 libpcow-dev pcow-utils; do
	dpkg -x "$work/${p}_${version}_$arch.deb" "$root"
done
libdir=$(dirname "$(find "$root" -name 'libpcow.so.0' | head -n 1)")
img=$root/usr/bin/pcow-img
io=$root/usr/bin/pcow-io
if readelf -d "$img" | grep -qE 'RPATH|RUNPATH'; then
	fail "pcow-img has an RPATH/RUNPATH"
fi
run() { LD_LIBRARY_PATH=$libdir "$@"; }
resolved=$(run ldd "$img" | awk '$1 == "libpcow.so.0" {print $3}')
[[ $resolved == "$libdir/libpcow.so.0" ]] ||
	fail "pcow-img loads $resolved instead of the packaged library"

cd "$work"
run "$img" --version | grep -qx "pcow-img version .*" || fail "pcow-img --version"
out=$(run "$img" create -f pcow disk.pcow 64M) || fail "pcow-img create: $out"
[[ $out == "Formatting 'disk.pcow', fmt=pcow size=67108864"* ]] || fail "create printed: $out"
run "$io" -c 'write -P 0xab 0 64k' disk.pcow >/dev/null || fail "pcow-io write"
run "$img" snapshot -c first disk.pcow || fail "pcow-img snapshot -c"
info=$(run "$img" info disk.pcow) || fail "pcow-img info: $info"
grep -q '^virtual size: 64 MiB (67108864 bytes)$' <<<"$info" || fail "info: $info"
grep -q 'first' <<<"$info" || fail "info does not list the snapshot: $info"
run "$img" info --output=json disk.pcow | grep -q '"virtual-size": 67108864' ||
	fail "pcow-img info --output=json"
run "$io" -r -c 'read -P 0xab 0 64k' disk.pcow >/dev/null || fail "pcow-io read"
run "$img" check disk.pcow >/dev/null || fail "pcow-img check"

# The autopkgtest smoke test (debian/tests/cli-smoke), against the
# unpacked tools.
if ! LD_LIBRARY_PATH=$libdir PCOW_IMG=$img PCOW_IO=$io \
	PCOW_MAGIC=$root/usr/share/pcow/pcow.magic bash "$src/debian/tests/cli-smoke" \
	>"$work/smoke.log" 2>&1; then
	tail -n 30 "$work/smoke.log"
	fail "debian/tests/cli-smoke failed against the packages"
fi

# A program builds against libpcow-dev.
cat >use.c <<'C'
#include <pcow.h>
#include <stdio.h>
int main(void)
{
	pcow_image *img;
	struct pcow_info info = {.struct_size = sizeof(info)};

	if (pcow_open(&img, "disk.pcow", PCOW_OPEN_RDONLY) < 0 || pcow_get_info(img, &info) < 0) {
		fprintf(stderr, "%s\n", pcow_errormsg());
		return 1;
	}
	printf("%llu\n", (unsigned long long)info.virtual_size);
	return pcow_close(&img) < 0;
}
C
pc=$(dirname "$(find "$root" -name pcow.pc)")
# shellcheck disable=SC2046  # pkg-config prints several words
cc -std=gnu11 -Wall -Werror use.c -o use \
	$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags --libs pcow) ||
	fail "a program does not build against libpcow-dev"
[[ $(run ./use) == 67108864 ]] || fail "a program built against libpcow-dev does not run"

# Manual pages render; the completion loads.
if command -v man >/dev/null; then
	for page in "$root"/usr/share/man/man*/*.gz; do
		warnings=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null)
		[ -z "$warnings" ] || fail "$(basename "$page"): $warnings"
	done
fi
bash -c 'source "$1" && complete -p pcow-img' _ \
	"$root/usr/share/bash-completion/completions/pcow-img" >/dev/null ||
	fail "the packaged completion does not load"

# On a throwaway machine (CI=true, as root, no libpcow0 installed yet) the
# packages are installed for real as well: dpkg -i, the tools run from
# /usr/bin against /usr's library, then dpkg --purge removes every file.
if [[ ${CI:-} == true && $(id -u) == 0 ]] && ! dpkg -s libpcow0 >/dev/null 2>&1; then
	trap 'dpkg --purge pcow-utils libpcow-dev libpcow0 >/dev/null 2>&1; rm -rf "$work"' EXIT
	dpkg -i "$work/libpcow0_${version}_$arch.deb" "$work/libpcow-dev_${version}_$arch.deb" \
		"$work/pcow-utils_${version}_$arch.deb" >"$work/dpkg.log" 2>&1 ||
		fail "dpkg -i: $(tail -n 3 "$work/dpkg.log")"
	ldd /usr/bin/pcow-img >"$work/ldd.txt" 2>&1 || true
	grep -Eq "libpcow.so.0 => (/usr)?/lib/" "$work/ldd.txt" ||
		fail "the installed pcow-img does not load /usr's libpcow: $(grep pcow "$work/ldd.txt")"
	/usr/bin/pcow-img create -f pcow installed.pcow 16M >/dev/null || fail "installed pcow-img create"
	/usr/bin/pcow-img info installed.pcow | grep -q '^virtual size: 16 MiB (16777216 bytes)$' ||
		fail "installed pcow-img info"
	dpkg --purge pcow-utils libpcow-dev libpcow0 >"$work/dpkg.log" 2>&1 ||
		fail "dpkg --purge: $(tail -n 3 "$work/dpkg.log")"
	[ ! -e /usr/bin/pcow-img ] && [ ! -e /usr/include/pcow.h ] ||
		fail "dpkg --purge left files behind"
	echo "deb: installed with dpkg -i, ran from /usr/bin, purged"
fi

if [ -n "$outdir" ]; then
	mkdir -p "$outdir"
	cp "$work"/*.deb "$work"/*.buildinfo "$changes" "$outdir"/
	echo "deb: packages in $outdir"
fi
echo "deb: ok (libpcow0, libpcow-dev, pcow-utils $version)"
