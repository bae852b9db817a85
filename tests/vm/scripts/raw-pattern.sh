# Guest side of selftest.sh: byte patterns on the raw NVDIMM namespace
# (a 256 MiB backend). The host then looks for them in the backing file.
set -e
d=$(pm_find nfit)
pm_list
[ "$(pm_mode "$d")" = raw ] || pm_fail "$d is not a raw namespace"
pm_write "$d" 0 PCOW-RAW-AT-0
pm_write "$d" 1048699 PCOW-RAW-AT-1M+123
pm_fill "$d" 67108864 65536 pcow-fill-64M-
pm_write "$d" 268431360 PCOW-RAW-LAST-4K
pm_drop_caches
pm_check "$d" 0 PCOW-RAW-AT-0
pm_check "$d" 1048699 PCOW-RAW-AT-1M+123
pm_check_fill "$d" 67108864 65536 pcow-fill-64M-
pm_check "$d" 268431360 PCOW-RAW-LAST-4K
