# Guest side of selftest.sh: a virtio-pmem device (256 MiB backend). ext4
# with -o dax straight on its namespace (virtio-pmem needs no fsdax
# rebind), then byte patterns past the end of that small file system, each
# flushed through the virtio flush request.
set -e
d=$(pm_find virtio)
pm_list
[ "$(pm_dax "$d")" = 1 ] || pm_fail "$d does not support DAX"
pm_mkfs "$d" 64M
pm_mount "$d" /mnt/vp
pm_write_file /mnt/vp/hello.txt PCOW-VIRTIO-FILE-CONTENT
pm_umount /mnt/vp
pm_fsck "$d"
pm_write "$d" 201326592 PCOW-VIRTIO-AT-192M
pm_fill "$d" 268369920 65536 pcow-virtio-fill-
pm_flush "$d"
pm_drop_caches
pm_check "$d" 201326592 PCOW-VIRTIO-AT-192M
pm_check_fill "$d" 268369920 65536 pcow-virtio-fill-
