// Package images is the images stage, after units: the spec's image
// archives, installed in spec.ImagesDir by the fetch and install stages
// (verified like every artifact), are imported into containerd's k8s.io
// namespace — the one the CRI plugin serves the kubelet from — so that
// pods start without a registry (air-gapped nodes, the sandbox image). An
// archive whose every image name containerd already has is left alone; a
// missing one is drift. Importing needs the running containerd: offline
// (an image root) it is deferred to first boot, where the live apply does
// it once containerd has started.
package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// Namespace is containerd's namespace of the CRI plugin.
const Namespace = "k8s.io"

// socketWait is how long apply waits for containerd to answer: the units
// stage may have just started it, without waiting (--no-block).
const socketWait = time.Minute

// Stage is the images stage.
type Stage struct{}

// Name implements plan.Stage.
func (Stage) Name() string { return "images" }

// Plan implements plan.Stage.
func (Stage) Plan(ctx context.Context, env *plan.Env) ([]*plan.Action, error) {
	imgs := env.Spec.Images
	if len(imgs) == 0 {
		return nil, nil
	}
	var present []string
	var ctr, address, unreachable string
	if env.Live {
		ctr, address = ctrOf(env)
		var err error
		present, err = list(ctx, ctr, address, env.Mode == "apply")
		switch {
		case err != nil && env.Mode == "apply":
			return nil, err
		case err != nil:
			// plan and check on a node whose containerd is not running
			// (or not installed yet): every image is still to import.
			unreachable = " (containerd does not answer at " + address + ")"
		}
	}
	actions := make([]*plan.Action, 0, len(imgs))
	for i := range imgs {
		a, err := planImage(env, &imgs[i], ctr, address, present)
		if err != nil {
			return nil, fmt.Errorf("images[%d]: %w", i, err)
		}
		if a.Op.Changes() {
			a.Detail += unreachable
		}
		actions = append(actions, a)
	}
	return actions, nil
}

func planImage(env *plan.Env, img *spec.Image, ctr, address string, present []string) (*plan.Action, error) {
	p := spec.ImagePath(img)
	a := &plan.Action{Resource: "image " + path.Base(p)}
	st, err := env.Root.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		// Only in plan and check: the install stage puts it there.
		a.Op, a.Detail = plan.OpCreate, "import "+p+" into "+Namespace+" once it is installed"
		a.Run = func(context.Context) error { return fmt.Errorf("%s is not installed", p) }
		return a, nil
	}
	f, err := env.Root.Open(p)
	if err != nil {
		return nil, err
	}
	names, err := Names(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	named := strings.Join(names, ", ")
	if !env.Live {
		a.Op, a.Detail = plan.OpDeferred, "imported into containerd's "+Namespace+" namespace at first boot: "+named
		return a, nil
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(present, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		a.Op, a.Detail = plan.OpNone, "in containerd's "+Namespace+" namespace: "+named
		return a, nil
	}
	a.Op, a.Detail = plan.OpCreate, "import "+p+" into containerd's "+Namespace+" namespace: "+strings.Join(missing, ", ")
	a.Run = func(ctx context.Context) error {
		if _, err := host.Command(ctx, ctr, "--address", address, "--namespace", Namespace, "images", "import", env.Root.HostPath(p)); err != nil {
			return err
		}
		now, err := list(ctx, ctr, address, false)
		if err != nil {
			return err
		}
		for _, n := range missing {
			if !slices.Contains(now, n) {
				return fmt.Errorf("imported %s, but containerd does not list %s", p, n)
			}
		}
		return nil
	}
	return a, nil
}

// ctrOf returns the ctr binary (the containerd component's, in the root,
// else ctr on PATH) and containerd's socket.
func ctrOf(env *plan.Env) (ctr, address string) {
	ctr = "ctr"
	if c := env.Spec.Components.Containerd; c != nil {
		ctr = env.Root.HostPath(path.Join(c.InstallDir, "ctr"))
	}
	address = "/run/containerd/containerd.sock"
	if c := env.Spec.Containerd; c != nil && c.Address != "" {
		address = c.Address
	}
	return ctr, address
}

// list returns the image names containerd has in Namespace; wait retries
// for socketWait while containerd does not answer yet.
func list(ctx context.Context, ctr, address string, wait bool) ([]string, error) {
	deadline := time.Now().Add(socketWait)
	for {
		out, err := host.Command(ctx, ctr, "--address", address, "--namespace", Namespace, "images", "list", "--quiet")
		if err == nil {
			return strings.Fields(string(out)), nil
		}
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			// Waiting would not make it appear.
			return nil, fmt.Errorf("images are imported with containerd's ctr, and there is none at %s (components.containerd installs it): %w", ctr, err)
		}
		if !wait || time.Now().After(deadline) {
			return nil, fmt.Errorf("list containerd's images (is containerd running at %s?): %w", address, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
