package units

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// FirstBoot makes an image provision itself when it boots: besides the
// spec's own units, the stage installs the running nodeprov at
// FirstBootBinary, the spec at FirstBootSpec (and the run's pins at
// FirstBootLock), and the enabled FirstBootUnitName that applies that spec
// live on the first boot. They are ordinary actions: plan and check show
// them and a re-apply leaves them alone.
type FirstBoot struct {
	// Binary is the nodeprov executable to install (a host path); empty
	// means the running one (os.Executable). It must be built for the
	// target's architecture.
	Binary string
	// Spec is the spec's source, installed byte for byte.
	Spec []byte
	// Lock is the lock file to install next to it; nil means this run used
	// no pins, and a lock file left there by an earlier run is removed so
	// that first boot does not verify against stale digests.
	Lock []byte
	// RequirePinned makes the first-boot apply refuse same-origin digests
	// too (the image build's --require-pinned holds on the booted host).
	RequirePinned bool
}

// firstBootUnit is the unit the stage adds for FirstBoot: enabled, and
// never started, stopped or restarted by the stage (it runs nodeprov, so a
// restart from inside a run would wait for this run's lock forever).
func (fb *FirstBoot) unit() spec.Unit {
	on := true
	return spec.Unit{Name: FirstBootUnitName, Contents: string(FirstBootUnit(FirstBootBinary, FirstBootSpec, fb.RequirePinned)), Enabled: &on}
}

// firstBootFiles plans the binary, the spec and the lock file of FirstBoot.
func (p *planner) firstBootFiles() ([]*plan.Action, error) {
	fb := p.s.FirstBoot
	if p.env.Arch != "" && p.env.Arch != runtime.GOARCH {
		return nil, fmt.Errorf("first-boot unit: this nodeprov is built for %s but the target is %s: install it with the %s build of nodeprov", runtime.GOARCH, p.env.Arch, p.env.Arch)
	}
	bin, err := planBinary(p.root, fb.Binary)
	if err != nil {
		return nil, fmt.Errorf("first-boot unit: %w", err)
	}
	sp, err := plan.PlanFile(p.root, "firstboot spec "+FirstBootSpec, plan.FileSpec{Path: FirstBootSpec, Data: fb.Spec, Mode: 0o600})
	if err != nil {
		return nil, fmt.Errorf("first-boot unit: %w", err)
	}
	var lock *plan.Action
	if fb.Lock != nil {
		lock, err = plan.PlanFile(p.root, "firstboot lock "+FirstBootLock, plan.FileSpec{Path: FirstBootLock, Data: fb.Lock, Mode: 0o644})
	} else {
		lock, err = plan.PlanRemove(p.root, "firstboot lock "+FirstBootLock, FirstBootLock)
		if err == nil && lock.Op.Changes() {
			lock.Detail = "this run used no lock file"
		} else if err == nil {
			lock.Detail = "none: this run used no lock file"
		}
	}
	if err != nil {
		return nil, fmt.Errorf("first-boot unit: %w", err)
	}
	return []*plan.Action{bin, sp, lock}, nil
}

// planBinary plans copying src (a host path; "" is the running executable)
// to FirstBootBinary in the root, mode 0755 and owned by root: nothing when
// the file there has the same digest, as when the image's own nodeprov
// runs. The copy streams and is verified against the planned digest, so a
// binary replaced meanwhile is an error, not a silent mix.
func planBinary(root *host.Root, src string) (*plan.Action, error) {
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the running nodeprov: %w", err)
		}
		src = exe
	}
	want, size, err := digestFile(os.Open(src))
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "firstboot binary " + FirstBootBinary, Paths: []string{FirstBootBinary}}
	from := fmt.Sprintf("%s (%d bytes) from %s", shortDigest(want), size, src)
	a.Run = func(context.Context) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := root.WriteFileFrom(FirstBootBinary, io.TeeReader(f, h), host.WriteOptions{Mode: 0o755, UID: 0, GID: 0}); err != nil {
			return err
		}
		if got := hexSum(h); got != want {
			return fmt.Errorf("%s changed while it was copied (sha256 %s, planned %s): run again", src, got, want)
		}
		return nil
	}
	st, err := root.Lstat(FirstBootBinary)
	switch {
	case err != nil:
		return nil, err
	case !st.Exists:
		a.Op, a.Detail = plan.OpCreate, from
		return a, nil
	case st.Type == fs.ModeSymlink:
		a.Op, a.Detail = plan.OpUpdate, fmt.Sprintf("replace symlink (-> %s) with %s", st.LinkTarget, from)
		return a, nil
	case st.Type != 0:
		return nil, fmt.Errorf("%s exists and is a %s, not a regular file; remove it", FirstBootBinary, plan.TypeName(st.Type))
	}
	have := ""
	if st.Size == size {
		if have, _, err = digestFile(root.Open(FirstBootBinary)); err != nil {
			return nil, err
		}
	}
	if have != want {
		a.Op, a.Detail = plan.OpUpdate, "contents -> "+from
		return a, nil
	}
	var meta []string
	if st.Mode != 0o755 {
		meta = append(meta, fmt.Sprintf("mode %s -> 0755", plan.Octal(st.Mode)))
	}
	if st.UID != 0 || st.GID != 0 {
		meta = append(meta, fmt.Sprintf("owner %d:%d -> 0:0", st.UID, st.GID))
	}
	if len(meta) == 0 {
		a.Op, a.Detail, a.Run = plan.OpNone, "matches "+shortDigest(want), nil
		return a, nil
	}
	a.Op, a.Detail = plan.OpUpdate, strings.Join(meta, ", ")
	a.Run = func(context.Context) error {
		if err := root.Chown(FirstBootBinary, 0, 0); err != nil {
			return err
		}
		return root.Chmod(FirstBootBinary, 0o755)
	}
	return a, nil
}

// digestFile returns the sha256 (hex) and size of an opened file.
func digestFile(f *os.File, err error) (string, int64, error) {
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return hexSum(h), n, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

func shortDigest(hex string) string { return "sha256:" + hex[:12] }

// First-boot unit: name, the files it runs, and the files it reads and
// writes on the booted host.
const (
	FirstBootUnitName = "nodeprov-firstboot.service"
	// FirstBootBinary is where the image gets the nodeprov that runs it.
	FirstBootBinary = "/usr/local/bin/nodeprov"
	// FirstBootSpec is the spec the first boot applies; it may hold
	// credentials (a proxy), so only root reads it.
	FirstBootSpec = "/etc/nodeprov/node.yaml"
	// FirstBootLock is the lock file next to it, which apply reads by
	// default.
	FirstBootLock = "/etc/nodeprov/nodeprov.lock"
	// FirstBootStamp is created after a successful first-boot apply.
	FirstBootStamp = "/var/lib/nodeprov/firstboot.done"
	// FirstBootReport receives the JSON report of every first-boot run,
	// appended in order (the last one is the latest). It is in /var/log,
	// which every image has: see FirstBootUnit.
	FirstBootReport = "/var/log/nodeprov-firstboot.json"
)

// FirstBootUnit renders nodeprov-firstboot.service for golden images: the
// image build applies the spec offline (files, links, deferred live steps)
// and seals the image; this unit runs the live parts once the image boots,
// `nodeprov apply --no-block -o json SPEC` (with --require-pinned when
// requirePinned). nodeprovPath and specPath are absolute paths as the
// booted host sees them.
//
// When it runs: on systemd's first boot (ConditionFirstBoot: /etc/machine-id
// was missing or "uninitialized", which is what `nodeprov seal` leaves), or
// on any boot until one run succeeded (FirstBootStamp is absent). The two
// conditions are alternatives ("|"): a failed first boot (network down) is
// retried on the next boot instead of never, and a clone of an image that
// was booted before sealing (and so carries a stamp) still runs on its own
// first boot. A run after success changes nothing anyway: apply converges.
//
// Ordering: after network-online.target (downloads not in the image) and
// systemd-machine-id-commit.service (the machine-id checks want the id
// the host keeps); before containerd.service and kubelet.service so they
// start with the provisioned configuration, kernel modules and sysctls.
// --no-block is required: nodeprov queues the start of containerd, which is
// ordered after this unit, and waiting for it would deadlock.
//
// Output: the report goes to FirstBootReport without a shell
// (StandardOutput=append:, systemd 240), progress and errors to the journal.
// StandardOutput applies to every command of the unit, so append (not
// truncate) keeps the report when the stamp is touched afterwards. systemd
// opens that file before it creates StateDirectory=, and fails the command
// (209/STDOUT) when the file's directory is missing: hence /var/log, not
// /var/lib/nodeprov, which `seal` or an image cleanup may have removed.
// StateDirectory= then creates /var/lib/nodeprov for the stamp, which is
// written by `touch` found in systemd's fixed search path (systemd 239).
func FirstBootUnit(nodeprovPath, specPath string, requirePinned bool) []byte {
	flags := "--no-block -o json"
	if requirePinned {
		flags = "--no-block --require-pinned -o json"
	}
	var b strings.Builder
	b.WriteString(plan.ManagedHeader)
	fmt.Fprintf(&b, `[Unit]
Description=nodeprov first-boot provisioning
Documentation=https://github.com/nodeprov/nodeprov
ConditionFirstBoot=|yes
ConditionPathExists=|!%s
Wants=network-online.target
After=network-online.target systemd-machine-id-commit.service
Before=containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%s apply %s %s
ExecStartPost=touch %s
StandardOutput=append:%s
StandardError=journal
StateDirectory=nodeprov
TimeoutStartSec=1h

[Install]
WantedBy=multi-user.target
`, FirstBootStamp, execArg(nodeprovPath), flags, execArg(specPath), FirstBootStamp, FirstBootReport)
	return []byte(b.String())
}
