package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// KVM ioctls (linux/kvm.h): _IO(KVMIO, 0x00) and _IO(KVMIO, 0x01).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
)

// KVMAPIVersion is the only KVM API version the kernel has reported since
// 2.6.22; any other answer is not KVM as hypervisors know it.
const KVMAPIVersion = 12

// KVM is what a KVM device node answered. Err is nil only when the node
// exists, opens read-write, reports API version 12 and creates a VM.
type KVM struct {
	// Path is the device node asked, normally /dev/kvm.
	Path string
	// Exists says whether the node is there at all.
	Exists bool
	// APIVersion is KVM_GET_API_VERSION's answer (0 when not asked).
	APIVersion int
	// CreatedVM says whether KVM_CREATE_VM returned a VM (closed at once).
	CreatedVM bool
	// Err says why the device is not usable.
	Err error
}

// ProbeKVM opens dev and asks it what a hypervisor would: its API version,
// then for a VM, which it closes at once. Creating a VM is the only way to
// know the kernel can really run one (a node with KVM unloaded or
// disabled in firmware still opens); an empty VM holds no guest memory.
func ProbeKVM(dev string) KVM {
	k := KVM{Path: dev}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		k.Exists = !errors.Is(err, fs.ErrNotExist)
		k.Err = &os.PathError{Op: "open", Path: dev, Err: err}
		return k
	}
	defer unix.Close(fd)
	k.Exists = true
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		k.Err = fmt.Errorf("KVM_GET_API_VERSION on %s: %w", dev, err)
		return k
	}
	k.APIVersion = v
	if v != KVMAPIVersion {
		k.Err = fmt.Errorf("%s reports KVM API version %d, not %d", dev, v, KVMAPIVersion)
		return k
	}
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		k.Err = fmt.Errorf("%s exists but KVM_CREATE_VM failed: %w", dev, err)
		return k
	}
	unix.Close(vm)
	k.CreatedVM = true
	return k
}
