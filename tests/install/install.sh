#!/usr/bin/env bash
# make install with DESTDIR gives a library with a SONAME, only the public
# symbols, the header and a pkg-config file a program can build against,
# the tools, their manual pages (rendering without warnings) and their bash
# completion; make uninstall removes all of it.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
dest=$(mktemp -d)
# Installing records what it installed in the build directory's install log,
# which `make uninstall` reads: keep the one of a real `make install`.
log=$build/meson-logs/install-log.txt
saved_log=
if [ -f "$log" ]; then
	saved_log=$dest.log
	cp -p "$log" "$saved_log"
fi
restore() {
	rm -rf "$dest"
	if [ -n "$saved_log" ]; then mv -f "$saved_log" "$log"; else rm -f "$log"; fi
}
trap restore EXIT

DESTDIR=$dest meson install -C "$build" --no-rebuild >/dev/null
lib=$(find "$dest" -name 'libpcow.so.0.*' -type f)
[ -n "$lib" ] || { echo "libpcow.so.0.* not installed"; exit 1; }
readelf -d "$lib" | grep -q 'SONAME.*libpcow.so.0' || { echo "no SONAME"; exit 1; }
# Exactly the functions of include/pcow.h, nothing internal.
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
declared=$(grep -oE '\bpcow_[a-z_]+\(' "$src/include/pcow.h" | tr -d '(' | sort -u)
if [ "$exported" != "$declared" ]; then
	echo "exported symbols differ from pcow.h:"; diff <(echo "$declared") <(echo "$exported"); exit 1
fi
installed() { # PATH-SUFFIX
	local f
	f=$(find "$dest" -path "*/$1" | head -n 1)
	[ -n "$f" ] || { echo "$1 not installed" >&2; return 1; }
	echo "$f"
}
for f in bin/pcow-img bin/pcow-io include/pcow.h share/pcow/pcow.magic; do
	installed "$f" >/dev/null
done

# Manual pages: built when scdoc is there (`make` installs it).
if command -v scdoc >/dev/null; then
	for page in man1/pcow-img.1 man1/pcow-io.1 man3/libpcow.3; do
		f=$(installed "share/man/$page")
		if command -v man >/dev/null; then
			warnings=$(MANWIDTH=80 man -l "$f" 2>&1 >/dev/null)
		else
			warnings=$(groff -ww -z -man "$f" 2>&1)
		fi
		[ -z "$warnings" ] || { echo "$page renders with warnings:"; echo "$warnings"; exit 1; }
		[ "$(MANWIDTH=80 man -l "$f" 2>/dev/null | wc -l)" -gt 20 ] ||
			{ echo "$page renders to almost nothing"; exit 1; }
	done
	# libpcow(3) describes every function of the API (in bold: "\fBname\fR()").
	for fn in $declared; do
		grep -qF "\\fB$fn\\fR()" "$(installed share/man/man3/libpcow.3)" ||
			{ echo "libpcow(3) does not describe $fn()"; exit 1; }
	done
	# pcow-img(1) documents every verb pcow-img has.
	verbs=$("$build/tools/pcow-img" --help | sed -n 's/^  \([a-z]\+\) .*/\1/p')
	for v in $verbs; do
		grep -qF "\\fB$v\\fR [" "$(installed share/man/man1/pcow-img.1)" ||
			{ echo "pcow-img(1) does not document the verb $v"; exit 1; }
	done
else
	echo "note: scdoc is not installed, so the manual pages were not built"
fi

# Bash completion: installed, valid, and registers its functions.
for tool in pcow-img pcow-io; do
	f=$(installed "share/bash-completion/completions/$tool")
	bash -c 'source "$1" && complete -p "$2"' _ "$f" "$tool" >/dev/null ||
		{ echo "completion for $tool does not load"; exit 1; }
done

pc=$(dirname "$(find "$dest" -name pcow.pc)")
cat > "$dest/use.c" <<'C'
#include <pcow.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1 << 20};
	pcow_image *img;
	(void)argc;
	if (pcow_create(argv[1], &o) < 0 || pcow_open(&img, argv[1], 0) < 0) {
		fprintf(stderr, "%s\n", pcow_errormsg());
		return 1;
	}
	return pcow_close(&img) < 0;
}
C
# pkg-config paths point into the prefix; redirect them into DESTDIR.
cflags=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags pcow)
libs=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --libs pcow)
# shellcheck disable=SC2086  # pkg-config prints several words
cc -std=gnu11 -Wall -Werror $cflags "$dest/use.c" -o "$dest/use" $libs
LD_LIBRARY_PATH=$(dirname "$lib") "$dest/use" "$dest/x.pcow"
[ -s "$dest/x.pcow" ] || { echo "program built against the installed library failed"; exit 1; }
rm -f "$dest/use.c" "$dest/use" "$dest/x.pcow"

# The installed tools run without LD_LIBRARY_PATH and use the installed
# library: outside the system library directories through a RUNPATH
# relative to the tool ($ORIGIN), which holds in the DESTDIR tree too.
libdir=$(meson introspect --buildoptions "$build" |
	python3 -c 'import json, os, sys; o = {x["name"]: x["value"] for x in json.load(sys.stdin)}; print(os.path.join(o["prefix"], o["libdir"]))')
for tool in pcow-img pcow-io; do
	t=$(installed "bin/$tool")
	runpath=$(readelf -d "$t" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
	case $libdir in
	/usr/lib* | /lib*)
		[ -z "$runpath" ] || { echo "$tool has a RUNPATH ($runpath) for the system libdir $libdir"; exit 1; }
		echo "note: $libdir is a system libdir: the staged $tool is not run without LD_LIBRARY_PATH"
		continue ;;
	esac
	[ -n "$runpath" ] || { echo "$tool has no RUNPATH: it cannot find libpcow in $libdir"; exit 1; }
	used=$(env -u LD_LIBRARY_PATH ldd "$t" | awk '$1 ~ /^libpcow\.so/ {print $3}')
	[ "$(realpath "$used")" = "$(realpath "$lib")" ] ||
		{ echo "$tool without LD_LIBRARY_PATH uses '$used', not $lib"; exit 1; }
done
t=$(installed bin/pcow-img)
if [ -n "$(readelf -d "$t" | grep RUNPATH)" ]; then
	env -u LD_LIBRARY_PATH "$t" create -q "$dest/y.pcow" 1M ||
		{ echo "installed pcow-img does not run without LD_LIBRARY_PATH"; exit 1; }
	env -u LD_LIBRARY_PATH "$(installed bin/pcow-io)" -c "write 0 4K" "$dest/y.pcow" >/dev/null ||
		{ echo "installed pcow-io does not run without LD_LIBRARY_PATH"; exit 1; }
	rm -f "$dest/y.pcow"
fi

# Uninstall (what `make uninstall` runs) removes every installed file.
ninja -C "$build" uninstall >/dev/null
left=$(find "$dest" ! -type d 2>/dev/null || true)
[ -z "$left" ] || { echo "left behind by uninstall:"; echo "$left"; exit 1; }
echo "install: ok"
