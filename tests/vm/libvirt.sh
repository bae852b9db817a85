#!/usr/bin/env bash
# libvirt with a pcow NVDIMM and a pcow virtio-pmem device (libvirt/README.md):
#   libvirt.sh [CASE...]      (default: all)
# Starts the virtqemud of build/libvirt (make libvirt) in a private mount
# namespace where the build's configuration, state and runtime directories
# (build/libvirt/state) are an empty directory of this run: the host's
# /etc/libvirt, /run/libvirt and /var/lib/libvirt are never used.  Domains
# are TCG guests booting the test guest's kernel directly.
# Needs build/libvirt, build/qemu and the guest; exits 77 when one is missing.
set -uo pipefail
# shellcheck source=tests/vm/lib.sh
source "$(dirname "$0")/lib.sh"
here=$VM_LIB_DIR build=$VM_REPO_DIR/build

LIBVIRT=${PCOW_LIBVIRT:-$build/libvirt}
QEMU=$PCOW_QEMU IMG=$PCOW_IMG GUEST=$PCOW_GUEST

vm_require "$QEMU" "$GUEST"
if [[ ! -x $LIBVIRT/virtqemud || ! -x $LIBVIRT/virsh ]]; then
	echo "SKIP: no libvirt in $LIBVIRT (make libvirt)"
	exit 77
fi

if [[ $(id -u) != 0 ]]; then
	echo "SKIP: needs root (a private mount namespace; DAC labels for QEMU run as nobody)"
	exit 77
fi

# Everything below runs in a mount namespace of its own.
if [[ -z ${PCOW_LIBVIRT_NS:-} ]]; then
	exec unshare --mount --propagation private \
		env PCOW_LIBVIRT_NS=1 bash "$0" "$@"
fi

T=$(mktemp -d "${TMPDIR:-/var/tmp}/pcow-libvirt.XXXXXX")
chmod 755 "$T"
daemon_pid=
cleanup() {
	if [[ -n $daemon_pid ]]; then
		for d in $(virsh list --name 2>/dev/null); do
			virsh destroy "$d" >/dev/null 2>&1
		done
		kill "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	vm_cleanup
	[[ -n ${KEEP:-} ]] || rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=tests/vm/checks.sh
source "$here/checks.sh"
# refused DESCRIPTION MESSAGE COMMAND...: the command fails saying MESSAGE
refused() {
	local what=$1 msg=$2
	shift 2
	if "$@" >"$T/out" 2>&1; then
		bad "$what (accepted)"
	elif grep -qF -- "$msg" "$T/out"; then
		ok "$what"
	else
		bad "$what (not '$msg')"
	fi
	sed 's/^/      /' "$T/out" | head -3
}

# ---- a private virtqemud ------------------------------------------------

state=$(readlink -f "$LIBVIRT")/state
mkdir -p "$T/state/etc/libvirt" "$T/state/var/run" "$state" || exit 1
mount --bind "$T/state" "$state" || { echo "cannot mount $state"; exit 1; }

cat >"$T/state/etc/libvirt/virtqemud.conf" <<CONF
log_outputs = "3:file:$T/virtqemud.log"
CONF
# No cgroups, no private /dev: the test may run in a container.  QEMU runs
# as nobody: it can open the images (mode 0600, root's) only when the DAC
# driver labelled them.  Its sockets go to a directory it may write.
mkdir -m 1777 "$T/run"
cat >"$T/state/etc/libvirt/qemu.conf" <<CONF
user = "nobody"
group = "nogroup"
dynamic_ownership = 1
namespaces = [ ]
cgroup_controllers = [ ]
security_driver = "none"
stdio_handler = "file"
CONF

# The QEMU built from source has no firmware of its own (lib.sh).
cat >"$T/qemu" <<SH
#!/bin/sh
exec "$(readlink -f "$QEMU")" -L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu "\$@"
SH
chmod 755 "$T/qemu"

virsh() { "$LIBVIRT/virsh" -q -c qemu:///system "$@"; }

# virtqemud from its build directory (so that it loads the QEMU driver
# built beside it); it runs until the test ends.
"$(readlink -f "$LIBVIRT/virtqemud")" --timeout 0 >"$T/virtqemud.out" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
	virsh uri >/dev/null 2>&1 && break
	kill -0 "$daemon_pid" 2>/dev/null || break
	sleep 0.2
done
if ! virsh uri >/dev/null 2>&1; then
	echo "virtqemud did not start"
	cat "$T/virtqemud.out" "$T/virtqemud.log" 2>/dev/null | tail -20
	exit 1
fi

# ---- domains ----------------------------------------------------------

# The guest: says READY on its control port (ttyS1), waits; writes A, says
# A, waits for the host's snapshot; on "1" writes B and says B (the host
# then reverts the snapshot, which takes the guest back to its wait after
# A); on "2" it must read A again, writes C and says DONE.
cat >"$T/guest.sh" <<'SH'
dev=$(pm_find "$PCOW_KIND" 20) || pm_fail "no $PCOW_KIND device"
pm_ctl_open
# write OFF TEXT: one block, checked
write() {
	pm_put_block "$dev" "$1" "$2$2$2$2$2$2$2$2"
	[ "$(pm_block8 "$dev" "$1")" = "$2$2$2$2$2$2$2$2" ] || { pm_say "FAIL: $2 not written"; exit 1; }
}
pm_say PCOW-READY
pm_hear go
write 1048576 A
pm_say PCOW-A
pm_hear go
now=$(pm_block8 "$dev" 1048576)
[ "$now" = AAAAAAAA ] || { pm_say "FAIL: after '$go' the PM holds '$now', not A"; exit 1; }
if [ "$go" = 1 ]; then
	write 1048576 B
	pm_say PCOW-B
	pm_hear go
	pm_say "FAIL: got '$go' after B: the revert did not take the guest back"
	exit 1
fi
write 2097152 C
pm_say "PCOW-DONE: read A after the revert, wrote C"
pm_hear go
SH

# domain_xml NAME MODEL IMAGE SIZE_MIB [MEMORY_ATTRS] [SOURCE_EXTRA]
#            [MEMORYBACKING] [QEMU_NAMESPACE_ELEMENTS]
domain_xml() {
	local name=$1 model=$2 img=$3 size=$4 attrs="access='shared'"
	local extra=${6:-} backing=${7:-} qemuns=${8:-} target
	(($# < 5)) || attrs=$5
	if [[ $model == nvdimm ]]; then
		target="<size unit='MiB'>$size</size><node>0</node>"
	else
		target="<size unit='MiB'>$size</size>"
	fi
	cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$name</name>
  <maxMemory slots='4' unit='GiB'>4</maxMemory>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  $backing
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$T/vmlinuz</kernel>
    <initrd>$T/$name.initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'>
    <numa><cell id='0' cpus='0' memory='256' unit='MiB'/></numa>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$T/qemu</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$T/$name.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$T/$name.console'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='$T/run/$name.ctl'/><target port='1'/></serial>
    <memory model='$model' $attrs>
      <source>
        <path>$img</path>
        <format type='pcow'/>$extra
      </source>
      <target>$target</target>
    </memory>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  $qemuns
</domain>
XML
}

cp "$GUEST/vmlinuz" "$T/vmlinuz"

# make_domain NAME MODEL IMAGE SIZE_MIB [domain_xml args...]: the qcow2
# file for the VM state, the initrd with the guest script, the XML.
make_domain() {
	local name=$1 kind=nfit
	[[ $2 == virtio-pmem ]] && kind=virtio
	"${QEMU%/*}/qemu-img" create -q -f qcow2 "$T/$name.qcow2" 64M
	{ echo "PCOW_KIND=$kind"; cat "$T/guest.sh"; } >"$T/$name.sh"
	vm_make_initrd "$GUEST" "$T/$name.sh" "$T/$name.initrd"
	domain_xml "$@" >"$T/$name.xml"
}

at() { dd if="$1" bs=1 skip="$2" count=8 status=none | tr -d '\0'; } # FILE OFFSET: 8 bytes

# ---- cases ---
# (Short domain names: QEMU's monitor socket is
# build/libvirt/state/var/lib/libvirt/qemu/domain-N-NAME/monitor.sock, and
# a socket path has at most 107 bytes.)-------------------------------------------------------------

# A running domain with a pcow device (an overlay over a pcow base that
# holds data at 3 MiB, both root's with mode 0600): the guest writes, a
# snapshot is taken, the guest overwrites, the snapshot is reverted (the
# guest reads what it wrote before), the snapshot deleted; destroy and
# undefine leave the image clean and without snapshots, holding A and C
# and the base's data; the image is root's again.
snapshot_case() { # NAME MODEL
	local name=$1 model=$2 img=$T/$1.pcow base=$T/$1-base.pcow
	echo "$model: start, snapshot, revert, delete"
	truncate -s 256M "$T/base.raw"
	printf BASEBASE | dd of="$T/base.raw" bs=1 seek=3145728 conv=notrunc status=none
	"$IMG" convert -q -f raw -O pcow "$T/base.raw" "$base"
	rm -f "$T/base.raw"
	"$IMG" create -q -b "$base" -F pcow "$img" >/dev/null
	chmod 600 "$img" "$base"
	make_domain "$name" "$model" "$img" 256
	check "define" virsh define "$T/$name.xml"
	check "the image is a pcow source with format=pcow on QEMU's command line" \
		grep -q '"format":"pcow"' <(virsh domxml-to-native qemu-argv --domain "$name")
	if ! check "start" virsh start "$name"; then
		tail -5 "$T/state/var/log/libvirt/qemu/$name.log" 2>/dev/null
		return
	fi
	if /usr/bin/python3 "$here/libvirt_drive.py" "$LIBVIRT/virsh -q -c qemu:///system" \
		"$name" "$T/run/$name.ctl" >"$T/drive.out" 2>&1; then
		ok "guest and snapshots:"
	else
		bad "guest and snapshots:"
		tail -20 "$T/$name.console" 2>/dev/null | sed 's/^/      console: /'
	fi
	sed 's/^/      /' "$T/drive.out"
	# While the domain is shut off libvirt would use qemu-img, which does
	# not know the pcow image: refused.
	check "snapshot-create-as s2 (running)" virsh snapshot-create-as "$name" s2
	check "destroy" virsh destroy "$name"
	refused "snapshot-create-as while shut off" \
		"internal snapshots of a domain with a pcow memory device are taken while it runs" \
		virsh snapshot-create-as "$name" off
	refused "snapshot-delete while shut off" \
		"internal snapshots of a domain with a pcow memory device are deleted while it runs" \
		virsh snapshot-delete "$name" s2
	check "snapshot-delete --metadata while shut off" virsh snapshot-delete "$name" s2 --metadata
	check "s2 is still in the image then" test "$("$IMG" snapshot -l "$img" | awk 'NR > 2 { print $2 }')" = s2
	"$IMG" snapshot -q -d s2 "$img"
	"${QEMU%/*}/qemu-img" snapshot -d s2 "$T/$name.qcow2"
	check "undefine" virsh undefine "$name"
	check "the image checks clean" "$IMG" check "$img"
	check "no snapshot left in the image" test -z "$("$IMG" snapshot -l "$img")"
	"$IMG" convert -O raw "$img" "$T/$name.raw"
	check "the image holds A and C, and the base's data" test \
		"$(at "$T/$name.raw" 1048576)$(at "$T/$name.raw" 2097152)$(at "$T/$name.raw" 3145728)" = AAAAAAAACCCCCCCCBASEBASE
	check "the image is root's again (DAC restored it)" test "$(stat -c %u "$img")" = 0
	rm -f "$T/$name.raw"
}

case_nvdimm() { snapshot_case nv nvdimm; }
case_virtio() { snapshot_case vp virtio-pmem; }

# What cannot work is refused with one clear error, before QEMU runs.
case_refusals() {
	local img=$T/r.pcow small=$T/small.pcow
	echo "refusals"
	"$IMG" create -q "$img" 256M >/dev/null
	"$IMG" create -q "$small" 128M >/dev/null

	# A QEMU without the format property (the capability taken away, as
	# a QEMU without the pcow patches lacks it).
	make_domain r-nocap nvdimm "$img" 256 "access='shared'" "" "" \
		"<qemu:capabilities><qemu:del capability='memory-backend-file.format'/></qemu:capabilities>"
	virsh define "$T/r-nocap.xml" >/dev/null
	refused "a QEMU without pcow support" \
		"a pcow memory device source is not supported by this QEMU binary" \
		virsh start r-nocap
	virsh undefine r-nocap >/dev/null

	make_domain r-size nvdimm "$small" 256
	virsh define "$T/r-size.xml" >/dev/null
	refused "a size that disagrees with the image" \
		"memory device size 262144 KiB differs from the virtual size 131072 KiB" \
		virsh start r-size
	virsh undefine r-size >/dev/null
	check "the image refused is root's, unchanged" test "$(stat -c %u "$small")" = 0

	make_domain r-prealloc virtio-pmem "$img" 256 "access='shared'" "" \
		"<memoryBacking><allocation mode='immediate'/></memoryBacking>"
	refused "preallocation" "a pcow memory device source cannot be preallocated" \
		virsh define "$T/r-prealloc.xml"

	make_domain r-private nvdimm "$img" 256 "access='private'"
	refused "access='private'" "a pcow memory device source requires access='shared'" \
		virsh define "$T/r-private.xml"

	make_domain r-pmem nvdimm "$img" 256 "access='shared'" "<pmem/>"
	refused "<pmem/>" "a pcow memory device source cannot have <pmem/>" \
		virsh define "$T/r-pmem.xml"

	check "the image checks clean" "$IMG" check "$img"
	check "no domain is left" test -z "$(virsh list --all --name)"
}

# Hot plug of a pcow NVDIMM into the running domain: the size is checked
# first, then the image is labelled for QEMU (nobody) and mapped.
case_hotplug() {
	local img=$T/hot.pcow plug=$T/plug.pcow small=$T/plug-small.pcow
	echo "hot plug"
	"$IMG" create -q "$img" 256M >/dev/null
	"$IMG" create -q "$plug" 128M >/dev/null
	"$IMG" create -q "$small" 64M >/dev/null
	chmod 600 "$img" "$plug" "$small"
	make_domain hot nvdimm "$img" 256
	virsh define "$T/hot.xml" >/dev/null
	if ! check "start" virsh start hot; then
		return
	fi
	for f in "$plug" "$small"; do
		cat >"$f.xml" <<XML
<memory model='nvdimm' access='shared'>
  <source><path>$f</path><format type='pcow'/></source>
  <target><size unit='MiB'>128</size><node>0</node></target>
</memory>
XML
	done
	refused "a hot plugged image whose size disagrees" \
		"memory device size 131072 KiB differs from the virtual size 65536 KiB" \
		virsh attach-device hot "$small.xml" --live
	check "attach-device of a pcow NVDIMM" virsh attach-device hot "$plug.xml" --live
	check "the plugged image is labelled for QEMU" test "$(stat -c %u "$plug")" = 65534
	check "QEMU has the image open (locked)" \
		bash -c '! "$1" check "$2" >/dev/null 2>&1' _ "$IMG" "$plug"
	check "the domain's XML has the plugged pcow device" \
		grep -qF "<path>$plug</path>" <(virsh dumpxml hot)
	check "destroy" virsh destroy hot
	check "undefine" virsh undefine hot
	check "the plugged image checks clean" "$IMG" check "$plug"
	check "the plugged image is root's again" test "$(stat -c %u "$plug")" = 0
}

all=(nvdimm virtio refusals hotplug)
for c in "${@:-${all[@]}}"; do
	"case_$c"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
