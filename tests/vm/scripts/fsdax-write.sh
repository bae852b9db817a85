# Guest side of selftest.sh, first boot: make the NVDIMM fsdax, create ext4,
# mount it with -o dax, write and fsync two files, then power off without
# unmounting.
set -e
d=$(pm_find nfit)
pm_fsdax "$d"
pm_list
[ "$(pm_mode "$d")" = fsdax ] || pm_fail "$d is not fsdax after pm_fsdax"
echo "data offset: $(pm_data_offset "$d")"
pm_mkfs "$d"
pm_mount "$d" /mnt/pm
pm_write_file /mnt/pm/hello.txt PCOW-DAX-FILE-CONTENT
pm_pattern 1048576 pcow-dax-1M- | dd of=/mnt/pm/big bs=65536 conv=fsync status=none
sha256sum /mnt/pm/big
pm_log "files written and fsynced; powering off while mounted"
