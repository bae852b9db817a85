# A thin wrapper around meson; `make check` and `make demo` are the entry points.
BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
DESTDIR ?=
# meson lives in /usr/bin; a python3 earlier in PATH must not hide its modules.
export PATH := /usr/bin:$(PATH)

BUILD_PACKAGES = build-essential meson ninja-build pkg-config zlib1g-dev libjson-c-dev
TEST_PACKAGES = valgrind e2fsprogs util-linux

.PHONY: all deps build asan check check-unit demo bench install uninstall clean qemu

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

check: build asan
	@scripts/need-packages.sh $(TEST_PACKAGES)
	meson test -C $(BUILD) --print-errorlogs
	meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs

demo: build
	scripts/demo.sh

bench: build
	bench/run.sh

install: build
	DESTDIR=$(DESTDIR) meson install -C $(BUILD)

uninstall:
	ninja -C $(BUILD) uninstall

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
