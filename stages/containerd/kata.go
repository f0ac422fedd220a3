package containerd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/plan"
)

// kataCheckTimeout bounds one kata-runtime check; it takes well under a
// second, but asks the kernel for modules and may probe the hypervisor.
const kataCheckTimeout = 2 * time.Minute

// kataChecks runs Kata's own verdict on the host, `kata-runtime --config
// <handler's configuration> check --no-network-checks`, for every kata
// runtime handler, on a live run: the report carries it as the detail of
// an action that changes nothing, and a failing check is a warning — the
// host may gain KVM later, and runc pods do not need it. Offline it is
// deferred to the first live run. The binary is the one components.kata
// installs, else kata-runtime on PATH.
func kataChecks(ctx context.Context, env *plan.Env) []*plan.Action {
	var out []*plan.Action
	for _, name := range env.Spec.KataRuntimes() {
		rt := env.Spec.Containerd.Runtimes[name]
		a := &plan.Action{Resource: "kata-runtime check " + name, Op: plan.OpNone}
		out = append(out, a)
		if !env.Live {
			a.Op, a.Detail = plan.OpDeferred, "runs on a live apply (kata-runtime check)"
			continue
		}
		bin := "kata-runtime"
		if k := env.Spec.Components.Kata; k != nil {
			bin = env.Root.HostPath(spec.KataRuntimePath(k))
			if st, err := env.Root.Lstat(spec.KataRuntimePath(k)); err != nil || !st.Exists {
				a.Detail = fmt.Sprintf("not run: %s is not installed", spec.KataRuntimePath(k))
				continue
			}
		} else if !env.Root.IsHostRoot() {
			a.Detail = "not run: components.kata is not in the spec and kata-runtime on PATH belongs to the host, not to this root"
			continue
		}
		args := []string{"check", "--no-network-checks"}
		if rt.ConfigPath != "" {
			args = append([]string{"--config", env.Root.HostPath(rt.ConfigPath)}, args...)
		}
		a.Detail = runKataCheck(ctx, bin, args)
		if !strings.HasPrefix(a.Detail, "ok: ") {
			env.Warnf("containerd: runtime %s: kata-runtime check says this host cannot run Kata pods: %s", name, a.Detail)
		}
	}
	return out
}

// runKataCheck runs the check and returns its verdict: "ok: <its last
// line>" or "failed: <command>: exit status N: <last lines>".
func runKataCheck(ctx context.Context, bin string, args []string) string {
	ctx, cancel := context.WithTimeout(ctx, kataCheckTimeout)
	defer cancel()
	out, err := host.Command(ctx, bin, args...)
	if err != nil {
		return "failed: " + strings.ReplaceAll(err.Error(), "\n", " | ")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return "ok: " + lines[len(lines)-1]
}
