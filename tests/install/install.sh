#!/usr/bin/env bash
# make install with DESTDIR gives a library with a SONAME, only the public
# symbols, the header and a pkg-config file a program can build against.
set -euo pipefail
build=$1
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

DESTDIR=$dest meson install -C "$build" --no-rebuild >/dev/null
lib=$(find "$dest" -name 'libpcow.so.0.*' -type f)
[ -n "$lib" ] || { echo "libpcow.so.0.* not installed"; exit 1; }
readelf -d "$lib" | grep -q 'SONAME.*libpcow.so.0' || { echo "no SONAME"; exit 1; }
# Exactly the functions of include/pcow.h, nothing internal.
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
declared=$(grep -oE '\bpcow_[a-z_]+\(' "$(dirname "$0")/../../include/pcow.h" | tr -d '(' | sort -u)
if [ "$exported" != "$declared" ]; then
	echo "exported symbols differ from pcow.h:"; diff <(echo "$declared") <(echo "$exported"); exit 1
fi
for f in bin/pcow-img bin/pcow-io include/pcow.h; do
	[ -n "$(find "$dest" -path "*/$f")" ] || { echo "$f not installed"; exit 1; }
done
pc=$(dirname "$(find "$dest" -name pcow.pc)")
cat > "$dest/use.c" <<'C'
#include <pcow.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	struct pcow_create_opts o = {.size = 1 << 20};
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
cc -std=gnu11 -Wall -Werror $cflags "$dest/use.c" -o "$dest/use" $libs
LD_LIBRARY_PATH=$(dirname "$lib") "$dest/use" "$dest/x.pcow"
[ -s "$dest/x.pcow" ] || { echo "program built against the installed library failed"; exit 1; }
echo "install: ok"
