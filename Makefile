# A thin wrapper around meson; `make check` and `make demo` are the entry points.
BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
DESTDIR ?=
# meson lives in /usr/bin; a python3 earlier in PATH must not hide its modules.
export PATH := /usr/bin:$(PATH)

BUILD_PACKAGES = build-essential meson ninja-build pkg-config zlib1g-dev libjson-c-dev scdoc
DEB_PACKAGES = dpkg-dev debhelper lintian fakeroot
TEST_PACKAGES = valgrind e2fsprogs util-linux man-db qemu-utils strace $(DEB_PACKAGES)

.PHONY: all deps build asan check demo bench install uninstall deb clean qemu libvirt guest vm-check crash-long crash-long-dax

all: build

deps:
	@scripts/need-packages.sh $(BUILD_PACKAGES)

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Every test: release build (all suites, the VM tests included), then the
# unit tests again under ASan+UBSan (on tmpfs, where flushes are cheap).
check: build asan qemu libvirt guest
	@scripts/need-packages.sh $(TEST_PACKAGES)
	meson test -C $(BUILD) --print-errorlogs --num-processes 2
	PCOW_TEST_DIR=/dev/shm meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs

# The patched QEMU (qemu/README.md), libvirt (libvirt/README.md) and the
# test guest (tests/vm/README.md).
qemu: build
	qemu/build.sh $(abspath $(BUILD))/meson-uninstalled

# libvirt's QEMU driver, virtqemud and virsh with pcow memory devices
# (libvirt/README.md); nothing is installed.
libvirt:
	libvirt/build.sh

guest:
	tests/vm/mkguest.sh $(abspath $(BUILD))/guest

vm-check: build qemu guest
	tests/vm/e2e.sh

demo: build qemu guest
	scripts/demo.sh

crash-long: build
	PCOW_CRASH_LONG=1 $(BUILD)/tests/test_powerfail

# The DAX crash loop with more crash states (make check: 50); about 2.5 s
# of TCG guest time each (tests/vm/README.md).
DAX_CRASH_POINTS ?= 500

crash-long-dax: build qemu guest
	PCOW_BUILD=$(abspath $(BUILD)) PCOW_DAX_CRASH_POINTS=$(DAX_CRASH_POINTS) tests/vm/pmhost.sh crash

bench: build
	bench/run.sh

# PREFIX applies to a build directory set up earlier with another one too.
install: build
	meson configure $(BUILD) --prefix=$(PREFIX)
	DESTDIR=$(DESTDIR) meson install -C $(BUILD)

uninstall:
	ninja -C $(BUILD) uninstall

# Debian packages (libpcow0, libpcow-dev, pcow-utils), built, checked with
# lintian and smoke-tested by tests/deb/deb.sh; the .debs land in $(BUILD)/deb.
deb: deps
	@scripts/need-packages.sh $(DEB_PACKAGES)
	tests/deb/deb.sh $(abspath $(BUILD))/deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Long runs of the fuzz targets and of the kill loop (short versions are
# part of `make check`).  FUZZ_SECONDS is the time for all targets together.
FUZZ_SECONDS ?= 600
KILL_ITERATIONS ?= 500

.PHONY: fuzz kill-long

fuzz: build
	@status=0; tests/fuzz/replay.sh || status=1; \
	tests/fuzz/run.sh $(FUZZ_SECONDS) || status=1; exit $$status

kill-long: build
	tests/kill/kill_loop.sh $(KILL_ITERATIONS)

# Durable small writes in the test guest: raw PM, pcow and qcow2, same
# program, alternating boots (docs/guest-benchmarks.md).
.PHONY: bench-guest

bench-guest: build qemu guest
	bench/guest/run.sh

# map_bench inside the test guest on ext4 -o dax: pcow against a raw file
# on the same DAX file system (docs/benchmarks.md, "On a DAX host").
.PHONY: bench-dax

bench-dax: build qemu guest
	PCOW_BUILD=$(abspath $(BUILD)) tests/vm/pmhost.sh bench
