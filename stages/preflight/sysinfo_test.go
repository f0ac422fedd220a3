package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestSysinfoJSON(t *testing.T) {
	f := newFake(t)
	f.rootFile("usr/bin/mount", "not executable")
	rep := f.sysinfo(true)
	if rep.OK {
		t.Fatal("OK with a required probe failing")
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Probes []map[string]any `json:"probes"`
		OK     *bool            `json:"ok"`
	}
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.OK == nil || *decoded.OK {
		t.Errorf("ok = %v in %s", decoded.OK, data)
	}
	for _, p := range decoded.Probes {
		for _, key := range []string{"name", "required", "status", "message"} {
			if _, ok := p[key]; !ok {
				t.Errorf("probe %v lacks %q", p, key)
			}
		}
		if _, ok := p["ignored"]; ok {
			t.Errorf("probe %v: ignored should be omitted when false", p)
		}
	}
	if !strings.Contains(string(data), `{"name":"binary.mount","required":true,"status":"fail","message":"mount not found`) {
		t.Errorf("JSON lacks the failed probe: %s", data)
	}
}

func TestSysinfoIgnore(t *testing.T) {
	f := newFake(t)
	f.rootFile("usr/bin/mount", "not executable")
	rep := f.sysinfo(true, "binary")
	if !rep.OK {
		t.Errorf("ignored failure still fails the report: %v", rep.Failed())
	}
	if r := result(t, rep, "binary.mount"); !r.Ignored || r.Status != StatusFail {
		t.Errorf("binary.mount = %+v, want an ignored failure", r)
	}
	_, err := Sysinfo(context.Background(), Options{RootDir: f.root, Host: f.host, Ignore: []string{"binaries"}})
	if err == nil || !strings.Contains(err.Error(), "binaries: no such probe") {
		t.Errorf("unknown ignore entry: err = %v", err)
	}
}

func TestSysinfoOfflineByDefault(t *testing.T) {
	f := newFake(t)
	rep, err := Sysinfo(context.Background(), Options{RootDir: f.root, Host: f.host})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, rep, "kernel.release", StatusDeferred, "deferred to first boot")
	if _, err := Sysinfo(context.Background(), Options{RootDir: f.root + "/missing"}); err == nil {
		t.Error("a missing root is not an error")
	}
}

func TestWriteText(t *testing.T) {
	rep := &Report{Probes: []ProbeResult{
		{Name: "kernel.release", Required: true, Status: StatusPass, Message: "found 6.18.44"},
		{Name: "swap", Status: StatusWarn, Message: "on: /swapfile"},
		{Name: "binary.mount", Required: true, Status: StatusFail, Message: "mount not found"},
		{Name: "binary.umount", Required: true, Status: StatusFail, Message: "umount not found", Ignored: true},
	}}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `PASS  kernel.release  required  found 6.18.44
WARN  swap            advisory  on: /swapfile
FAIL  binary.mount    required  mount not found
FAIL  binary.umount   required  umount not found (ignored)
not ok: required probes failed: binary.mount
`
	if buf.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	(&Report{OK: true}).WriteText(&buf)
	if buf.String() != "ok\n" {
		t.Errorf("empty report text = %q", buf.String())
	}
}

// TestRealMachine runs sysinfo on the machine the tests run on, which
// shared/FACTS.md describes: no module support, cgroup v1 hybrid,
// /proc/config.gz with overlayfs built in.
func TestRealMachine(t *testing.T) {
	if _, err := os.Stat("/proc/config.gz"); err != nil {
		t.Skipf("this host has no /proc/config.gz (%v): the facts below are about the CI machine", err)
	}
	live := true
	rep, err := Sysinfo(context.Background(), Options{RootDir: "/", Live: &live})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("sysinfo on this machine:\n%s", text.String())

	expect(t, rep, "kernel.modules", StatusPass, "kernel has no module support: all modules builtin")
	expect(t, rep, "binary.modprobe", StatusPass, "not needed")
	expect(t, rep, "cgroups.version", StatusWarn, "cgroup v1 hybrid (unified at /sys/fs/cgroup/unified)")
	expect(t, rep, "cgroups.controllers", StatusPass, "(v1)")
	expect(t, rep, "kernel.config", StatusPass, "/proc/config.gz")
	expect(t, rep, "kernel.config.CONFIG_OVERLAY_FS", StatusPass, "CONFIG_OVERLAY_FS=y builtin")
	expect(t, rep, "proc.mounted", StatusPass, "proc at /proc")
	expect(t, rep, "kernel.release", StatusPass, "found ")
	if !rep.OK {
		t.Errorf("required probes fail on this machine: %+v", rep.Failed())
	}
}
