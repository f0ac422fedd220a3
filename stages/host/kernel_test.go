package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel returns a Kernel over an empty fake /proc, /sys and
// /lib/modules for release "6.1.0-test".
func fakeKernel(t *testing.T) *Kernel {
	t.Helper()
	dir := t.TempDir()
	k := &Kernel{
		ProcDir:    filepath.Join(dir, "proc"),
		SysDir:     filepath.Join(dir, "sys"),
		ModulesDir: filepath.Join(dir, "lib/modules"),
		Release:    "6.1.0-test",
	}
	for _, d := range []string{k.ProcDir + "/sys", k.SysDir + "/module", filepath.Join(k.ModulesDir, k.Release)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func writeFake(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key     string
		want    string
		wantErr bool
	}{
		{key: "net.ipv4.ip_forward", want: "net/ipv4/ip_forward"},
		{key: "kernel.osrelease", want: "kernel/osrelease"},
		{key: "vm.max_map_count", want: "vm/max_map_count"},
		{key: "net.bridge.bridge-nf-call-iptables", want: "net/bridge/bridge-nf-call-iptables"},
		{key: "net.ipv4.conf.eth0/100.rp_filter", want: "net/ipv4/conf/eth0.100/rp_filter"},
		{key: "net.ipv6.conf.all.forwarding", want: "net/ipv6/conf/all/forwarding"},
		{key: "fs", want: "fs"},
		{key: "", wantErr: true},
		{key: ".net", wantErr: true},
		{key: "net.", wantErr: true},
		{key: "net..ipv4", wantErr: true},
		{key: "net.ipv4.conf./.x", wantErr: true},  // component "."
		{key: "net.ipv4.conf.//.x", wantErr: true}, // component ".."
		{key: "net.ipv4\x00.x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := SysctlPath(tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("SysctlPath(%q) = %q, want an error", tt.key, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("SysctlPath(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
			}
		})
	}
}

func TestNormalizeSysctl(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1\n", "1"},
		{"  1  ", "1"},
		{"4096\t131072\t6291456\n", "4096 131072 6291456"},
		{"4096   131072 \t 6291456", "4096 131072 6291456"},
		{"", ""},
		{"\n", ""},
	}
	for _, tt := range tests {
		if got := NormalizeSysctl(tt.in); got != tt.want {
			t.Errorf("NormalizeSysctl(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadSysctl(t *testing.T) {
	k := fakeKernel(t)
	writeFake(t, k.ProcDir+"/sys/net/ipv4/ip_forward", "0\n")
	writeFake(t, k.ProcDir+"/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n")
	writeFake(t, k.ProcDir+"/sys/net/ipv4/conf/eth0.100/rp_filter", "2\n")
	tests := []struct {
		key        string
		want       string
		wantExists bool
		wantErr    bool
	}{
		{key: "net.ipv4.ip_forward", want: "0", wantExists: true},
		{key: "net.ipv4.tcp_rmem", want: "4096 131072 6291456", wantExists: true},
		{key: "net.ipv4.conf.eth0/100.rp_filter", want: "2", wantExists: true},
		{key: "net.bridge.bridge-nf-call-iptables"},
		{key: "net.ipv4..x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, exists, err := k.ReadSysctl(tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil || got != tt.want || exists != tt.wantExists {
				t.Errorf("ReadSysctl(%q) = %q, %v, %v; want %q, %v", tt.key, got, exists, err, tt.want, tt.wantExists)
			}
		})
	}
}

func TestWriteSysctl(t *testing.T) {
	k := fakeKernel(t)
	writeFake(t, k.ProcDir+"/sys/net/ipv4/ip_forward", "0\n")
	writeFake(t, k.ProcDir+"/sys/vm/max_map_count", "65530\n")
	writeFake(t, k.ProcDir+"/sys/net/ipv4/conf/eth0.100/rp_filter", "2\n")
	// /dev/full refuses every write (ENOSPC), standing in for a kernel
	// refusing a value.
	if err := os.Symlink("/dev/full", k.ProcDir+"/sys/vm/refuse"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, value string
		file       string // file below ProcDir/sys that must hold value+"\n"
		wantErr    string
	}{
		{key: "net.ipv4.ip_forward", value: "1", file: "net/ipv4/ip_forward"},
		{key: "vm.max_map_count", value: "1", file: "vm/max_map_count"}, // shorter than before
		{key: "net.ipv4.conf.eth0/100.rp_filter", value: "0", file: "net/ipv4/conf/eth0.100/rp_filter"},
		{
			key: "net.bridge.bridge-nf-call-iptables", value: "1",
			wantErr: "sysctl net.bridge.bridge-nf-call-iptables: no such key in " + k.ProcDir + "/sys (is the module providing it loaded?)",
		},
		{
			key: "net.ipv4.no_such_key", value: "1",
			wantErr: "sysctl net.ipv4.no_such_key: no such key in",
		},
		{key: "vm.refuse", value: "x", wantErr: `sysctl vm.refuse: kernel refused value "x": no space left on device`},
		{key: "vm.max_map_count", value: "1\n2", wantErr: "newline"},
		{key: "vm..x", value: "1", wantErr: "invalid component"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			err := k.WriteSysctl(tt.key, tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(k.ProcDir, "sys", tt.file))
			if err != nil || string(data) != tt.value+"\n" {
				t.Errorf("%s = %q, %v; want %q", tt.file, data, err, tt.value+"\n")
			}
		})
	}
	for _, p := range []string{"net/bridge", "net/ipv4/no_such_key"} {
		if _, err := os.Stat(filepath.Join(k.ProcDir, "sys", p)); err == nil {
			t.Errorf("writing a missing key created %s", p)
		}
	}
}

func TestModuleState(t *testing.T) {
	const procModules = "nf_conntrack 192512 1 br_netfilter, Live 0x0000000000000000\n" +
		"br_netfilter 32768 0 - Live 0x0000000000000000\n"
	const builtin = "kernel/fs/overlayfs/overlay.ko\nkernel/net/ipv4/ip-tunnel.ko\n"
	const modinfo = "ext4.alias=fs-ext4\x00ext4.file=fs/ext4/ext4\x00nf_tables.license=GPL\x00"
	tests := []struct {
		name        string
		noSupport   bool // no ProcDir/modules
		sysModules  []string
		builtinList string // "" for no modules.builtin file
		modinfo     string // "" for no modules.builtin.modinfo file
		module      string
		want        ModuleState
		wantErr     bool
	}{
		{name: "loaded", module: "br_netfilter", want: ModuleLoaded},
		{name: "loaded, dash spelling", module: "br-netfilter", want: ModuleLoaded},
		{name: "loaded and in /sys/module", sysModules: []string{"br_netfilter"}, module: "br_netfilter", want: ModuleLoaded},
		{name: "builtin via modules.builtin", builtinList: builtin, module: "overlay", want: ModuleBuiltin},
		{name: "builtin via modules.builtin, underscore spelling", builtinList: builtin, module: "ip_tunnel", want: ModuleBuiltin},
		{name: "builtin via modinfo", modinfo: modinfo, module: "nf-tables", want: ModuleBuiltin},
		{name: "builtin via /sys/module", sysModules: []string{"overlay"}, module: "overlay", want: ModuleBuiltin},
		{name: "absent with module support", builtinList: builtin, modinfo: modinfo, module: "vxlan", want: ModuleAbsent},
		{name: "absent, no lists", module: "vxlan", want: ModuleAbsent},
		{name: "prefix is not a match", builtinList: builtin, module: "overlayfs", want: ModuleAbsent},
		{name: "no support, builtin via /sys/module", noSupport: true, sysModules: []string{"overlay"}, module: "overlay", want: ModuleBuiltin},
		{name: "no support, builtin via modules.builtin", noSupport: true, builtinList: builtin, module: "overlay", want: ModuleBuiltin},
		{name: "no support, unconfirmed", noSupport: true, sysModules: []string{"overlay"}, module: "br_netfilter", want: ModuleAssumedBuiltin},
		{name: "no support, unconfirmed, dash", noSupport: true, module: "br-netfilter", want: ModuleAssumedBuiltin},
		{name: "invalid name", module: "../x", wantErr: true},
		{name: "empty name", module: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeKernel(t)
			if !tt.noSupport {
				writeFake(t, k.ProcDir+"/modules", procModules)
			}
			for _, m := range tt.sysModules {
				if err := os.MkdirAll(filepath.Join(k.SysDir, "module", m, "parameters"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			rel := filepath.Join(k.ModulesDir, k.Release)
			if tt.builtinList != "" {
				writeFake(t, rel+"/modules.builtin", tt.builtinList)
			}
			if tt.modinfo != "" {
				writeFake(t, rel+"/modules.builtin.modinfo", tt.modinfo)
			}
			if got := k.ModuleSupport(); got != !tt.noSupport {
				t.Errorf("ModuleSupport() = %v", got)
			}
			got, err := k.ModuleState(tt.module)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ModuleState(%q) = %v, want an error", tt.module, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ModuleState(%q) = %v, %v; want %v", tt.module, got, err, tt.want)
			}
		})
	}
}

func TestModuleStateString(t *testing.T) {
	for s, want := range map[ModuleState]string{
		ModuleAbsent: "absent", ModuleLoaded: "loaded", ModuleBuiltin: "builtin",
		ModuleAssumedBuiltin: "assumed builtin", ModuleState(9): "ModuleState(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
}

func TestLoadModule(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	ok := filepath.Join(dir, "modprobe-ok")
	writeFake(t, ok, "#!/bin/sh\necho \"$@\" > "+args+"\n")
	bad := filepath.Join(dir, "modprobe-bad")
	writeFake(t, bad, "#!/bin/sh\necho \"modprobe: FATAL: Module $2 not found in directory /lib/modules/x\" >&2\nexit 1\n")
	for _, p := range []string{ok, bad} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		modprobe string
		module   string
		wantArgs string
		wantErr  string
	}{
		{name: "loads", modprobe: ok, module: "br_netfilter", wantArgs: "-- br_netfilter\n"},
		{name: "name that looks like a flag", modprobe: ok, module: "-r", wantArgs: "-- -r\n"},
		{name: "stderr in the error", modprobe: bad, module: "nosuch", wantErr: "Module nosuch not found"},
		{name: "missing binary", modprobe: filepath.Join(dir, "none"), module: "x", wantErr: "no such file"},
		{name: "invalid name", modprobe: ok, module: "a/b", wantErr: "invalid module name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(args)
			k := &Kernel{Modprobe: tt.modprobe}
			err := k.LoadModule(context.Background(), tt.module)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(args); string(got) != tt.wantArgs {
				t.Errorf("modprobe args = %q, want %q", got, tt.wantArgs)
			}
		})
	}
}

// TestRealOSRelease reads a real sysctl of the running kernel.
func TestRealOSRelease(t *testing.T) {
	requireRoot(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	got, exists, err := NewKernel().ReadSysctl("kernel.osrelease")
	if err != nil || !exists {
		t.Fatalf("ReadSysctl(kernel.osrelease) = %q, %v, %v", got, exists, err)
	}
	if want := unix.ByteSliceToString(u.Release[:]); got != want {
		t.Errorf("kernel.osrelease = %q, uname says %q", got, want)
	}
}
