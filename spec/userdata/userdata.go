// Package userdata renders cloud-init user data that provisions a machine
// with nodeprov on its first boot: the spec (and its lock file) travel in
// write_files, and runcmd installs nodeprov and runs `nodeprov apply`.
//
// The output is a #cloud-config document, or a multipart/mixed MIME message
// holding it as a text/cloud-config part for users who combine it with
// parts of their own. It is deterministic: the same inputs give the same
// bytes.
//
// The package depends on spec only; it never touches the machine.
package userdata

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/nodeprov/nodeprov/spec"
)

// Paths on the provisioned machine.
const (
	// SpecPath is where write_files puts the spec. It may carry proxy
	// credentials, so only root reads it.
	SpecPath = "/etc/nodeprov/node.yaml"
	// LockPath is the lock file next to it, which apply reads by default.
	LockPath = "/etc/nodeprov/nodeprov.lock"
	// FragmentPath is where a fragment's write_files puts it: in the
	// node.d directory of SpecPath (spec.FragmentDir).
	FragmentPath = "/etc/nodeprov/node.d/50-user-data.yaml"
	// ReportPath receives the JSON report of the first-boot apply.
	ReportPath = "/var/lib/nodeprov/cloud-init-report.json"
	// DefaultBinaryPath is where nodeprov is installed or expected.
	DefaultBinaryPath = "/usr/local/bin/nodeprov"
)

// DefaultMaxSize is the user-data cap of the most restrictive common
// provider (EC2 accepts 16 KiB of user data before base64 encoding).
const DefaultMaxSize = 16 << 10

// Format is the shape of the output.
type Format string

const (
	// CloudConfig is a plain #cloud-config document.
	CloudConfig Format = "cloud-config"
	// MIME is a multipart/mixed message with one text/cloud-config part.
	MIME Format = "mime"
)

// Formats lists the formats in the order help texts show them.
func Formats() []string { return []string{string(CloudConfig), string(MIME)} }

// Compression says when write_files contents are gzip+base64 encoded.
type Compression string

const (
	// CompressAuto compresses only when the plain output is over MaxSize.
	CompressAuto Compression = "auto"
	// CompressAlways always compresses.
	CompressAlways Compression = "always"
	// CompressNever never compresses (the output may then be over MaxSize,
	// which is an error).
	CompressNever Compression = "never"
)

// Compressions lists the compression modes in help order.
func Compressions() []string {
	return []string{string(CompressAuto), string(CompressAlways), string(CompressNever)}
}

// Options say what to render.
type Options struct {
	// SpecName names the spec in the header comment (its base name is
	// used).
	SpecName string
	// Spec is the spec's source, written to SpecPath byte for byte. The
	// caller validates it first (spec.Load).
	Spec []byte
	// Node is the loaded spec, used only for warnings about what user data
	// cannot carry; it may be nil.
	Node *spec.Node
	// Lock is the lock file's contents; nil means none is written.
	Lock []byte
	// BinaryURL, with BinarySHA256, makes first boot download nodeprov,
	// verify it and install it at BinaryPath. Without it, nodeprov must
	// already be at BinaryPath on the image.
	BinaryURL    string
	BinarySHA256 string
	// BinaryPath is where nodeprov is installed or expected; empty means
	// DefaultBinaryPath.
	BinaryPath string
	// RequirePinned runs the first-boot apply with --require-pinned.
	RequirePinned bool
	// Format is the output format; empty means CloudConfig.
	Format Format
	// Compress says when to gzip write_files contents; empty means auto.
	Compress Compression
	// MaxSize is the largest output accepted, in bytes; 0 means
	// DefaultMaxSize and a negative value means no limit.
	MaxSize int
	// Fragment makes Spec a fragment of a layered spec, for an image that
	// holds the base and nodeprov's first-boot unit: it is written to
	// FragmentPath and nothing is run (the unit applies the base with its
	// node.d fragments).
	Fragment bool
}

// Result is rendered user data.
type Result struct {
	// Data is the user data.
	Data []byte
	// Compressed says whether write_files contents are gzip+base64.
	Compressed bool
	// PlainSize is the size the output has without compression (equal to
	// len(Data) when Compressed is false).
	PlainSize int
	// Warnings name what the spec needs on the machine that user data does
	// not carry.
	Warnings []string
}

// SizeError is returned when the output does not fit under the size cap.
type SizeError struct {
	Size, Max  int
	Compressed bool
}

func (e *SizeError) Error() string {
	how := "without compression (--gzip never)"
	if e.Compressed {
		how = "even with gzip+base64 contents"
	}
	return fmt.Sprintf("user data is %d bytes %s, over the %d-byte cap; shorten the spec (comments count), or raise the cap with --max-size if your provider accepts more", e.Size, how, e.Max)
}

// Generate renders the user data for o.
func Generate(o Options) (*Result, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	render := func(gz bool) ([]byte, error) {
		doc, err := cloudConfig(&o, gz)
		if err != nil {
			return nil, err
		}
		if o.Format == MIME {
			return mimeMessage(doc)
		}
		return doc, nil
	}
	plain, err := render(false)
	if err != nil {
		return nil, err
	}
	res := &Result{Data: plain, PlainSize: len(plain), Warnings: warnings(o.Node)}
	over := func(b []byte) bool { return o.MaxSize > 0 && len(b) > o.MaxSize }
	if o.Compress == CompressAlways || (o.Compress == CompressAuto && over(plain)) {
		if res.Data, err = render(true); err != nil {
			return nil, err
		}
		res.Compressed = true
	}
	if over(res.Data) {
		return nil, &SizeError{Size: len(res.Data), Max: o.MaxSize, Compressed: res.Compressed}
	}
	return res, nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// normalize applies defaults and checks the options.
func (o *Options) normalize() error {
	if o.Format == "" {
		o.Format = CloudConfig
	}
	if o.Format != CloudConfig && o.Format != MIME {
		return fmt.Errorf("format %q: expected %s", o.Format, strings.Join(Formats(), " or "))
	}
	if o.Compress == "" {
		o.Compress = CompressAuto
	}
	switch o.Compress {
	case CompressAuto, CompressAlways, CompressNever:
	default:
		return fmt.Errorf("gzip %q: expected %s", o.Compress, strings.Join(Compressions(), ", "))
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if len(o.Spec) == 0 {
		return errors.New("the spec is empty")
	}
	if o.BinaryPath == "" {
		o.BinaryPath = DefaultBinaryPath
	}
	if err := checkPath(o.BinaryPath); err != nil {
		return fmt.Errorf("binary path: %w", err)
	}
	o.BinarySHA256 = strings.ToLower(strings.TrimPrefix(o.BinarySHA256, "sha256:"))
	switch {
	case o.BinaryURL == "" && o.BinarySHA256 != "":
		return errors.New("a binary sha256 without a binary URL: give both, or neither to use the nodeprov on the image")
	case o.BinaryURL != "" && o.BinarySHA256 == "":
		return errors.New("a binary URL needs its sha256: nodeprov is verified before it runs")
	case o.BinaryURL != "":
		if !sha256Hex.MatchString(o.BinarySHA256) {
			return fmt.Errorf("binary sha256 %q: expected 64 hex digits", o.BinarySHA256)
		}
		if err := checkURL(o.BinaryURL); err != nil {
			return fmt.Errorf("binary URL: %w", err)
		}
	}
	return nil
}

func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("%q is not a clean absolute file path", p)
	}
	if !printable(p) {
		return fmt.Errorf("%q has control characters", p)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: expected an http or https URL", s)
	}
	if !printable(s) || strings.ContainsAny(s, " \t") {
		return fmt.Errorf("%q has spaces or control characters", s)
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// warnings name keyring files: user data carries only the spec and the
// lock file, so those must be on the image.
func warnings(n *spec.Node) []string {
	if n == nil {
		return nil
	}
	var names []string
	for name, k := range n.Keyrings {
		if k.Path != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		out = append(out, fmt.Sprintf("keyring %s is read from %s on the machine: user data carries only the spec and lock file, so the image must have it (or put the keys inline with armored:)", name, n.Keyrings[name].Path))
	}
	return out
}

// file is one write_files entry.
type file struct {
	path, mode string
	data       []byte
}

// cloudConfig renders the #cloud-config document.
func cloudConfig(o *Options, gz bool) ([]byte, error) {
	if o.Fragment {
		return fragmentConfig(o, gz)
	}
	files := []file{{SpecPath, "0600", o.Spec}}
	if o.Lock != nil {
		files = append(files, file{LockPath, "0600", o.Lock})
	}
	var b bytes.Buffer
	b.WriteString("#cloud-config\n")
	writeHeader(&b, o, gz)
	b.WriteString("write_files:\n")
	for _, f := range files {
		if err := writeFile(&b, f, gz); err != nil {
			return nil, err
		}
	}
	b.WriteString("runcmd:\n  - |\n")
	for _, line := range strings.SplitAfter(script(o), "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	return b.Bytes(), nil
}

func writeHeader(b *bytes.Buffer, o *Options, gz bool) {
	sum := sha256.Sum256(o.Spec)
	name := "the spec"
	if o.SpecName != "" && o.SpecName != "-" {
		name = commentSafe(path.Base(strings.ReplaceAll(o.SpecName, "\\", "/")))
	}
	fmt.Fprintf(b, "# Generated by `nodeprov cloud-init` from %s (sha256:%s).\n", name, hex.EncodeToString(sum[:]))
	fmt.Fprintf(b, "# First boot: write_files puts the spec at %s (mode 0600)", SpecPath)
	if o.Lock != nil {
		fmt.Fprintf(b, " and its lock file at %s", LockPath)
	}
	if gz {
		b.WriteString(", gzip+base64 encoded")
	}
	b.WriteString(";\n")
	if o.BinaryURL != "" {
		fmt.Fprintf(b, "# runcmd downloads nodeprov to %s, checks its sha256 and only then runs\n", o.BinaryPath)
	} else {
		fmt.Fprintf(b, "# runcmd runs the nodeprov the image has at %s:\n", o.BinaryPath)
	}
	fmt.Fprintf(b, "# `nodeprov apply --no-block`, with its JSON report in %s.\n", ReportPath)
	b.WriteString("# A failed apply fails cloud-init's scripts-user module (cloud-init status: error).\n")
}

// fragmentConfig is the cloud-config of a fragment: one write_files entry.
func fragmentConfig(o *Options, gz bool) ([]byte, error) {
	var b bytes.Buffer
	sum := sha256.Sum256(o.Spec)
	name := "the fragment"
	if o.SpecName != "" && o.SpecName != "-" {
		name = commentSafe(path.Base(strings.ReplaceAll(o.SpecName, "\\", "/")))
	}
	fmt.Fprintf(&b, "#cloud-config\n# Generated by `nodeprov cloud-init --fragment` from %s (sha256:%s).\n", name, hex.EncodeToString(sum[:]))
	fmt.Fprintf(&b, "# write_files puts it at %s (mode 0600); the image's nodeprov first-boot unit\n", FragmentPath)
	b.WriteString("# then applies its base spec with this fragment merged over it.\nwrite_files:\n")
	if err := writeFile(&b, file{FragmentPath, "0600", o.Spec}, gz); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// commentSafe replaces what cannot appear in a one-line YAML comment.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// writeFile writes one write_files entry. Plain contents are a YAML
// literal block when they can be one exactly, base64 otherwise.
func writeFile(b *bytes.Buffer, f file, gz bool) error {
	fmt.Fprintf(b, "  - path: %s\n    owner: root:root\n    permissions: %q\n", f.path, f.mode)
	if gz {
		var z bytes.Buffer
		w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if err != nil {
			return err
		}
		// No name and a zero modification time: the same input always
		// compresses to the same bytes.
		if _, err := w.Write(f.data); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		b.WriteString("    encoding: gz+b64\n")
		writeBase64(b, z.Bytes())
		return nil
	}
	if chomp, ok := literalChomp(f.data); ok {
		fmt.Fprintf(b, "    content: |%s\n", chomp)
		for _, line := range strings.SplitAfter(string(f.data), "\n") {
			switch line {
			case "":
			case "\n":
				b.WriteString("\n")
			default:
				b.WriteString("      " + line)
			}
		}
		if !bytes.HasSuffix(f.data, []byte("\n")) {
			b.WriteString("\n")
		}
		return nil
	}
	b.WriteString("    encoding: b64\n")
	writeBase64(b, f.data)
	return nil
}

// writeBase64 writes a content key whose value is base64 folded into
// lines of 76 characters (a YAML folded block without line breaks in the
// value would be as valid; a literal block decodes the same, since base64
// decoders skip newlines).
func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	b.WriteString("    content: |\n")
	for len(enc) > 76 {
		b.WriteString("      " + enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString("      " + enc + "\n")
}

// literalChomp says whether data can be written as a YAML literal block
// scalar that reads back byte for byte, and with which chomping indicator
// ("" keeps one final line break, "-" none, "+" all). It refuses, so that
// the caller falls back to base64: empty or blank contents, invalid UTF-8,
// control characters other than the line feed (tabs and carriage returns
// included: parsers treat them inconsistently), the other characters YAML
// takes as line breaks or byte-order marks, and a first line that is empty
// or starts with a space (the block's indentation would then need an
// explicit indicator).
func literalChomp(data []byte) (string, bool) {
	s := string(data)
	if strings.Trim(s, "\n") == "" || !utf8.ValidString(s) || strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\n") {
		return "", false
	}
	for _, r := range s {
		switch {
		case r == '\n':
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			return "", false
		case r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
			return "", false
		}
	}
	switch {
	case !strings.HasSuffix(s, "\n"):
		return "-", true
	case strings.HasSuffix(s, "\n\n"):
		return "+", true
	}
	return "", true
}
