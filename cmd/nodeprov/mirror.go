package main

import (
	"context"
	"fmt"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages"
)

func runMirror(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("mirror", "mirror [flags] --to oci://REGISTRY/NAMESPACE|DIR --out DIR spec.yaml",
		"  nodeprov mirror --to oci://registry.internal/nodeprov --out fleet/ node.yaml\n"+
			"  nodeprov mirror --to /srv/mirror --url https://mirror.internal --out fleet/ node.yaml\n"+
			"  # nodes then apply fleet/node.yaml (with fleet/nodeprov.lock next to it)", s)
	out := addOutput(fs)
	to := fs.String("to", "", "the mirror: oci://host[:port]/namespace, or a directory served as a static HTTP tree (required)")
	base := fs.String("url", "", "for a directory mirror: the URL nodes reach it at (default file://DIR)")
	outDir := fs.String("out", "", "directory for the mirrored node.yaml and nodeprov.lock (required)")
	root := fs.String("root", "/", "root that keyring, CA and registry config paths are read from")
	dl := addDownloadFlags(fs)
	doc, downloads, code, ok := downloadSpec(fs, args, s, out.v, dl, "mirror", to, outDir)
	if !ok {
		return code
	}
	o := stages.MirrorOptions{Spec: doc.Spec, RootDir: *root, Arches: arches(dl.arch, spec.Arches()), To: *to, URL: *base,
		Out: *outDir, Cache: dl.cache, Downloads: downloads}
	if out.v == "text" {
		o.Progress = progressFor(s.err)
	}
	res, err := stages.Mirror(ctx, o)
	stages.FinishProgress(o.Progress)
	if err != nil {
		fmt.Fprintf(s.err, "mirror: %v\n", err)
		return exitFailure
	}
	if out.v == "json" {
		writeJSON(s.out, map[string]any{"command": "mirror", "ok": true, "mirror": *to, "copied": res.Copied,
			"present": res.Present, "spec": res.SpecFile, "lock": res.LockFile})
		return exitOK
	}
	for _, u := range res.Copied {
		fmt.Fprintf(s.out, "  copied %s\n", u)
	}
	fmt.Fprintf(s.out, "mirror: %d files copied, %d already in %s; spec %s, lock %s\n",
		len(res.Copied), len(res.Present), *to, res.SpecFile, res.LockFile)
	return exitOK
}
