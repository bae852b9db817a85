# Guest side of selftest.sh, second boot: the pfn info block written on the
# first boot must bring the NVDIMM up as fsdax by itself; the files written
# and fsynced before the power-off must be there.
set -e
d=$(pm_find nfit)
pm_list
[ "$(pm_mode "$d")" = fsdax ] || pm_fail "$d did not come up as fsdax"
pm_mount "$d" /mnt/pm
ls -l /mnt/pm
[ "$(cat /mnt/pm/hello.txt)" = PCOW-DAX-FILE-CONTENT ] || pm_fail "hello.txt: $(cat /mnt/pm/hello.txt)"
want=$(pm_pattern 1048576 pcow-dax-1M- | sha256sum | cut -d' ' -f1)
got=$(sha256sum < /mnt/pm/big | cut -d' ' -f1)
[ "$got" = "$want" ] || pm_fail "big: sha256 $got, expected $want"
echo "OK files read back"
pm_umount /mnt/pm
pm_fsck "$d"
echo "OK fsck clean"
