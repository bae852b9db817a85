#!/bin/bash
#
# Runs libvirt's own tests that the patch series touches, in the build
# tree of libvirt/build.sh: qemuxmlconftest (xml2argv and xml2xml of the
# pcow cases and every other domain), virschematest (the RNG schema) and
# qemucapabilitiestest.  Builds only those tests and the mock libraries
# they preload.  Exits 77 when libvirt is not built (make libvirt).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
obj_dir=${PCOW_LIBVIRT_OBJ:-$here/../build/libvirt-src/build}

if [ ! -f "$obj_dir/build.ninja" ]; then
	echo "SKIP: libvirt is not built in $obj_dir (make libvirt)"
	exit 77
fi

TESTS='qemuxmlconftest virschematest qemucapabilitiestest'
MOCKS='virportallocatormock vircgroupmock qemucpumock virnetdevmock
	virpcimock virhostdevmock virprocessmock qemucaps2xmlmock
	domaincapsmock virnetdaemonmock virusbmock virdnsmasqmock
	qemuxml2argvmock virrandommock virfilemock virgdbusmock
	virnetserverclientmock virfirewallmock virnetdevbandwidthmock
	virtestmock qemuhotplugmock virfilecachemock virnumamock
	qemucapsprobemock virhostidmock virhostcpumock'

targets='tests/commandhelper tests/ssh'
for t in $TESTS; do targets="$targets tests/$t"; done
for m in $MOCKS; do targets="$targets tests/lib$m.so"; done

# shellcheck disable=SC2086
ninja -C "$obj_dir" $targets >/dev/null
# shellcheck disable=SC2086
meson test -C "$obj_dir" --no-rebuild --print-errorlogs $TESTS
