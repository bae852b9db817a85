# shellcheck shell=bash disable=SC2154  # the caller sets the variables named below
# Shared by qemu/build.sh and libvirt/build.sh (sourced): installing build
# dependencies, and a private apt configuration that fetches Debian source
# packages of another release without touching the system's apt state.
#
# The caller sets, before sourcing:
#   apt_dir          directory of the private configuration and state
#   SOURCE_SUITE     the release sources come from (trixie)
#   EXTRA_SUITE      one more suite added next to it (bookworm-backports)
# and defines log() and die().

SYSTEM_SOURCES=${SYSTEM_SOURCES:-/etc/apt/sources.list.d/debian.sources}

# Installs the packages among "$@" that are missing (root only).
install_missing() {
	local p missing=
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		     grep -q '^install ok installed$'; then
			missing="$missing $p"
		fi
	done
	[ -n "$missing" ] || return 0
	log "installing missing build dependencies:$missing"
	[ "$(id -u)" = 0 ] || die "not root; install these first:$missing"
	# shellcheck disable=SC2086
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y \
		--no-install-recommends $missing; then
		apt-get update
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends $missing
	fi
}

# Rewrites the system's deb822 sources: every stanza also gets deb-src,
# and each suite of the system's release is replaced by the same suite of
# $SOURCE_SUITE (bookworm -> trixie, bookworm-security -> trixie-security...);
# the stanza carrying the release itself also gets $EXTRA_SUITE.
make_sources() {
	local release
	[ -r "$SYSTEM_SOURCES" ] || die "cannot read $SYSTEM_SOURCES"
	release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$release" ] || die "cannot tell the system's Debian release"
	awk -v rel="$release" -v qsuite="$SOURCE_SUITE" -v msuite="$EXTRA_SUITE" '
	/^[Tt]ypes:/ { print "Types: deb deb-src"; next }
	/^[Ss]uites:/ {
		out = ""
		for (i = 2; i <= NF; i++) {
			s = $i
			if (s == rel) {
				out = out " " qsuite " " msuite
			} else if (index(s, rel "-") == 1 && s != msuite) {
				out = out " " qsuite substr(s, length(rel) + 1)
			} else {
				out = out " " s
			}
		}
		print "Suites:" out
		next
	}
	{ print }
	' "$SYSTEM_SOURCES"
}

apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.sources"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir/cache"
	-o "APT::Sandbox::User=root"
)

private_apt() {
	apt-get "${apt_opts[@]}" "$@"
}

private_apt_cache() {
	apt-cache "${apt_opts[@]}" "$@"
}

setup_apt() {
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	make_sources > "$apt_dir/sources.sources.new"
	if ! cmp -s "$apt_dir/sources.sources.new" \
		"$apt_dir/sources.sources" 2>/dev/null ||
	   [ ! -f "$apt_dir/updated" ]; then
		mv "$apt_dir/sources.sources.new" "$apt_dir/sources.sources"
		rm -f "$apt_dir/updated"
		log "updating the private package lists"
		private_apt -q update
		touch "$apt_dir/updated"
	else
		rm -f "$apt_dir/sources.sources.new"
	fi
}

# Runs "$@" with the private apt; when it fails, refreshes the private
# lists once and retries (a stale list may name files the archive dropped).
with_fresh_lists() {
	if ! "$@"; then
		log "retrying after refreshing the private package lists"
		private_apt -q update
		"$@"
	fi
}

apt_ready=
need_apt() {
	if [ -z "$apt_ready" ]; then
		setup_apt
		apt_ready=1
	fi
}
