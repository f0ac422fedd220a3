// Command bench compares, in one run and on loopback, nodeprov's cold
// apply, its warm re-apply, the sequential shell recipe of the upstream
// install docs, and an equivalent Ansible playbook (cold and its no-op
// re-run), against ~200 MB of release-shaped artifacts served with a
// per-connection rate cap (a CDN's per-connection limit). It prints a table
// and whether each target of issues 3 and 7 is met; targets are reported,
// not asserted: it exits non-zero only on errors.
//
//	go run ./e2e/bench -nodeprov bin/nodeprov [-rate 20] [-runs 3]
//
// See e2e/bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nodeprov/nodeprov/e2e/artifacts"
)

const mib = 1 << 20

type options struct {
	nodeprov string
	rate     float64 // MiB/s per connection
	runs     int
	totalMiB int
	payloads int
	parallel int
	stages   string
	tool     string
	uncapped bool
	ansible  bool
	keep     bool
}

func main() {
	var o options
	flag.StringVar(&o.nodeprov, "nodeprov", "bin/nodeprov", "nodeprov binary to benchmark")
	flag.Float64Var(&o.rate, "rate", 20, "per-connection cap of the loopback server, MiB/s")
	flag.IntVar(&o.runs, "runs", 3, "runs of each scenario (median, min and max are reported)")
	flag.IntVar(&o.totalMiB, "total", 200, "size of the artifact tree in MiB; padding payloads fill what the real artifacts leave")
	flag.IntVar(&o.payloads, "payloads", 4, "number of padding payloads")
	flag.IntVar(&o.parallel, "parallel", 0, "pass --parallel N to nodeprov (0: nodeprov's default)")
	flag.StringVar(&o.stages, "stages", "", "pass --stages to nodeprov (empty: all stages; offline on a sandbox root)")
	flag.StringVar(&o.tool, "tool", "curl", "download tool of the shell recipe: curl or wget")
	flag.BoolVar(&o.uncapped, "uncapped", true, "also run nodeprov cold apply and the recipe without the cap (reference rows: CPU/disk cost)")
	flag.BoolVar(&o.ansible, "ansible", true, "also run the equivalent Ansible playbook (ansible-playbook from Debian's ansible-core), cold and re-run")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (artifacts, spec, recipe, roots)")
	flag.Parse()
	// On ^C or SIGTERM the running command's process group is killed and
	// run returns through its deferred clean-up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		stop()
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.runs < 1 || o.rate <= 0 || o.totalMiB < 1 || (o.tool != "curl" && o.tool != "wget") {
		return errors.New("need -runs >= 1, -rate > 0, -total >= 1, -tool curl|wget")
	}
	bin, err := filepath.Abs(o.nodeprov)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("nodeprov binary: %w (make bench-e2e builds it)", err)
	}
	o.nodeprov = bin
	for _, tool := range []string{"bash", o.tool, "sha256sum", "sha512sum", "tar", "install", "grep", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the shell recipe needs %s: %w", tool, err)
		}
	}
	if o.ansible {
		if _, err := exec.LookPath("ansible-playbook"); err != nil {
			return fmt.Errorf("the Ansible scenario needs ansible-playbook (make bench-e2e installs Debian's ansible-core; -ansible=false skips it): %w", err)
		}
	}

	tmp, err := os.MkdirTemp("", "nodeprov-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Printf("keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	start := time.Now()
	t, err := buildTree(filepath.Join(tmp, "artifacts"), int64(o.totalMiB)*mib, o.payloads)
	if err != nil {
		return fmt.Errorf("build artifacts: %w", err)
	}
	fmt.Printf("built the release-shaped tree in %s (from Debian's containerd %s, runc %s, CNI %s, runsc %s; payloads are random bytes)\n\n",
		time.Since(start).Round(100*time.Millisecond), artifacts.ContainerdVersion, artifacts.RuncVersion, artifacts.CNIVersion, artifacts.GVisorVersion)
	printSizes(t)

	// Every TCP connection of capped is limited to the rate, the way a
	// CDN caps each connection.
	capped, err := artifacts.Serve(t.Dir, artifacts.ServerOptions{Rate: o.rate * mib})
	if err != nil {
		return err
	}
	defer capped.Close()
	var free *artifacts.Server
	if o.uncapped {
		if free, err = artifacts.Serve(t.Dir, artifacts.ServerOptions{}); err != nil {
			return err
		}
		defer free.Close()
	}

	if err := ctx.Err(); err != nil {
		return err
	}
	b := &bench{ctx: ctx, o: o, tmp: tmp, tree: t}
	if err := b.setup(capped, free); err != nil {
		return err
	}
	fmt.Printf("\nserver %s: every TCP connection capped at %.0f MiB/s (token bucket per connection)\n", capped.URL, o.rate)
	fmt.Printf("nodeprov: %s\nrecipe:   %s (sequential, %s)\n", strings.Join(b.applyArgs("ROOT", "SPEC"), " "), b.recipe, o.tool)
	if o.ansible {
		fmt.Printf("ansible:  ansible-playbook %s -e root=ROOT -e work=WORK -e base=URL (%s, local connection, no facts, pipelining)\n", b.playbook, b.ansibleVer)
	}
	if timeBin != "" {
		fmt.Printf("peak RSS and CPU time: GNU time (%%M, %%U+%%S) around each command\n\n")
	} else {
		fmt.Printf("peak RSS and CPU time: wait4 rusage (no /usr/bin/time: RSS is an upper bound, it includes this program's RSS at spawn)\n\n")
	}

	for i := 1; i <= o.runs; i++ {
		fmt.Printf("run %d/%d ...", i, o.runs)
		if err := b.iteration(i); err != nil {
			fmt.Println()
			return err
		}
		fmt.Println(" done")
	}
	fmt.Println()
	b.report()
	return nil
}

// scenario names, in table order.
const (
	sCold       = "nodeprov cold apply"
	sWarm       = "nodeprov warm re-apply"
	sRecipe     = "recipe (sequential)"
	sRecipeWarm = "recipe re-run"
	sAnsible    = "Ansible playbook"
	sAnsibleNop = "Ansible re-run (no-op)"
	sColdFree   = "nodeprov cold apply, no cap"
	sRecipeFree = "recipe, no cap"
)

type sample struct {
	wall   time.Duration
	cpu    time.Duration   // user + system of the process tree
	maxRSS int64           // bytes; the largest single process of the tree
	net    artifacts.Stats // what the servers saw (Peak: most requests in flight at once)
	stages map[string]float64
}

type bench struct {
	ctx        context.Context
	o          options
	tmp        string
	servers    []*artifacts.Server
	tree       *tree
	recipe     string
	playbook   string // the Ansible playbook, when o.ansible
	ansibleVer string
	spec       string // spec pointing at the capped server
	specFree   string // ... at the uncapped one
	cappedURL  string
	freeURL    string
	samples    map[string][]sample
}

func (b *bench) setup(capped, free *artifacts.Server) error {
	b.samples = map[string][]sample{}
	b.servers = []*artifacts.Server{capped}
	b.cappedURL = capped.URL
	b.spec = filepath.Join(b.tmp, "spec-capped", "node.yaml")
	if err := writeFile(b.spec, nodeSpec(b.tree, capped.URL)); err != nil {
		return err
	}
	if free != nil {
		b.servers = append(b.servers, free)
		b.freeURL = free.URL
		b.specFree = filepath.Join(b.tmp, "spec-free", "node.yaml")
		if err := writeFile(b.specFree, nodeSpec(b.tree, free.URL)); err != nil {
			return err
		}
	}
	b.recipe = filepath.Join(b.tmp, "recipe.sh")
	if err := writeFile(b.recipe, recipeScript(b.o.tool, b.tree)); err != nil {
		return err
	}
	if b.o.ansible {
		var err error
		if b.playbook, err = ansibleSetup(filepath.Join(b.tmp, "ansible"), b.tree); err != nil {
			return err
		}
		if b.ansibleVer, err = ansibleVersion(filepath.Dir(b.playbook)); err != nil {
			return fmt.Errorf("ansible-playbook --version: %w", err)
		}
	}
	return os.Chmod(b.recipe, 0o755)
}

func writeFile(p, s string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(s), 0o644)
}

func (b *bench) applyArgs(root, spec string) []string {
	args := []string{"nodeprov", "apply", "--root", root, "-o", "json"}
	if b.o.stages != "" {
		args = append(args, "--stages", b.o.stages)
	}
	if b.o.parallel > 0 {
		args = append(args, "--parallel", fmt.Sprint(b.o.parallel))
	}
	return append(args, spec)
}

// iteration runs every scenario once, each cold one into a fresh root.
func (b *bench) iteration(i int) error {
	dir := filepath.Join(b.tmp, fmt.Sprintf("run-%d", i))
	defer os.RemoveAll(dir)

	npRoot := filepath.Join(dir, "nodeprov-root")
	if err := os.MkdirAll(npRoot, 0o755); err != nil {
		return err
	}
	if err := b.nodeprov(sCold, npRoot, b.spec, true); err != nil {
		return err
	}
	if err := b.nodeprov(sWarm, npRoot, b.spec, false); err != nil {
		return err
	}

	rRoot, rWork := filepath.Join(dir, "recipe-root"), filepath.Join(dir, "recipe-work")
	if err := os.MkdirAll(rRoot, 0o755); err != nil {
		return err
	}
	if err := b.shell(sRecipe, rRoot, rWork, b.cappedURL); err != nil {
		return err
	}
	if err := sameInstall(npRoot, rRoot, b.tree); err != nil {
		return fmt.Errorf("nodeprov and the recipe installed different files: %w", err)
	}
	for _, root := range []string{npRoot, rRoot} {
		if err := checkKernelAndConfig(root); err != nil {
			return fmt.Errorf("%s: %w", root, err)
		}
	}
	if err := b.shell(sRecipeWarm, rRoot, rWork, b.cappedURL); err != nil {
		return err
	}
	os.RemoveAll(rRoot)
	os.RemoveAll(rWork)

	if b.o.ansible {
		aRoot, aWork := filepath.Join(dir, "ansible-root"), filepath.Join(dir, "ansible-work")
		if err := os.MkdirAll(aRoot, 0o755); err != nil {
			return err
		}
		if err := b.ansible(sAnsible, aRoot, aWork, true); err != nil {
			return err
		}
		if err := sameInstall(npRoot, aRoot, b.tree); err != nil {
			return fmt.Errorf("nodeprov and the Ansible playbook installed different files: %w", err)
		}
		if err := checkKernelAndConfig(aRoot); err != nil {
			return fmt.Errorf("%s: %w", aRoot, err)
		}
		if err := b.ansible(sAnsibleNop, aRoot, aWork, false); err != nil {
			return err
		}
		os.RemoveAll(aRoot)
		os.RemoveAll(aWork)
	}
	os.RemoveAll(npRoot)

	if b.freeURL != "" {
		root := filepath.Join(dir, "nodeprov-root-free")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		if err := b.nodeprov(sColdFree, root, b.specFree, true); err != nil {
			return err
		}
		os.RemoveAll(root)
		root, work := filepath.Join(dir, "recipe-root-free"), filepath.Join(dir, "recipe-work-free")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		if err := b.shell(sRecipeFree, root, work, b.freeURL); err != nil {
			return err
		}
	}
	return nil
}

// report is the part of nodeprov's JSON report the benchmark reads.
type report struct {
	OK      bool `json:"ok"`
	Changed int  `json:"changed"`
	Stages  []struct {
		Name       string  `json:"name"`
		DurationMs float64 `json:"durationMs"`
	} `json:"stages"`
	Warnings []string `json:"warnings"`
	Error    *struct {
		Stage, Resource, Message string
	} `json:"error"`
}

func (b *bench) nodeprov(name, root, spec string, cold bool) error {
	args := b.applyArgs(root, spec)
	cmd := exec.CommandContext(b.ctx, b.o.nodeprov, args[1:]...)
	s, stdout, stderr, err := b.measure(cmd)
	if err != nil {
		return fmt.Errorf("%s: %v\n%s%s", name, err, stdout, stderr)
	}
	var rep report
	if err := json.Unmarshal(stdout, &rep); err != nil {
		return fmt.Errorf("%s: JSON report: %v\n%s%s", name, err, stdout, stderr)
	}
	switch {
	case !rep.OK:
		return fmt.Errorf("%s: report not ok:\n%s", name, stdout)
	case cold && rep.Changed == 0:
		return fmt.Errorf("%s: cold apply changed nothing:\n%s", name, stdout)
	case !cold && rep.Changed != 0:
		return fmt.Errorf("%s: re-apply changed %d actions:\n%s", name, rep.Changed, stdout)
	case !cold && s.net.Requests != 0:
		return fmt.Errorf("%s: re-apply made %d HTTP requests", name, s.net.Requests)
	}
	s.stages = map[string]float64{}
	for _, st := range rep.Stages {
		s.stages[st.Name] = st.DurationMs
	}
	b.samples[name] = append(b.samples[name], s)
	return nil
}

func (b *bench) shell(name, root, work, base string) error {
	cmd := exec.CommandContext(b.ctx, "bash", b.recipe, root, work, base)
	s, stdout, stderr, err := b.measure(cmd)
	if err != nil {
		return fmt.Errorf("%s: %v\n%s%s", name, err, stdout, stderr)
	}
	b.samples[name] = append(b.samples[name], s)
	return nil
}

// ansible runs the playbook into root (downloads in work); a cold run must
// change something, a re-run nothing (its PLAY RECAP says changed=0).
func (b *bench) ansible(name, root, work string, cold bool) error {
	dir := filepath.Dir(b.playbook)
	cmd := exec.CommandContext(b.ctx, "ansible-playbook", b.playbook,
		"-e", "root="+root, "-e", "work="+work, "-e", "base="+b.cappedURL)
	cmd.Dir = dir
	cmd.Env = ansibleEnv(dir)
	s, stdout, stderr, err := b.measure(cmd)
	if err != nil {
		return fmt.Errorf("%s: %v\n%s%s", name, err, stdout, stderr)
	}
	_, changed, err := ansibleRecap(stdout)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %v\n%s%s", name, err, stdout, stderr)
	case cold && changed == 0:
		return fmt.Errorf("%s: the cold run changed nothing:\n%s", name, stdout)
	case !cold && changed != 0:
		return fmt.Errorf("%s: the re-run changed %d tasks:\n%s", name, changed, stdout)
	}
	b.samples[name] = append(b.samples[name], s)
	return nil
}

// timeBin is GNU time, when installed: it reports the peak RSS of the
// command alone. Without it the peak RSS comes from wait4's rusage of the
// child, which Linux seeds with the RSS of the process that spawned it (Go
// spawns with vfork, so that is this benchmark's own RSS): an upper bound.
var timeBin = func() string {
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		return "/usr/bin/time"
	}
	return ""
}()

// measure runs cmd after flushing dirty pages (so one scenario's
// write-back is not billed to the next) and returns its wall time, CPU
// time (user + system of the whole process tree) and peak RSS (the largest
// single process of the tree, as GNU time reports it).
func (b *bench) measure(cmd *exec.Cmd) (sample, []byte, []byte, error) {
	var rusageFile string
	if timeBin != "" {
		rusageFile = filepath.Join(b.tmp, "rusage")
		cmd.Args = append([]string{timeBin, "-f", "%M %U %S", "-o", rusageFile}, cmd.Args...)
		cmd.Path = timeBin
		cmd.Err = nil
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(loopbackEnv(), cmd.Env...) // the command's own additions last
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	syscall.Sync()
	for _, srv := range b.servers {
		srv.ResetPeak()
	}
	before := b.stats()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var s sample
	s.wall = wall
	s.net = b.stats().Sub(before)
	if rusageFile != "" {
		// GNU time writes "Command exited with non-zero status N" first
		// when the command fails; the numbers are on the last line.
		data, rerr := os.ReadFile(rusageFile)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var kib int64
		var user, sys float64
		if _, serr := fmt.Sscanf(lines[len(lines)-1], "%d %f %f", &kib, &user, &sys); rerr == nil && serr == nil {
			s.maxRSS = kib * 1024
			s.cpu = time.Duration((user + sys) * float64(time.Second))
		} else if err == nil {
			err = fmt.Errorf("read GNU time's output %q: %v %v", data, rerr, serr)
		}
	} else if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.maxRSS = ru.Maxrss * 1024 // KiB on Linux
			s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return s, stdout.Bytes(), stderr.Bytes(), err
}

// stats adds up what the servers saw; Peak is the largest server's (one
// scenario uses one server).
func (b *bench) stats() artifacts.Stats {
	var t artifacts.Stats
	for _, srv := range b.servers {
		s := srv.Stats()
		t.Requests, t.Conns, t.Bytes = t.Requests+s.Requests, t.Conns+s.Conns, t.Bytes+s.Bytes
		t.Active, t.Peak = t.Active+s.Active, max(t.Peak, s.Peak)
	}
	return t
}

// loopbackEnv is the environment without proxies: everything stays on
// loopback.
var loopbackEnv = artifacts.LoopbackEnv

// sameInstall checks that both roots hold the same installed binaries and
// payloads, byte for byte in size and mode.
func sameInstall(a, b string, t *tree) error {
	rels := []string{"usr/local/sbin/runc", "usr/local/bin/runsc", "opt/cni/bin/bridge"}
	for _, n := range artifacts.ContainerdBinaries {
		rels = append(rels, "usr/local/bin/"+n)
	}
	for _, p := range t.payloads {
		rels = append(rels, "opt/nodeprov-bench/"+filepath.Base(p))
	}
	for _, rel := range rels {
		sa, err := os.Stat(filepath.Join(a, rel))
		if err != nil {
			return err
		}
		sb, err := os.Stat(filepath.Join(b, rel))
		if err != nil {
			return err
		}
		if sa.Size() != sb.Size() || sa.Mode().Perm() != sb.Mode().Perm() {
			return fmt.Errorf("%s: %d %v vs %d %v", rel, sa.Size(), sa.Mode().Perm(), sb.Size(), sb.Mode().Perm())
		}
	}
	return nil
}

func printSizes(t *tree) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "artifact\tsize\t checksum / signature files\t")
	for _, a := range t.Artifacts {
		var side []string
		for _, s := range a.Sidecars {
			side = append(side, filepath.Base(s))
		}
		fmt.Fprintf(w, "%s\t%s\t %s\t\n", label(a), fmtMiB(a.Size), strings.Join(side, ", "))
	}
	fmt.Fprintf(w, "total (%d artifacts)\t%s\t\t\n", len(t.Artifacts), fmtMiB(t.Total()))
	w.Flush()
}

func fmtMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }

type stats struct{ med, min, max time.Duration }

func durStats(ds []time.Duration) stats {
	s := slices.Clone(ds)
	slices.Sort(s)
	var med time.Duration
	if n := len(s); n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stats{med, s[0], s[len(s)-1]}
}

func (b *bench) stat(name string, f func(sample) time.Duration) stats {
	var ds []time.Duration
	for _, s := range b.samples[name] {
		ds = append(ds, f(s))
	}
	return durStats(ds)
}

// stageStat is the median duration of a stage in the JSON reports.
func (b *bench) stageStat(name, stage string) time.Duration {
	var ds []time.Duration
	for _, s := range b.samples[name] {
		ds = append(ds, time.Duration(s.stages[stage]*float64(time.Millisecond)))
	}
	if len(ds) == 0 {
		return 0
	}
	return durStats(ds).med
}

func wallOf(s sample) time.Duration { return s.wall }
func cpuOf(s sample) time.Duration  { return s.cpu }

func (b *bench) peakRSS(names ...string) int64 {
	var m int64
	for _, n := range names {
		for _, s := range b.samples[n] {
			m = max(m, s.maxRSS)
		}
	}
	return m
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func (b *bench) report() {
	o := b.o
	rate := o.rate * mib
	total, largest := b.tree.Total(), b.tree.Largest()
	recipe := b.stat(sRecipe, wallOf)

	fmt.Printf("results: %d runs each, per-connection cap %.0f MiB/s, %s in %d artifacts (largest %s, %s)\n\n",
		o.runs, o.rate, fmtMiB(total), len(b.tree.Artifacts), label(largest), fmtMiB(largest.Size))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tmedian\tmin\tmax\tpeak RSS\tCPU (median)\treqs\tconns\tMiB served\tmax in flight\tvs recipe\t")
	names := []string{sCold, sWarm, sRecipe, sRecipeWarm}
	if o.ansible {
		names = append(names, sAnsible, sAnsibleNop)
	}
	if b.freeURL != "" {
		names = append(names, sColdFree, sRecipeFree)
	}
	for _, n := range names {
		st, cpu := b.stat(n, wallOf), b.stat(n, cpuOf)
		last := b.samples[n][len(b.samples[n])-1]
		ratio := float64(recipe.med) / float64(st.med)
		vs := fmt.Sprintf("%.2fx faster", ratio)
		switch {
		case n == sRecipe:
			vs = "1.00x"
		case ratio > 0.995 && ratio < 1.005:
			vs = "same"
		case ratio < 1:
			vs = fmt.Sprintf("%.2fx slower", 1/ratio)
		}
		if n == sColdFree || n == sRecipeFree {
			vs = "(no cap)"
		}
		cpuText := fmtDur(cpu.med)
		if timeBin != "" && cpu.med < 10*time.Millisecond {
			cpuText = "<10 ms" // GNU time counts in 10 ms steps
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.1f MiB\t%s\t%d\t%d\t%.1f\t%d\t%s\t\n", n,
			fmtDur(st.med), fmtDur(st.min), fmtDur(st.max), float64(b.peakRSS(n))/mib, cpuText,
			last.net.Requests, last.net.Conns, float64(last.net.Bytes)/mib, last.net.Peak, vs)
	}
	w.Flush()

	par := o.parallel
	if par == 0 {
		par = 4 // nodeprov's --parallel default
	}
	secs := func(bytes int64) time.Duration { return time.Duration(float64(bytes) / rate * float64(time.Second)) }
	var sizes []int64
	for _, a := range b.tree.Artifacts {
		sizes = append(sizes, a.Size)
	}
	floorLargest, floorPar, floorSeq := secs(largest.Size), secs(total/int64(par)), secs(total)
	floorPack, floorOrder := secs(bestMakespan(sizes, par)), secs(inOrderMakespan(sizes, par))
	cold := b.stat(sCold, wallOf)
	fetch := b.stageStat(sCold, "fetch")
	fmt.Printf("\nfloors at %.0f MiB/s per connection (transfer time only):\n", o.rate)
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  largest artifact / rate\t%s\t\n", fmtDur(floorLargest))
	fmt.Fprintf(w, "  total / (%d connections x rate)\t%s\t\n", par, fmtDur(floorPar))
	fmt.Fprintf(w, "  best packing of whole files on %d connections\t%s\tthe true floor of a %d-way fetch\n", par, fmtDur(floorPack), par)
	fmt.Fprintf(w, "  files in spec order, next file to the first free connection\t%s\t\n", fmtDur(floorOrder))
	fmt.Fprintf(w, "  total / rate (one connection at a time)\t%s\tthe recipe's floor\n", fmtDur(floorSeq))
	w.Flush()
	fmt.Printf("  cold apply median %s = %.2fx the %d-way floor; its fetch stage alone %s = %.2fx\n",
		fmtDur(cold.med), float64(cold.med)/float64(floorPack), par, fmtDur(fetch), float64(fetch)/float64(floorPack))
	fmt.Printf("  recipe median %s = %.2fx its floor\n", fmtDur(recipe.med), float64(recipe.med)/float64(floorSeq))

	// Where the cold applies spend their time: stage medians from the
	// JSON reports (stages under 10 ms are left out).
	fmt.Println("\nwhere the time goes (median per stage, from nodeprov's JSON report):")
	for _, n := range []string{sCold, sColdFree} {
		if len(b.samples[n]) == 0 {
			continue
		}
		var parts []string
		for _, st := range []string{"preflight", "machine-id", "kernel", "fetch", "install", "files", "containerd", "docker", "units", "images"} {
			if d := b.stageStat(n, st); d >= 10*time.Millisecond {
				parts = append(parts, st+" "+fmtDur(d))
			}
		}
		fmt.Printf("  %-28s wall %s, CPU %s: %s\n", n, fmtDur(b.stat(n, wallOf).med), fmtDur(b.stat(n, cpuOf).med), strings.Join(parts, ", "))
	}

	warm := b.stat(sWarm, wallOf)
	rss := b.peakRSS(sCold, sWarm, sColdFree)
	speedup := float64(recipe.med) / float64(cold.med)
	fmt.Println("\ntargets (reported, not asserted):")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  cold apply >= 2x faster than the sequential recipe\t%.2fx (median %s vs %s)\t%s\n", speedup, fmtDur(cold.med), fmtDur(recipe.med), verdict(speedup >= 2))
	fmt.Fprintf(w, "  warm re-apply < 100 ms\tmedian %s, max %s\t%s\n", fmtDur(warm.med), fmtDur(warm.max), verdict(warm.med < 100*time.Millisecond))
	fmt.Fprintf(w, "  peak RSS < 64 MiB\t%.1f MiB (max over every nodeprov run)\t%s\n", float64(rss)/mib, verdict(rss < 64*mib))
	floorRatio := float64(cold.med) / float64(floorLargest)
	fmt.Fprintf(w, "  cold apply within 1.25x of largest artifact / rate (issue 7)\t%.2fx (median %s vs %s)\t%s\n", floorRatio, fmtDur(cold.med), fmtDur(floorLargest), verdict(floorRatio <= 1.25))
	fmt.Fprintf(w, "  warm re-apply < 50 ms (issue 7)\tmedian %s, max %s\t%s\n", fmtDur(warm.med), fmtDur(warm.max), verdict(warm.med < 50*time.Millisecond))
	fmt.Fprintf(w, "  peak RSS < 48 MiB (issue 7)\t%.1f MiB\t%s\n", float64(rss)/mib, verdict(rss < 48*mib))
	cpu, recipeCPU := b.stat(sCold, cpuOf), b.stat(sRecipe, cpuOf)
	cpuRatio := float64(cpu.med) / float64(recipeCPU.med)
	fmt.Fprintf(w, "  cold apply within 1.15x of the transfer floor (issue 13)\t%.2fx (median %s vs %s)\t%s\n", floorRatio, fmtDur(cold.med), fmtDur(floorLargest), verdict(floorRatio <= 1.15))
	fmt.Fprintf(w, "  cold apply CPU within 1.1x of the recipe's (issue 13)\t%.2fx (median %s vs %s)\t%s\n", cpuRatio, fmtDur(cpu.med), fmtDur(recipeCPU.med), verdict(cpuRatio <= 1.1))
	fmt.Fprintf(w, "  warm re-apply <= 10 ms (issue 13)\tmedian %s, max %s\t%s\n", fmtDur(warm.med), fmtDur(warm.max), verdict(warm.med <= 10*time.Millisecond))
	fmt.Fprintf(w, "  peak RSS <= 32 MiB (issue 13)\t%.1f MiB\t%s\n", float64(rss)/mib, verdict(rss <= 32*mib))
	if o.ansible {
		ans, nop := b.stat(sAnsible, wallOf), b.stat(sAnsibleNop, wallOf)
		noop := float64(nop.med) / float64(warm.med)
		fmt.Fprintf(w, "  warm re-apply >= 100x faster than Ansible's no-op re-run (issue 7)\t%.0fx (median %s vs %s)\t%s\n", noop, fmtDur(warm.med), fmtDur(nop.med), verdict(noop >= 100))
		fmt.Fprintf(w, "  cold apply vs the Ansible playbook (no target)\t%s (median %s vs %s)\t\n", relSpeed(float64(ans.med)/float64(cold.med)), fmtDur(cold.med), fmtDur(ans.med))
		fmt.Fprintf(w, "  the Ansible playbook vs the recipe (no target)\t%s (median %s vs %s)\t\n", relSpeed(float64(recipe.med)/float64(ans.med)), fmtDur(ans.med), fmtDur(recipe.med))
	}
	w.Flush()
	if warm.max >= 100*time.Millisecond && warm.med < 100*time.Millisecond {
		fmt.Println("  note: the warm re-apply median is under 100 ms but its slowest run is not")
	}
}

// relSpeed says how much faster (ratio > 1) or slower something is.
func relSpeed(ratio float64) string {
	if ratio < 1 {
		return fmt.Sprintf("%.2fx slower", 1/ratio)
	}
	return fmt.Sprintf("%.2fx faster", ratio)
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
