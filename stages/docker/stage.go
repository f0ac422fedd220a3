// Package docker is the docker stage: Docker Engine's /etc/docker/daemon.json,
// the docker group its sockets belong to, and, when Docker is the node's
// CRI (docker.cri), cri-dockerd's companions: the bridge conflist,
// /etc/crictl.yaml and the kubelet's agreement. The units themselves
// (docker.service, cri-docker.service and their sockets) are the units
// stage's built-ins, which restart dockerd when daemon.json changes.
package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/cri"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// DaemonConfig is dockerd's configuration file.
const DaemonConfig = "/etc/docker/daemon.json"

// SocketGroup owns docker.socket and cri-docker.socket (the units stage's
// built-ins say SocketGroup=docker, as upstream's do).
const SocketGroup = "docker"

// Stage writes Docker's configuration.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "docker" }

// Plan implements plan.Stage.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	d := env.Spec.Docker
	if d == nil {
		return nil, nil
	}
	var actions []*plan.Action
	if a, err := planGroup(env.Root); err != nil {
		return nil, err
	} else if a != nil {
		actions = append(actions, a)
	}

	driver := plan.CgroupDriver(d.CgroupDriver, env.SystemdPID1())
	data, overrides, err := RenderDaemon(d, driver)
	if err != nil {
		return nil, err
	}
	for _, k := range overrides {
		env.Warnf("docker.settings overrides %s, which nodeprov renders from the spec (the setting wins)", k)
	}
	a, err := plan.PlanOwnedFile(env.Root, "config "+DaemonConfig, plan.FileSpec{Path: DaemonConfig, Data: data, Mode: 0o644, Redact: true})
	if err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("cgroup driver %s (docker.cgroupDriver: %s), data-root %s", driver, d.CgroupDriver, d.DataRoot)
	switch a.Op {
	case plan.OpNone:
		a.Detail = detail
	case plan.OpCreate, plan.OpUpdate:
		a.Detail += "; " + detail
	}
	actions = append(actions, a)

	c := d.CRI
	if c == nil {
		return actions, nil
	}
	specFile := "the spec"
	if env.Doc != nil {
		specFile = env.Doc.File
	}
	endpoint := env.Spec.CRIEndpoint()
	want := cri.Agreement{Runtime: "cri-dockerd", Driver: driver, DriverFrom: "docker.cgroupDriver: " + d.CgroupDriver,
		Endpoint: endpoint, EndpointFrom: "docker.cri.endpoint"}
	if err := cri.CheckKubelet(env.Root, want, specFile, env.Spec.Preflight, env.Warnf); err != nil {
		return nil, err
	}
	companions, err := cri.Companions(env, c.CNI, endpoint)
	if err != nil {
		return nil, err
	}
	return append(actions, companions...), nil
}

// planGroup makes sure the docker group exists: systemd refuses to create
// a socket whose SocketGroup= it cannot resolve.
func planGroup(root *host.Root) (*plan.Action, error) {
	ok, err := root.HasGroup(SocketGroup)
	if err != nil {
		return nil, err
	}
	a := &plan.Action{Resource: "group " + SocketGroup, Op: plan.OpNone, Detail: "owns docker.socket and cri-docker.socket",
		Paths: []string{"/etc/group"}}
	if !ok {
		a.Op, a.Detail = plan.OpCreate, "system group for docker.socket and cri-docker.socket (SocketGroup=docker)"
		a.Run = func(context.Context) error {
			_, err := root.AddSystemGroup(SocketGroup)
			return err
		}
	}
	return a, nil
}

// RenderDaemon returns daemon.json for the docker section and the cgroup
// driver the node uses: the keys nodeprov renders (spec.DockerRenderedKeys)
// with docker.settings written over them, keys sorted, and the settings'
// keys that replaced a rendered one.
func RenderDaemon(d *spec.Docker, cgroupDriver string) ([]byte, []string, error) {
	conf := map[string]any{
		"data-root": d.DataRoot,
		"exec-opts": []string{"native.cgroupdriver=" + cgroupDriver},
	}
	if len(d.RegistryMirrors) > 0 {
		conf["registry-mirrors"] = d.RegistryMirrors
	}
	if len(d.InsecureRegistries) > 0 {
		conf["insecure-registries"] = d.InsecureRegistries
	}
	if d.LogDriver != "" {
		conf["log-driver"] = d.LogDriver
	}
	if len(d.LogOpts) > 0 {
		conf["log-opts"] = d.LogOpts
	}
	var overrides []string
	for k, v := range d.Settings {
		if _, rendered := conf[k]; rendered || slices.Contains(spec.DockerRenderedKeys, k) {
			overrides = append(overrides, k)
		}
		conf[k] = v
	}
	slices.Sort(overrides)
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("docker.settings: %w", err)
	}
	return append(data, '\n'), overrides, nil
}
