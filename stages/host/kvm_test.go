package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProbeKVMNotADevice(t *testing.T) {
	dir := t.TempDir()
	missing := ProbeKVM(filepath.Join(dir, "kvm"))
	if missing.Exists || missing.Err == nil || !strings.Contains(missing.Err.Error(), "no such file") {
		t.Errorf("missing node: %+v", missing)
	}
	// A regular file opens but answers no ioctl.
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k := ProbeKVM(p)
	if !k.Exists || k.CreatedVM || k.Err == nil || !strings.Contains(k.Err.Error(), "KVM_GET_API_VERSION on "+p) {
		t.Errorf("regular file: %+v", k)
	}
}

// TestProbeKVMHost asks the machine's own /dev/kvm: where it opens, the
// API version must be 12 and the answer must be consistent.
func TestProbeKVMHost(t *testing.T) {
	k := ProbeKVM("/dev/kvm")
	t.Logf("/dev/kvm: exists %v, API %d, VM %v, err %v", k.Exists, k.APIVersion, k.CreatedVM, k.Err)
	if _, err := os.Stat("/dev/kvm"); (err == nil) != k.Exists {
		t.Errorf("Exists = %v, stat says %v", k.Exists, err)
	}
	if k.CreatedVM != (k.Err == nil) || (k.CreatedVM && k.APIVersion != KVMAPIVersion) {
		t.Errorf("inconsistent answer %+v", k)
	}
}
