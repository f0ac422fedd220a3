package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
)

// version is set at build time with -ldflags "-X main.version=…" (make
// build uses `git describe`).
var version = "dev"

// buildInfo is what `nodeprov version -o json` prints. Fields are stable;
// empty ones are omitted.
type buildInfo struct {
	Version string `json:"version"`
	// Module and ModuleVersion are the main module as the Go toolchain
	// recorded it ("(devel)" for a build from a checkout).
	Module        string `json:"module,omitempty"`
	ModuleVersion string `json:"moduleVersion,omitempty"`
	GoVersion     string `json:"goVersion"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	// VCS is present when the binary was built from a version-controlled
	// checkout with VCS stamping (make build enables it).
	VCS *vcsInfo `json:"vcs,omitempty"`
}

type vcsInfo struct {
	System   string `json:"system"`
	Revision string `json:"revision"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
}

// readBuildInfo combines the link-time version with what the Go toolchain
// embedded.
func readBuildInfo() buildInfo {
	info := buildInfo{Version: version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Module, info.ModuleVersion = bi.Main.Path, bi.Main.Version
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version // go install …@vX.Y.Z
	}
	var v vcsInfo
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs":
			v.System = kv.Value
		case "vcs.revision":
			v.Revision = kv.Value
		case "vcs.time":
			v.Time = kv.Value
		case "vcs.modified":
			v.Modified, _ = strconv.ParseBool(kv.Value)
		}
	}
	if v.Revision != "" {
		info.VCS = &v
	}
	return info
}

func runVersion(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("version", "version [-o json]", "  nodeprov version\n  nodeprov version -o json | jq -r .vcs.revision", s)
	out := addOutput(fs)
	_, code, ok := positional(fs, args, 0)
	if !ok {
		return code
	}
	info := readBuildInfo()
	if out.v == "json" {
		writeJSON(s.out, info)
		return exitOK
	}
	fmt.Fprintf(s.out, "nodeprov %s\n", info.Version)
	if info.Module != "" {
		fmt.Fprintf(s.out, "  module:   %s %s\n", info.Module, info.ModuleVersion)
	}
	if v := info.VCS; v != nil {
		state := "clean"
		if v.Modified {
			state = "modified"
		}
		fmt.Fprintf(s.out, "  %-9s %s (%s, %s)\n", v.System+":", v.Revision, orNone(v.Time), state)
	} else {
		fmt.Fprintln(s.out, "  vcs:      not recorded (build with make build, or go build -buildvcs=true from a checkout)")
	}
	fmt.Fprintf(s.out, "  go:       %s %s/%s\n", info.GoVersion, info.OS, info.Arch)
	return exitOK
}

func orNone(s string) string {
	if s == "" {
		return "time unknown"
	}
	return s
}
