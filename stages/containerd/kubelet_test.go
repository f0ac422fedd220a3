package containerd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/stages/cri"
	"github.com/nodeprov/nodeprov/stages/plan"
)

func TestKubeletAgreement(t *testing.T) {
	const kubeadm = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: %s\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n"
	for _, tt := range []struct {
		name, driver, ignore string
		files                map[string]string
		wantErr, wantWarn    string
	}{
		{name: "agree", driver: "systemd",
			files: map[string]string{cri.KubeletConfig: strings.Replace(kubeadm, "%s", "systemd", 1)}},
		{name: "no kubelet configuration", driver: "systemd"},
		{name: "cgroup driver disagrees", driver: "systemd",
			files:   map[string]string{cri.KubeletConfig: strings.Replace(kubeadm, "%s", "cgroupfs", 1)},
			wantErr: "kubelet.cgroup-driver: /var/lib/kubelet/config.yaml sets cgroupDriver: cgroupfs, but nodeprov configures containerd with systemd (containerd.cgroupDriver: systemd in node.yaml); make them agree"},
		{name: "a drop-in overrides config.yaml", driver: "cgroupfs",
			files: map[string]string{
				cri.KubeletConfig:                            strings.Replace(kubeadm, "%s", "systemd", 1),
				cri.KubeletConfigDir + "/10-a.conf":          "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
				cri.KubeletConfigDir + "/20-cgroupfs.conf":   "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
				cri.KubeletConfigDir + "/30-not-kubelet.txt": "cgroupDriver: systemd\n",
			}},
		{name: "the last drop-in disagrees", driver: "systemd",
			files: map[string]string{
				cri.KubeletConfig:                          strings.Replace(kubeadm, "%s", "systemd", 1),
				cri.KubeletConfigDir + "/20-cgroupfs.conf": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
			},
			wantErr: "/etc/kubernetes/kubelet.conf.d/20-cgroupfs.conf sets cgroupDriver: cgroupfs"},
		{name: "endpoint disagrees", driver: "systemd",
			files:   map[string]string{cri.KubeletConfig: "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/crio/crio.sock\n"},
			wantErr: "kubelet.runtime-endpoint: /var/lib/kubelet/config.yaml sets containerRuntimeEndpoint: unix:///run/crio/crio.sock, but nodeprov configures containerd with unix:///run/containerd/containerd.sock (containerd.address in node.yaml)"},
		{name: "endpoint without scheme agrees", driver: "systemd",
			files: map[string]string{cri.KubeletConfig: "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: /run/containerd/containerd.sock\n"}},
		{name: "ignored: a warning", driver: "systemd", ignore: "kubelet",
			files:    map[string]string{cri.KubeletConfig: strings.Replace(kubeadm, "%s", "cgroupfs", 1)},
			wantWarn: `kubelet.cgroup-driver: /var/lib/kubelet/config.yaml sets cgroupDriver: cgroupfs, but nodeprov configures containerd with systemd (containerd.cgroupDriver: systemd in node.yaml); make them agree (ignored by preflight.ignore "kubelet")`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: 2.1.4}}\ncontainerd: {cgroupDriver: " + tt.driver + "}\n"
			if tt.ignore != "" {
				src += "preflight: {ignore: [" + tt.ignore + "]}\n"
			}
			env, dir := stageEnv(t, src)
			for p, body := range tt.files {
				os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
				if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Stage{}.Plan(context.Background(), env)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got := strings.Join(env.Warnings(), "\n"); got != tt.wantWarn {
				t.Errorf("warnings %q, want %q", got, tt.wantWarn)
			}
		})
	}
}

// cgroupDriver auto: systemd exactly when systemd is PID 1 on the target,
// on every cgroup layout.
func TestAutoCgroupDriver(t *testing.T) {
	for _, tt := range []struct {
		setting string
		pid1    bool
		want    string
	}{{"auto", true, "systemd"}, {"auto", false, "cgroupfs"}, {"cgroupfs", true, "cgroupfs"}, {"systemd", false, "systemd"}} {
		if got := plan.CgroupDriver(tt.setting, tt.pid1); got != tt.want {
			t.Errorf("CgroupDriver(%s, systemd PID 1 %v) = %s, want %s", tt.setting, tt.pid1, got, tt.want)
		}
	}
	// Through ResolveTarget on image roots: systemd installed or not.
	for _, withSystemd := range []bool{true, false} {
		env, dir := stageEnv(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncomponents: {containerd: {version: 2.1.4}}\ncontainerd: {}\n")
		if withSystemd {
			os.MkdirAll(filepath.Join(dir, "usr/lib/systemd"), 0o755)
			os.WriteFile(filepath.Join(dir, "usr/lib/systemd/systemd"), nil, 0o755)
		}
		got, err := ResolveTarget(context.Background(), env)
		if err != nil || got.SystemdCgroup != withSystemd {
			t.Errorf("image with systemd=%v: SystemdCgroup=%v %v", withSystemd, got.SystemdCgroup, err)
		}
	}
}
