package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"completion", shell}, strings.NewReader(""), &out, &errb); code != exitOK {
		t.Fatalf("completion %s: exit %d\n%s", shell, code, errb.String())
	}
	f := filepath.Join(t.TempDir(), "nodeprov."+shell)
	if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// needShell finds a shell; CI must have it (make test installs it).
func needShell(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, and CI must not skip this test (make deps installs it)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

func TestCompletionUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"completion", "fish"}, strings.NewReader(""), &out, &errb); code != exitInvalid || !strings.Contains(errb.String(), "bash or zsh") {
		t.Errorf("completion fish: exit %d\n%s", code, errb.String())
	}
	if code := run(context.Background(), []string{"completion"}, strings.NewReader(""), &out, &errb); code != exitInvalid {
		t.Errorf("completion without a shell: exit %d", code)
	}
}

// TestCompletionSpecsFromFlagSets checks that the scripts' data is read
// from the commands' real flag sets: every command is there, and flags
// added to a command show up with their kind of value.
func TestCompletionSpecsFromFlagSets(t *testing.T) {
	cmds, err := completionSpecs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := commandNames(cmds), len(commands()); len(got) != want {
		t.Fatalf("%d commands, want %d", len(got), want)
	}
	find := func(cmd, flag string) *compFlag {
		for _, c := range cmds {
			if c.name != cmd {
				continue
			}
			for i := range c.flags {
				if c.flags[i].word == flag {
					return &c.flags[i]
				}
			}
		}
		return nil
	}
	for _, c := range []struct {
		cmd, flag  string
		takesValue bool
		values     string
	}{
		{"apply", "--root", true, ""},
		{"apply", "--no-block", false, ""},
		{"apply", "-o", true, "text json"},
		{"apply", "--stages", true, "preflight machine-id kernel fetch install files containerd docker units images"},
		{"sysinfo", "--live", true, "auto yes no"},
		{"cloud-init", "--format", true, "cloud-config mime"},
		{"cloud-init", "--gzip", true, "auto always never"},
		{"runtimeclasses", "-o", true, "yaml json"},
		{"lock", "--arch", true, "amd64 arm64"},
		{"seal", "--empty", false, ""},
		{"fetch", "--to", true, ""},
		{"fleet", "--kubeconfig", true, ""},
		{"fleet", "-o", true, "text json"},
	} {
		f := find(c.cmd, c.flag)
		if f == nil {
			t.Errorf("%s has no %s", c.cmd, c.flag)
			continue
		}
		if f.takesValue != c.takesValue || strings.Join(f.values, " ") != c.values {
			t.Errorf("%s %s: takesValue %v values %q", c.cmd, c.flag, f.takesValue, f.values)
		}
	}
	if f := find("fetch", "--to"); f == nil || !f.dir {
		t.Error("fetch --to does not complete directories")
	}
	if f := find("fleet", "--kubeconfig"); f == nil || !f.file {
		t.Error("fleet --kubeconfig does not complete files")
	}
	for _, c := range cmds {
		if c.name == "fleet" && c.args() != "check" {
			t.Errorf("fleet's first word completes to %q, want check", c.args())
		}
	}
	if f := find("lock", "--arch"); f == nil || !f.list {
		t.Error("lock --arch (comma-separated) is not a list")
	}
	if f := find("apply", "--arch"); f == nil || f.list {
		t.Error("apply --arch (one value) is a list")
	}
	if find("seal", "--stages") != nil {
		t.Error("seal has apply's flags")
	}
}

// bashComplete sources the script in bash, sets COMP_WORDS to words (the
// last one is the word being completed) and returns COMPREPLY.
func bashComplete(t *testing.T, bash, script, dir string, words ...string) []string {
	t.Helper()
	cmd := exec.Command(bash, append([]string{"--norc", "--noprofile", "-c", `
source "$0" || exit 9
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_nodeprov || exit 8
printf '%s\n' "${COMPREPLY[@]}"
`, script}, words...)...)
	cmd.Dir = dir
	return completions(t, "bash", cmd, words)
}

func TestBashCompletion(t *testing.T) {
	bash := needShell(t, "bash")
	script := completionScript(t, "bash")
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	// A directory with a spec, another file and a subdirectory.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "node.yaml"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	all := append(commandNames(mustSpecs(t)), "help")
	for _, c := range []struct {
		words []string
		want  []string
		// exact: want is the whole reply; otherwise it must contain want
		// and none of notWant.
		exact   bool
		notWant []string
	}{
		{words: []string{"nodeprov", ""}, want: all, exact: true},
		{words: []string{"nodeprov", "cl"}, want: []string{"cloud-init"}, exact: true},
		{words: []string{"nodeprov", "--v"}, want: []string{"--version"}, exact: true},
		{words: []string{"nodeprov", "help", "ap"}, want: []string{"apply"}, exact: true},
		{words: []string{"nodeprov", "apply", "--li"}, want: []string{"--live"}, exact: true},
		{words: []string{"nodeprov", "apply", "--"}, want: []string{"--root", "--stages", "--no-block", "--image", "--require-pinned", "--help"}, notWant: []string{"--format", "--empty"}},
		{words: []string{"nodeprov", "seal", "--"}, want: []string{"--root", "--empty", "--clean-cache", "--output"}, notWant: []string{"--stages", "--live"}},
		{words: []string{"nodeprov", "apply", "-o", ""}, want: []string{"text", "json"}, exact: true},
		{words: []string{"nodeprov", "plan", "--output", "j"}, want: []string{"json"}, exact: true},
		{words: []string{"nodeprov", "apply", "--live", ""}, want: []string{"auto", "yes", "no"}, exact: true},
		{words: []string{"nodeprov", "apply", "-live", "y"}, want: []string{"yes"}, exact: true},
		// bash splits --live=y at "=" (COMP_WORDBREAKS).
		{words: []string{"nodeprov", "apply", "--live", "=", "y"}, want: []string{"yes"}, exact: true},
		{words: []string{"nodeprov", "apply", "--live", "="}, want: []string{"auto", "yes", "no"}, exact: true},
		// Without "=" in COMP_WORDBREAKS the word stays whole.
		{words: []string{"nodeprov", "apply", "--live=n"}, want: []string{"--live=no"}, exact: true},
		{words: []string{"nodeprov", "apply", "--stages", "preflight,ke"}, want: []string{"preflight,kernel"}, exact: true},
		{words: []string{"nodeprov", "check", "--stages", "f"}, want: []string{"fetch", "files"}, exact: true},
		{words: []string{"nodeprov", "lock", "--arch", "amd64,"}, want: []string{"amd64,amd64", "amd64,arm64"}, exact: true},
		{words: []string{"nodeprov", "cloud-init", "--format", ""}, want: []string{"cloud-config", "mime"}, exact: true},
		{words: []string{"nodeprov", "cloud-init", "--gzip", "a"}, want: []string{"auto", "always"}, exact: true},
		{words: []string{"nodeprov", "completion", ""}, want: []string{"bash", "zsh"}, exact: true},
		{words: []string{"nodeprov", "apply", "no"}, want: []string{"node.yaml", "notes.txt"}, exact: true},
		{words: []string{"nodeprov", "apply", "--no-block", "n"}, want: []string{"node.yaml", "notes.txt"}, exact: true},
		{words: []string{"nodeprov", "cloud-init", "--binary-url", "https://x", "node"}, want: []string{"node.yaml"}, exact: true},
		{words: []string{"nodeprov", "apply", "--root", ""}, want: []string{"sub"}, exact: true},
		{words: []string{"nodeprov", "fetch", "--to", "s"}, want: []string{"sub"}, exact: true},
		{words: []string{"nodeprov", "seal", "x"}, want: nil, exact: true},
		{words: []string{"nodeprov", "apply", "--parallel", ""}, want: nil, exact: true},
	} {
		got := bashComplete(t, bash, script, dir, c.words...)
		if c.exact {
			if !slices.Equal(sorted(got), sorted(c.want)) {
				t.Errorf("%q: got %q, want %q", c.words, got, c.want)
			}
			continue
		}
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: %q lacks %q", c.words, got, w)
			}
		}
		for _, w := range c.notWant {
			if slices.Contains(got, w) {
				t.Errorf("%q: %q has %q", c.words, got, w)
			}
		}
	}
}

func mustSpecs(t *testing.T) []compCommand {
	t.Helper()
	cmds, err := completionSpecs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// zshStubs replace the completion system's builtins and functions with
// ones that print what would be offered, one per line; file completion
// prints "<files [-/]>".
const zshStubs = `
compadd() {
    while (( $# )); do
        case $1 in
        --) shift; break ;;
        -[PSJXx]) shift 2 ;;
        -*) shift ;;
        *) break ;;
        esac
    done
    print -rl -- "$@"
}
_describe() {
    [[ $1 == -t ]] && shift 2
    shift
    local -a _stub_items
    _stub_items=("${(@P)1}")
    print -rl -- "${(@)_stub_items%%:*}"
}
_files() { print -r -- "<files $*>" }
compset() { return 0 }
compdef() { print -r -- "compdef $*" > "$ZSH_COMPDEF_LOG" }
`

func zshComplete(t *testing.T, zsh, script string, words ...string) []string {
	t.Helper()
	cmd := exec.Command(zsh, append([]string{"-f", "-c", zshStubs + `
source "$0" || exit 9
words=("$@")
CURRENT=${#words}
_nodeprov
`, script}, words...)...)
	cmd.Env = append(os.Environ(), "ZSH_COMPDEF_LOG="+filepath.Join(t.TempDir(), "compdef"))
	return completions(t, "zsh", cmd, words)
}

func TestZshCompletion(t *testing.T) {
	zsh := needShell(t, "zsh")
	script := completionScript(t, "zsh")
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// Sourced, the script registers itself.
	log := filepath.Join(t.TempDir(), "compdef")
	cmd := exec.Command(zsh, "-f", "-c", zshStubs+`source "$0"`, script)
	cmd.Env = append(os.Environ(), "ZSH_COMPDEF_LOG="+log)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("source: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(log); string(b) != "compdef _nodeprov nodeprov\n" {
		t.Errorf("sourcing the script ran %q, want compdef _nodeprov nodeprov", b)
	}

	all := append(commandNames(mustSpecs(t)), "help")
	for _, c := range []struct {
		words   []string
		want    []string
		exact   bool
		notWant []string
	}{
		{words: []string{"nodeprov", ""}, want: all, exact: true},
		{words: []string{"nodeprov", "help", ""}, want: commandNames(mustSpecs(t)), exact: true},
		{words: []string{"nodeprov", "apply", "--"}, want: []string{"--root", "--stages", "--no-block", "-o", "--help"}, notWant: []string{"--format"}},
		{words: []string{"nodeprov", "sysinfo", "-"}, want: []string{"--ignore", "--live", "--root"}, notWant: []string{"--stages"}},
		{words: []string{"nodeprov", "apply", "--live", ""}, want: []string{"auto", "yes", "no"}, exact: true},
		{words: []string{"nodeprov", "apply", "-live", ""}, want: []string{"auto", "yes", "no"}, exact: true},
		{words: []string{"nodeprov", "apply", "--live=y"}, want: []string{"auto", "yes", "no"}, exact: true},
		{words: []string{"nodeprov", "apply", "-o", ""}, want: []string{"text", "json"}, exact: true},
		{words: []string{"nodeprov", "plan", "--stages", "kernel,"}, want: []string{"preflight", "machine-id", "kernel", "fetch", "install", "files", "containerd", "docker", "units", "images"}, exact: true},
		{words: []string{"nodeprov", "cloud-init", "--format", ""}, want: []string{"cloud-config", "mime"}, exact: true},
		{words: []string{"nodeprov", "completion", ""}, want: []string{"bash", "zsh"}, exact: true},
		{words: []string{"nodeprov", "apply", ""}, want: []string{"<files >"}, exact: true},
		{words: []string{"nodeprov", "apply", "--root", ""}, want: []string{"<files -/>"}, exact: true},
		{words: []string{"nodeprov", "cloud-init", "--lock-file", ""}, want: []string{"<files >"}, exact: true},
		{words: []string{"nodeprov", "seal", ""}, want: nil, exact: true},
	} {
		got := zshComplete(t, zsh, script, c.words...)
		if c.exact {
			if !slices.Equal(sorted(got), sorted(c.want)) {
				t.Errorf("%q: got %q, want %q", c.words, got, c.want)
			}
			continue
		}
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: %q lacks %q", c.words, got, w)
			}
		}
		for _, w := range c.notWant {
			if slices.Contains(got, w) {
				t.Errorf("%q: %q has %q", c.words, got, w)
			}
		}
	}
}

// completions runs a shell that prints its completions one per line and
// returns them; a failure or anything on stderr fails the test.
func completions(t *testing.T, shell string, cmd *exec.Cmd, words []string) []string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s completion of %q: %v\n%s", shell, words, err, errb.String())
	}
	if errb.Len() > 0 {
		t.Errorf("%s completion of %q wrote to stderr: %s", shell, words, errb.String())
	}
	var got []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}
