package cri

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
)

// The kubelet's configuration, where kubeadm and the kubelet's
// --config-dir put it.
const (
	KubeletConfig    = "/var/lib/kubelet/config.yaml"
	KubeletConfigDir = "/etc/kubernetes/kubelet.conf.d"
)

// kubeletSetting is one field of the kubelet's effective configuration
// and the file that set it last.
type kubeletSetting struct {
	value, file string
}

// kubeletSettings reads the KubeletConfiguration in root: config.yaml,
// then the *.conf drop-ins in lexical order, each overriding the fields it
// sets (the kubelet's --config-dir rule). It returns cgroupDriver and
// containerRuntimeEndpoint as far as some file sets them.
func kubeletSettings(root *host.Root) (map[string]kubeletSetting, error) {
	files := []string{KubeletConfig}
	names, err := root.ReadDir(KubeletConfigDir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".conf") {
			files = append(files, path.Join(KubeletConfigDir, n))
		}
	}
	out := map[string]kubeletSetting{}
	for _, f := range files {
		data, exists, err := root.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("kubelet configuration %s: %w", f, err)
		}
		if !exists {
			continue
		}
		var kc struct {
			Kind                     string `yaml:"kind"`
			CgroupDriver             string `yaml:"cgroupDriver"`
			ContainerRuntimeEndpoint string `yaml:"containerRuntimeEndpoint"`
		}
		if err := yaml.Unmarshal(data, &kc); err != nil {
			return nil, fmt.Errorf("kubelet configuration %s: %w", f, err)
		}
		if kc.Kind != "" && kc.Kind != "KubeletConfiguration" {
			continue
		}
		if kc.CgroupDriver != "" {
			out["cgroupDriver"] = kubeletSetting{kc.CgroupDriver, f}
		}
		if kc.ContainerRuntimeEndpoint != "" {
			out["containerRuntimeEndpoint"] = kubeletSetting{kc.ContainerRuntimeEndpoint, f}
		}
	}
	return out, nil
}

// Agreement is what nodeprov configures a CRI with that the kubelet must
// agree with, and where in the spec each value comes from.
type Agreement struct {
	// Runtime names the CRI in messages: "containerd", "cri-dockerd".
	Runtime string
	// Driver is the cgroup driver (systemd or cgroupfs), DriverFrom the
	// setting it comes from ("containerd.cgroupDriver: auto").
	Driver, DriverFrom string
	// Endpoint is the CRI socket as a unix:// URL, EndpointFrom the
	// setting it comes from.
	Endpoint, EndpointFrom string
}

// CheckKubelet compares the kubelet's configuration in the root with what
// nodeprov configures the node's CRI with. A disagreement is an error
// naming both files and both values, or a warning (through warnf) when
// preflight.ignore names the check (spec.CrossStageChecks).
func CheckKubelet(root *host.Root, want Agreement, specFile string, ignore spec.Preflight, warnf func(string, ...any)) error {
	settings, err := kubeletSettings(root)
	if err != nil {
		return err
	}
	var errs []string
	check := func(probe, name, ours, how string, same func(a, b string) bool) {
		s, ok := settings[name]
		if !ok || same(s.value, ours) {
			return
		}
		msg := fmt.Sprintf("%s: %s sets %s: %s, but nodeprov configures %s with %s (%s in %s); make them agree",
			probe, s.file, name, s.value, want.Runtime, ours, how, specFile)
		if e, ignored := ignore.Ignores(probe); ignored {
			warnf("%s (ignored by preflight.ignore %q)", msg, e)
			return
		}
		errs = append(errs, msg)
	}
	check("kubelet.cgroup-driver", "cgroupDriver", want.Driver, want.DriverFrom, func(a, b string) bool { return a == b })
	check("kubelet.runtime-endpoint", "containerRuntimeEndpoint", want.Endpoint, want.EndpointFrom, func(a, b string) bool {
		return strings.TrimPrefix(a, "unix://") == strings.TrimPrefix(b, "unix://")
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
