package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/spec/userdata"
)

// choiceFlag is a string flag limited to a fixed set of values; the
// completion scripts offer them.
type choiceFlag struct {
	v      string
	values []string
}

func (c *choiceFlag) String() string   { return c.v }
func (c *choiceFlag) Values() []string { return c.values }
func (c *choiceFlag) Set(s string) error {
	for _, v := range c.values {
		if s == v {
			c.v = s
			return nil
		}
	}
	return fmt.Errorf("expected %s", strings.Join(c.values, ", "))
}

func runCloudInit(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("cloud-init", "cloud-init [flags] spec.yaml|-",
		"  nodeprov cloud-init --binary-url https://dl.example.com/nodeprov-amd64 \\\n"+
			"      --binary-sha256 $(sha256sum bin/nodeprov | cut -d' ' -f1) node.yaml > user-data\n"+
			"  nodeprov cloud-init --format mime node.yaml > user-data.mime   # nodeprov already on the image", s)
	format := &choiceFlag{v: string(userdata.CloudConfig), values: userdata.Formats()}
	fs.Var(format, "format", "output `format`: cloud-config (a #cloud-config document) or mime (multipart/mixed with a text/cloud-config part, to combine with other parts)")
	binURL := fs.String("binary-url", "", "download nodeprov from this http(s) URL on first boot (needs --binary-sha256); without it nodeprov must be on the image")
	binSum := fs.String("binary-sha256", "", "sha256 of the nodeprov binary at --binary-url; checked before it is installed or run")
	binPath := fs.String("binary-path", userdata.DefaultBinaryPath, "where nodeprov is installed, or expected on the image")
	lockFile := fs.String("lock-file", "", "lock file to ship with the spec (default: nodeprov.lock next to the spec, if present; \"none\" to ship none)")
	gz := &choiceFlag{v: string(userdata.CompressAuto), values: userdata.Compressions()}
	fs.Var(gz, "gzip", "`when` to gzip+base64 the spec and lock in write_files: auto (only when the plain output is over --max-size), always, never")
	requirePinned := fs.Bool("require-pinned", false, "run the first-boot apply with --require-pinned (refuse digests taken only from the artifact's own origin)")
	maxSize := fs.Int("max-size", userdata.DefaultMaxSize, "largest user data accepted, in bytes (providers cap it; EC2 at 16384); 0 for no limit")
	fragment := fs.Bool("fragment", false, "the file is a fragment for an image that holds the base spec and nodeprov's first-boot unit: write it to "+userdata.FragmentPath+" and run nothing")
	base := fs.String("base", "", "with --fragment: the image's base spec, to validate the fragment merged over it")
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return code
	}
	if *fragment {
		return cloudInitFragment(pos[0], *base, userdata.Format(format.v), userdata.Compression(gz.v), *maxSize, s)
	}
	if *maxSize < 0 {
		fmt.Fprintln(s.err, "cloud-init: --max-size must not be negative")
		return exitInvalid
	}
	doc, ok := loadSpec(pos[0], s, "text", "cloud-init")
	if !ok {
		return exitInvalid
	}
	lock, err := readLock(pos[0], *lockFile)
	if err != nil {
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitInvalid
	}
	limit := *maxSize
	if limit == 0 {
		limit = -1
	}
	res, err := userdata.Generate(userdata.Options{
		SpecName: pos[0], Spec: doc.Source, Node: doc.Spec, Lock: lock,
		BinaryURL: *binURL, BinarySHA256: *binSum, BinaryPath: *binPath, RequirePinned: *requirePinned,
		Format: userdata.Format(format.v), Compress: userdata.Compression(gz.v), MaxSize: limit,
	})
	var size *userdata.SizeError
	switch {
	case errors.As(err, &size):
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitFailure
	case err != nil:
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitInvalid
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(s.err, "cloud-init: warning: %s\n", w)
	}
	how := "plain"
	if res.Compressed {
		how = fmt.Sprintf("gzip+base64 contents (%d bytes plain)", res.PlainSize)
	}
	fmt.Fprintf(s.err, "cloud-init: %d bytes of %s user data, %s\n", len(res.Data), format.v, how)
	if _, err := s.out.Write(res.Data); err != nil {
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// readLock returns the lock file to ship: --lock-file, or nodeprov.lock
// next to the spec when there is one; nil for none. It must parse.
func readLock(specFile, flagValue string) ([]byte, error) {
	name := flagValue
	switch {
	case flagValue == "none":
		return nil, nil
	case flagValue == "" && specFile == "-":
		return nil, nil
	case flagValue == "":
		name = filepath.Join(filepath.Dir(specFile), spec.LockFileName)
	}
	data, err := os.ReadFile(name)
	if flagValue == "" && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock file: %w", err)
	}
	if _, err := spec.ParseLock(name, data); err != nil {
		return nil, err
	}
	return data, nil
}

// cloudInitFragment prints user data that only writes a fragment: checked
// strictly on its own (keys, types), and merged over base when given.
func cloudInitFragment(name, base string, format userdata.Format, gz userdata.Compression, maxSize int, s ioSet) int {
	src, err := os.ReadFile(name)
	if name == "-" {
		src, err = io.ReadAll(io.LimitReader(s.in, spec.MaxSpecSize+1))
	}
	if err != nil {
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitInvalid
	}
	if base != "" {
		if _, ok := loadSpecs([]string{base, name}, s, "text", "cloud-init"); !ok {
			return exitInvalid
		}
	} else if _, err := spec.Decode(name, src); err != nil {
		var ds *spec.Diagnostics
		if errors.As(err, &ds) {
			fmt.Fprint(s.err, ds.Pretty())
		}
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitInvalid
	}
	if maxSize == 0 {
		maxSize = -1
	}
	res, err := userdata.Generate(userdata.Options{SpecName: name, Spec: src, Fragment: true, Format: format, Compress: gz, MaxSize: maxSize})
	if err != nil {
		fmt.Fprintf(s.err, "cloud-init: %v\n", err)
		return exitFailure
	}
	s.out.Write(res.Data)
	return exitOK
}
