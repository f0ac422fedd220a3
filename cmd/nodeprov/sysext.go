package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nodeprov/nodeprov/stages"
)

func runSysext(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("sysext", "sysext [flags] --out DIR spec.yaml",
		"  nodeprov sysext --out build/ node.yaml          # build/<metadata.name>.raw\n"+
			"  # on the immutable host (Flatcar, Fedora CoreOS, any systemd >= 248):\n"+
			"  cp build/k8s-worker.raw /var/lib/extensions/ && systemd-sysext merge && systemctl daemon-reload\n"+
			"  nodeprov apply --stages kernel,files,containerd node.yaml   # host configuration in /etc", s)
	out := addOutput(fs)
	outDir := fs.String("out", "", "directory that receives NAME.raw (required)")
	name := fs.String("name", "", "extension name: NAME.raw and extension-release.NAME (default metadata.name, else nodeprov)")
	osID := fs.String("os-id", "_any", "extension-release ID: _any (every OS) or the os-release ID the image is for")
	osVersion := fs.String("os-version", "", "extension-release VERSION_ID, required with an --os-id other than _any")
	root := fs.String("root", "/", "root that keyring, CA and registry config paths are read from")
	dl := addDownloadFlags(fs)
	fs.Lookup("cache").Usage = "download cache directory kept between builds (default: a temporary one); a cache filled by `nodeprov fetch --to` needs no network"
	doc, downloads, code, ok := downloadSpec(fs, args, s, out.v, dl, "sysext", outDir)
	if !ok {
		return code
	}
	o := stages.SysextOptions{Spec: doc.Spec, RootDir: *root, Arch: dl.arch, Name: *name, OSID: *osID, OSVersion: *osVersion,
		Out: *outDir, Cache: dl.cache, Downloads: downloads}
	if out.v == "text" {
		fmt.Fprintf(s.out, "nodeprov sysext %s\n", doc.File)
		o.Observer = &stages.TextObserver{W: s.out}
		o.Progress = progressFor(s.err)
	}
	res, err := stages.Sysext(ctx, o)
	stages.FinishProgress(o.Progress)
	if err != nil {
		fmt.Fprintf(s.err, "sysext: %v\n", err)
		if out.v == "json" {
			writeJSON(s.out, map[string]any{"command": "sysext", "ok": false, "error": err.Error()})
		}
		return exitFailure
	}
	if out.v == "json" {
		writeJSON(s.out, map[string]any{"command": "sysext", "ok": true, "sysext": res})
		return exitOK
	}
	for _, r := range res.Relocations {
		if r.From == r.To {
			fmt.Fprintf(s.out, "  %-12s %s\n", r.Artifact, r.To)
		} else {
			fmt.Fprintf(s.out, "  %-12s %s -> %s\n", r.Artifact, r.From, r.To)
		}
	}
	for _, u := range res.Units {
		fmt.Fprintf(s.out, "  unit         %s\n", u)
	}
	if len(res.Upheld) > 0 {
		fmt.Fprintf(s.out, "  started after a merge (multi-user.target Upholds=): %s\n", strings.Join(res.Upheld, ", "))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(s.out, "  note: %s\n", n)
	}
	fmt.Fprintf(s.out, "sysext: %s (%s, %d files, %d bytes, sha256:%s)\n", res.Image, res.Arch, len(res.Files), res.Size, res.SHA256)
	if len(res.Host) > 0 {
		fmt.Fprintf(s.out, "host configuration is not in the image (/etc is not overlaid): on the host run\n  nodeprov apply --stages %s %s\n",
			strings.Join(res.Host, ","), doc.File)
	}
	return exitOK
}
