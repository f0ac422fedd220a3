// Command nodeprov turns a Linux host, or an image root, into a container
// runtime node from one declarative YAML spec.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes; documented in README.md.
const (
	exitOK      = 0
	exitFailure = 1
	exitInvalid = 2
	exitDrift   = 3 // also: fleet check found Nodes sharing an identity
)

func main() {
	log.SetFlags(0)
	log.SetOutput(libraryLog{w: os.Stderr})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, io ioSet) int
}

type ioSet struct {
	in       io.Reader
	out, err io.Writer
	// onFlags, when set, receives every flag set a command creates (with
	// its synopsis); the completion scripts are derived from them.
	onFlags func(synopsis string, fs *flag.FlagSet)
}

func commands() []command {
	return []command{
		{"validate", "check a spec and print every problem with file:line:col", runValidate},
		{"plan", "show what apply would change, with diffs; change nothing", runMode("plan")},
		{"apply", "converge the node to the spec", runMode("apply")},
		{"check", "exit 3 when the node has drifted from the spec", runMode("check")},
		{"lock", "resolve and pin the digest of every download in nodeprov.lock", runLock},
		{"fetch", "download and verify every artifact into a cache directory (air-gapped hosts)", runFetch},
		{"mirror", "copy every artifact, verified, into an OCI registry or a directory, and write a spec and lock that use it", runMirror},
		{"sysext", "build a systemd-sysext image (NAME.raw) of the spec's verified artifacts and units for immutable hosts", runSysext},
		{"seal", "prepare an image root for cloning: machine-id to first-boot state, run state cleared", runSeal},
		{"fleet", "fleet check: exit 3 when Kubernetes Nodes share a machine id or system UUID", runFleet},
		{"sysinfo", "probe the host: kernel, cgroups, kernel config, binaries, disk", runSysinfo},
		{"cloud-init", "print cloud-init user data that installs nodeprov and applies the spec on first boot", runCloudInit},
		{"runtimeclasses", "print a Kubernetes RuntimeClass for every containerd runtime handler", runRuntimeClasses},
		{"schema", "print the JSON Schema of the spec", runSchema},
		{"completion", "print a bash or zsh completion script", runCompletion},
		{"version", "print version and build information", runVersion},
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := ioSet{in: stdin, out: stdout, err: stderr}
	if len(args) == 0 {
		usage(stderr)
		return exitInvalid
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "--version":
		return runVersion(ctx, nil, s)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], s)
		}
	}
	fmt.Fprintf(stderr, "nodeprov: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitInvalid
}

func usage(w io.Writer) {
	fmt.Fprint(w, `nodeprov turns a Linux host or an image root into a container-runtime node
from one declarative YAML spec. Every run is safe to repeat.

Usage:
  nodeprov <command> [flags] [spec.yaml | -]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Exit codes: 0 ok, 1 failure, 2 invalid spec or usage, 3 drift (check) or
Nodes sharing an identity (fleet check).
Run "nodeprov <command> --help" for a command's flags and an example.
`)
}
