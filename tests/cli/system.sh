#!/bin/bash
# Finding pcow from the rest of the system.  The file(1) magic entry
# (data/pcow.magic, installed by pcow-utils): file names a pcow image with
# its version, virtual size and block size, and nothing else as one; with
# the system's magic, other formats still show.  The manual pages say
# what the environment and which files matter, and how QEMU runs an image;
# the Debian packages are tested as installed (autopkgtest).
source "$(dirname "$0")/lib.sh"

# PCOW_MAGIC: an installed copy (debian/tests).
MAGIC=${PCOW_MAGIC:-$SRC_DIR/data/pcow.magic}
command -v file >/dev/null || skip "file(1) is not installed"

# It compiles without a complaint.
mkdir mgc
(cd mgc && file -C -m "$MAGIC") >"$T/.out" 2>"$T/.err"
check_eq "$?:$(cat "$T/.err")" "0:" "file -C of the magic entry"

for bs in 4096 65536 2097152 1073741824; do
    ok "$PCOW_IMG" create -q -o block_size=$bs "b$bs.pcow" 64M
done
check_eq "$(file -b -m "$MAGIC" b4096.pcow)" "pcow image (version 2), virtual size 67108864 bytes, block size 4 KiB" \
    "file of a pcow image"
check_eq "$(file -b -m "$MAGIC" b65536.pcow)" "pcow image (version 2), virtual size 67108864 bytes, block size 64 KiB" \
    "file: 64 KiB blocks"
check_eq "$(file -b -m "$MAGIC" b2097152.pcow)" "pcow image (version 2), virtual size 67108864 bytes, block size 2 MiB" \
    "file: 2 MiB blocks"
check_eq "$(file -b -m "$MAGIC" b1073741824.pcow)" "pcow image (version 2), virtual size 67108864 bytes, block size 1 GiB" \
    "file: 1 GiB blocks"
check_eq "$(file -b --mime-type -m "$MAGIC" b4096.pcow)" "application/x-pcow" "file --mime-type"
ok "$PCOW_IMG" create -q -b b4096.pcow -F pcow over.pcow
check_eq "$(file -b -m "$MAGIC" over.pcow)" \
    "pcow image (version 2), virtual size 67108864 bytes, block size 64 KiB, with a backing file" "file of an overlay"

# Not a pcow image: neither a raw disk nor a file that merely holds the
# magic further in (slot 1 alone may be a guest's data).
mkraw raw.img 1M
check_true "a raw file is no pcow image" not grep -q pcow <<<"$(file -b -m "$MAGIC" raw.img)"
dd if=b4096.pcow of=inside.img bs=4096 count=1 seek=64 conv=notrunc status=none
check_true "the magic further in is no pcow image" not grep -q pcow <<<"$(file -b -m "$MAGIC" inside.img)"

# With the system's magic after it, both are known.
sysmagic=/usr/share/misc/magic
if [[ -e $sysmagic.mgc || -e $sysmagic ]]; then
    check_eq "$(file -b -m "$MAGIC:$sysmagic" b65536.pcow | cut -d, -f1)" "pcow image (version 2)" \
        "a pcow image with the system's magic"
    printf '#!/bin/sh\n' >script.sh
    check_true "other files are still known" grep -qi "shell script" <<<"$(file -b -m "$MAGIC:$sysmagic" script.sh)"
fi

# The manual pages: ENVIRONMENT, FILES (the magic entry among them), and a
# QEMU command line.
man=$SRC_DIR/docs/man
for page in pcow-img.1 pcow-io.1; do
    check_true "$page has ENVIRONMENT" grep -qx "# ENVIRONMENT" "$man/$page.scd"
    check_true "$page has FILES" grep -qx "# FILES" "$man/$page.scd"
done
check_true "pcow-img.1 names TMPDIR" grep -q '^\*TMPDIR\*$' "$man/pcow-img.1.scd"
check_true "pcow-img.1 names the magic entry" grep -q '^\*/usr/share/pcow/pcow.magic\*$' "$man/pcow-img.1.scd"
check_true "pcow-img.1 shows a QEMU command line" \
    grep -q "memory-backend-file,id=pm,mem-path=pm.pcow,format=pcow" "$man/pcow-img.1.scd"

# The deliberate differences from qemu-img are listed.
check_true "pcow-img.1 has COMPATIBILITY" grep -qx "# COMPATIBILITY" "$man/pcow-img.1.scd"

# autopkgtest: the CLI smoke test against the installed packages.
check_true "debian/tests/control runs cli-smoke" grep -qx "Tests: cli-smoke" "$SRC_DIR/debian/tests/control"
check_true "cli-smoke is executable" test -x "$SRC_DIR/debian/tests/cli-smoke"

# Installed with the tools (meson) and in pcow-utils (Debian).
check_true "meson installs the magic entry" grep -q "install_data('data/pcow.magic'" "$SRC_DIR/meson.build"
check_true "pcow-utils holds the magic entry" grep -qx "usr/share/pcow/pcow.magic" \
    "$SRC_DIR/debian/pcow-utils.install"

finish
