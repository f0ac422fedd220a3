package userdata

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// script is the runcmd entry. cloud-init writes runcmd entries into one
// /bin/sh script (string entries verbatim, in order) that the scripts-user
// module runs in the final stage; the module fails when the script exits
// non-zero. So that a failure can never be masked by whatever runs after
// this entry (runcmd lists from other parts may be appended), every step
// that can fail ends the script itself with a message and a non-zero exit
// status. `set -e` is deliberately not used: it would leak into those other
// entries.
//
// Nothing here waits without bound: downloads fail after 60 seconds without
// progress, and apply queues systemd jobs without waiting for them
// (--no-block: containerd.service may be ordered after cloud-final, and
// waiting for it from inside cloud-final would deadlock).
func script(o *Options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w(`nodeprov_fail() { echo "nodeprov cloud-init: $*" >&2; exit 1; }`)
	w(`nodeprov_bin=%s`, shellQuote(o.BinaryPath))
	if o.BinaryURL != "" {
		// Download into a temporary file next to the target, verify it,
		// then make it executable and rename it into place, so that no
		// unverified byte is ever executable or at the final path. A
		// binary already there with the right digest is kept.
		w(`nodeprov_url=%s`, shellQuote(o.BinaryURL))
		w(`nodeprov_sha256=%s`, o.BinarySHA256)
		w(`if ! printf '%%s  %%s\n' "$nodeprov_sha256" "$nodeprov_bin" | sha256sum -c --status - 2>/dev/null; then`)
		w(`  mkdir -p "${nodeprov_bin%%/*}/" || nodeprov_fail "cannot create the directory of $nodeprov_bin"`)
		w(`  nodeprov_tmp=$(mktemp "$nodeprov_bin.XXXXXX") || nodeprov_fail "cannot create a temporary file next to $nodeprov_bin"`)
		w(`  if command -v curl >/dev/null 2>&1; then`)
		w(`    curl -fsSL --retry 5 --retry-connrefused --connect-timeout 30 --speed-limit 1 --speed-time 60 -o "$nodeprov_tmp" "$nodeprov_url"`)
		w(`  elif command -v wget >/dev/null 2>&1; then`)
		w(`    wget -q --tries=5 --timeout=60 -O "$nodeprov_tmp" "$nodeprov_url"`)
		w(`  else`)
		// cloud-init itself runs on python3, so it is always there.
		w(`    python3 -c 'import shutil, sys, urllib.request; shutil.copyfileobj(urllib.request.urlopen(sys.argv[1], timeout=60), open(sys.argv[2], "wb"))' "$nodeprov_url" "$nodeprov_tmp"`)
		w(`  fi || { rm -f "$nodeprov_tmp"; nodeprov_fail "downloading $nodeprov_url failed"; }`)
		w(`  printf '%%s  %%s\n' "$nodeprov_sha256" "$nodeprov_tmp" | sha256sum -c - >&2 || { rm -f "$nodeprov_tmp"; nodeprov_fail "$nodeprov_url does not have sha256 $nodeprov_sha256: not installed"; }`)
		w(`  chmod 0755 "$nodeprov_tmp" && mv -f "$nodeprov_tmp" "$nodeprov_bin" || { rm -f "$nodeprov_tmp"; nodeprov_fail "cannot install $nodeprov_bin"; }`)
		w(`fi`)
	} else {
		w(`[ -x "$nodeprov_bin" ] || nodeprov_fail "$nodeprov_bin is not on this image: build the image with it, or generate the user data with --binary-url and --binary-sha256"`)
	}
	// The report may name secrets' paths and proxy hosts: root only. It is
	// created before apply runs so that it never exists with wider modes.
	w(`nodeprov_report=%s`, ReportPath)
	w(`mkdir -p %s && : >"$nodeprov_report" && chmod 0600 "$nodeprov_report" || nodeprov_fail "cannot create $nodeprov_report"`, path.Dir(ReportPath))
	flags := "--no-block -o json"
	if o.RequirePinned {
		flags = "--no-block --require-pinned -o json"
	}
	w(`"$nodeprov_bin" apply %s %s >"$nodeprov_report" || { nodeprov_rc=$?; echo "nodeprov cloud-init: apply failed with exit code $nodeprov_rc; report: $nodeprov_report" >&2; exit "$nodeprov_rc"; }`, flags, SpecPath)
	return b.String()
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote quotes s for a POSIX shell, leaving it bare when that is
// unambiguous.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
