#!/bin/sh
# plot.sh -- draws the plots of docs/benchmarks.md from the data map_bench
# writes with -o (bench/run.sh does both).
#
#   bench/plot.sh DATADIR [IMGDIR]
#
# DATADIR holds disk-{first,open,vmas}.dat and tmpfs-{first,open,vmas}.dat
# (a plot is drawn from those there are); the PNG files go to IMGDIR
# (default docs/img):
#   first-write.png  first write: µs per block and pcow/raw vs block size
#   open-map.png     pcow_open + pcow_map_new vs allocated blocks
#   vmas.png         VMAs vs blocks written in random order
# Needs gnuplot (Debian: gnuplot-nox).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 DATADIR [IMGDIR]" >&2
	exit 2
fi
DATA=$1
IMG=${2:-docs/img}
mkdir -p "$IMG"

# The file system a data file was measured on ("# fs: ext4").
fs_of() {
	sed -n 's/^# fs: //p' "$1" | head -n 1
}

# The runs (disk, tmpfs) that have data for plot $1; sets runs and n.
runs_with() {
	runs=
	for r in disk tmpfs; do
		if [ -e "$DATA/$r-$1.dat" ]; then
			runs="$runs $r"
		fi
	done
	n=$(echo $runs | wc -w)
}
wrote=

common='set terminal pngcairo size %W%,%H% font "DejaVu Sans,10" noenhanced
set grid lc rgb "#dddddd"
set key top left box opaque
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set style line 2 lc rgb "#1f77b4" lw 2 pt 6 ps 0.8 dt 2
set style line 3 lc rgb "#d62728" lw 2 pt 5 ps 0.8
set style line 4 lc rgb "#d62728" lw 2 pt 4 ps 0.8 dt 2
set style line 5 lc rgb "#2ca02c" lw 2 pt 9 ps 0.8
set style line 9 lc rgb "#555555" lw 1 dt 3'

# ---- first write ------------------------------------------------------------
runs_with first
[ "$n" -eq 0 ] || {
	echo "$common" | sed "s/%W%/$((600 * n))/; s/%H%/900/"
	echo "set output '$IMG/first-write.png'"
	echo "set multiplot layout 2,$n title 'First write to unallocated blocks: new pcow image vs new sparse raw file (one 8-byte store per 4 KiB page)'"
	for r in $runs; do
		f=$DATA/$r-first.dat
		echo "set logscale xy 2"
		echo "set xtics ('4K' 4096, '16K' 16384, '64K' 65536, '256K' 262144, '1M' 1048576, '2M' 2097152)"
		echo "set format y '%g'"
		echo "set xlabel 'block size (bytes)'"
		echo "set ylabel 'µs per block (thread CPU time)'"
		echo "set title '$(fs_of "$f"): time per block'"
		echo "plot '$f' index 0 using 1:2 with linespoints ls 1 title 'pcow, sequential', \\"
		echo "     '$f' index 0 using 1:3 with linespoints ls 2 title 'raw mmap, sequential', \\"
		echo "     '$f' index 1 using 1:2 with linespoints ls 3 title 'pcow, shuffled', \\"
		echo "     '$f' index 1 using 1:3 with linespoints ls 4 title 'raw mmap, shuffled'"
	done
	for r in $runs; do
		f=$DATA/$r-first.dat
		echo "unset logscale y"
		echo "set yrange [0:*]"
		echo "set ylabel 'pcow time / raw time'"
		echo "set title '$(fs_of "$f"): ratio (goal: at most 1.5 at 64 KiB), bars: per-repeat range'"
		echo "plot '$f' index 0 using 1:6:7:8 with yerrorlines ls 1 title 'sequential', \\"
		echo "     '$f' index 1 using 1:6:7:8 with yerrorlines ls 3 title 'shuffled', \\"
		echo "     1.5 with lines ls 9 title 'goal 1.5', 1 with lines lc rgb '#999999' notitle"
		echo "set autoscale y"
	done
	echo "unset multiplot"
} | gnuplot
[ "$n" -eq 0 ] || wrote="$wrote $IMG/first-write.png"

# ---- open and map -----------------------------------------------------------
runs_with open
[ "$n" -eq 0 ] || {
	echo "$common" | sed "s/%W%/$((600 * n))/; s/%H%/550/"
	echo "set output '$IMG/open-map.png'"
	echo "set multiplot layout 1,$n title 'Opening and mapping an image against its allocated 4 KiB blocks'"
	for r in $runs; do
		f=$DATA/$r-open.dat
		echo "unset label"
		echo "set logscale xy 10"
		echo "set xtics ('1k' 1000, '10k' 10000, '100k' 100000, '1M' 1000000)"
		echo "set format y '%g'"
		echo "set xrange [500:2000000]"
		echo "set yrange [0.001:1e6]"
		echo "set xlabel 'allocated blocks'"
		echo "set ylabel 'ms (wall clock)'"
		echo "set title '$(fs_of "$f")'"
		# A map that failed has NaN times: say so where its point would be.
		awk '!/^#/ && NF && $6 == "NaN" {
			n = $1 >= 1000000 ? ($1 / 1000000) "M" : $1 >= 1000 ? ($1 / 1000) "k" : $1
			printf "set label \"spread, %s blocks inherited:\\npcow_map_new fails (ENOMEM)\" at %s,2000 right offset -1,0 textcolor rgb \"#2ca02c\"\n", n, $1
			printf "set arrow from %s,1500 to %s,300 lc rgb \"#2ca02c\" lw 2\n", $1, $1
		}' "$f"
		echo "plot '$f' index 0 using 1:4 with linespoints ls 1 title 'pcow_open + pcow_map_new, blocks owned', \\"
		echo "     '$f' index 0 using 1:8 with linespoints ls 3 title '... blocks inherited (after a snapshot)', \\"
		echo "     '$f' index 1 using 1:8 with linespoints ls 5 title '... inherited, blocks spread (every k-th)', \\"
		echo "     '$f' index 0 using 1:5 with linespoints ls 2 title 'raw file: open + mmap', \\"
		echo "     100 with lines ls 9 title 'goal: 100 ms'"
		echo "unset arrow"
	done
	echo "unset multiplot"
} | gnuplot
[ "$n" -eq 0 ] || wrote="$wrote $IMG/open-map.png"

# ---- VMAs -------------------------------------------------------------------
runs_with vmas
[ "$n" -eq 0 ] || {
	echo "$common" | sed "s/%W%/$((600 * n))/; s/%H%/500/"
	echo "set output '$IMG/vmas.png'"
	echo "set multiplot layout 1,$n title 'VMAs of the mapped range after stores to distinct 4 KiB blocks in random order'"
	for r in $runs; do
		f=$DATA/$r-vmas.dat
		budget=$(sed -n 's/^# VMAs after random writes.*budget \([0-9]*\).*/\1/p' "$f")
		echo "set logscale y 10"
		echo "unset logscale x"
		echo "set xtics autofreq"
		echo "set format y '%g'"
		# Room above the curves for the key.
		echo "set yrange [0.8:$budget * 40]"
		echo "set xrange [0:*]"
		echo "set key top right box opaque"
		echo "set xlabel 'blocks written'"
		echo "set ylabel 'VMAs'"
		echo "set title '$(fs_of "$f"), VMA budget $budget'"
		echo "plot '$f' using 1:3 with linespoints ls 3 title 'copy-on-write over a full backing file', \\"
		echo "     '$f' using 1:2 with linespoints ls 1 title 'allocate-on-write (no backing file)', \\"
		echo "     $budget with lines ls 9 title 'budget', \\"
		echo "     $budget * 5 / 3 with lines lc rgb '#999999' dt 2 title 'bound: budget + 2/3 budget'"
	done
	echo "unset multiplot"
} | gnuplot
[ "$n" -eq 0 ] || wrote="$wrote $IMG/vmas.png"

if [ -z "$wrote" ]; then
	echo "plot.sh: no plot data in $DATA (bench/run.sh writes it)" >&2
else
	echo "plot.sh: wrote$wrote"
fi
