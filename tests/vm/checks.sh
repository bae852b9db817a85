# shellcheck shell=bash disable=SC2034  # passed/failed are the caller's
# Result counting for the VM test scripts (e2e.sh, libvirt.sh): source it
# after setting T, the test's work directory.
#   ok WHAT, bad WHAT          count a passed / failed check and print it
#   check WHAT COMMAND...      runs COMMAND; its output is shown on failure
passed=0 failed=0

ok() { echo "  ok: $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL: $*"; failed=$((failed + 1)); }
check() { # DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >"$T/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/      /' "$T/out"; fi
}
