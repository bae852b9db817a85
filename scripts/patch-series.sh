# shellcheck shell=bash disable=SC2154  # the caller sets the variables named below
# Shared by qemu/build.sh and libvirt/build.sh (sourced): applying a patch
# series to an unpacked source tree so that a change to the series rebuilds
# only what it touches.
#
# The caller sets, before calling apply_patches:
#   src_dir      the source tree (the applied series is kept in
#                $src_dir/.pcow-patches)
#   here         the directory holding patches/*.patch (or patch_dir: the
#                directory of the *.patch files themselves)
#   times_file   a scratch file for the files' times
# and defines log(), die() and extract_source (a fresh tree with an empty
# $src_dir/.pcow-patches).

# Reverts the series applied earlier (saved in .pcow-patches) and applies
# the current one.  Only the files the patches touch change, so a rebuild
# stays incremental.  Falls back to a fresh source tree when reverting
# fails.
apply_patches() {
	local applied="$src_dir/.pcow-patches" p list
	if [ ! -d "$applied" ]; then
		extract_source
	fi
	# Nothing to do when the applied series is the current one.
	if diff -rq "$applied" "${patch_dir:-$here/patches}" >/dev/null 2>&1; then
		return
	fi
	list=$(ls "$applied"/*.patch 2>/dev/null | sort -r || true)
	# Reverting and reapplying rewrites every file of the series; a file
	# whose content comes out the same gets its old time back, so that
	# ninja does not rebuild everything that includes it.
	local times="$times_file"
	(cd "$src_dir" && touched_files "$applied" |
		while read -r f; do
			[ -f "$f" ] && printf '%s %s %s\n' \
				"$(stat -c %.9Y "$f")" \
				"$(sha256sum < "$f" | cut -d' ' -f1)" "$f"
		done) > "$times" || true
	for p in $list; do
		log "reverting $(basename "$p")"
		if ! patch -d "$src_dir" -p1 -R -s -f --no-backup-if-mismatch \
			< "$p"; then
			log "reverting failed; starting from a fresh source tree"
			extract_source
			break
		fi
		rm -f "$p"
	done
	rm -rf "$applied"
	mkdir -p "$applied.new"
	for p in "${patch_dir:-$here/patches}"/*.patch; do
		[ -e "$p" ] || continue
		log "applying $(basename "$p")"
		patch -d "$src_dir" -p1 -N -s --no-backup-if-mismatch < "$p" ||
			die "$(basename "$p") does not apply"
		cp "$p" "$applied.new/"
	done
	mv "$applied.new" "$applied"
	restore_times "$times"
}

# The files a directory of patches changes (paths relative to the tree).
touched_files() {
	cat "$1"/*.patch 2>/dev/null |
		sed -n 's|^+++ [^/]*/\([^\t ]*\).*|\1|p' | sort -u
}

# Gives each file listed with its old time and checksum its old time back
# when its content is unchanged.
restore_times() {
	local t sum f
	[ -f "$1" ] || return 0
	while read -r t sum f; do
		[ -f "$src_dir/$f" ] || continue
		[ "$(sha256sum < "$src_dir/$f" | cut -d' ' -f1)" = "$sum" ] ||
			continue
		touch -d "@$t" "$src_dir/$f"
	done < "$1"
	rm -f "$1"
}
