package userdata

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nodeprov/nodeprov/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func generate(t *testing.T, o Options) *Result {
	t.Helper()
	res, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestGolden compares whole outputs with reviewed files: the document
// layout, the script and the MIME envelope.
func TestGolden(t *testing.T) {
	node, lock := readTestdata(t, "node.yaml"), readTestdata(t, "nodeprov.lock")
	for _, c := range []struct {
		golden string
		o      Options
	}{
		{"url.cloud-config", Options{SpecName: "examples/node.yaml", Spec: node, BinaryURL: "https://dl.example.com/nodeprov/v1/nodeprov-linux-amd64?a=1&b='2'", BinarySHA256: testSHA}},
		{"image-lock.cloud-config", Options{SpecName: "node.yaml", Spec: node, Lock: lock, BinaryPath: "/opt/nodeprov/bin/nodeprov"}},
		{"gz.cloud-config", Options{SpecName: "node.yaml", Spec: node, Lock: lock, Compress: CompressAlways, BinaryURL: "http://10.0.0.1:8080/nodeprov", BinarySHA256: strings.ToUpper(testSHA)}},
		{"url-lock.mime", Options{SpecName: "node.yaml", Spec: node, Lock: lock, Format: MIME, BinaryURL: "https://dl.example.com/nodeprov", BinarySHA256: "sha256:" + testSHA}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			got := generate(t, c.o).Data
			again := generate(t, c.o).Data
			if !bytes.Equal(got, again) {
				t.Fatal("output is not deterministic")
			}
			path := filepath.Join("testdata", c.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./spec/userdata -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test ./spec/userdata -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// cloudConfigDoc is the part of a #cloud-config document the tests read.
type cloudConfigDoc struct {
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Owner       string `yaml:"owner"`
		Permissions string `yaml:"permissions"`
		Encoding    string `yaml:"encoding"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	Runcmd []any `yaml:"runcmd"`
}

func parseDoc(t *testing.T, data []byte) cloudConfigDoc {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		t.Fatalf("does not start with #cloud-config: %.40q", data)
	}
	var doc cloudConfigDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not a YAML cloud-config: %v\n%s", err, data)
	}
	return doc
}

// files decodes write_files the way cloud-init does and returns path →
// contents.
func files(t *testing.T, doc cloudConfigDoc) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range doc.WriteFiles {
		if f.Owner != "root:root" || f.Permissions != "0600" {
			t.Errorf("%s: owner %q permissions %q, want root:root 0600", f.Path, f.Owner, f.Permissions)
		}
		data := []byte(f.Content)
		switch f.Encoding {
		case "":
		case "b64", "gz+b64":
			raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(f.Content, "\n", ""))
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			data = raw
			if f.Encoding == "gz+b64" {
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("%s: %v", f.Path, err)
				}
				if data, err = io.ReadAll(zr); err != nil {
					t.Fatalf("%s: %v", f.Path, err)
				}
			}
		default:
			t.Fatalf("%s: unexpected encoding %q", f.Path, f.Encoding)
		}
		out[f.Path] = data
	}
	return out
}

// TestRoundTrip decodes write_files from the output and compares the
// contents with the inputs, byte for byte: every example spec, plain and
// compressed, and contents that a YAML literal block cannot carry as is.
func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{}
	examples, _ := filepath.Glob("../../examples/*.yaml")
	if len(examples) == 0 {
		t.Fatal("no example specs")
	}
	for _, f := range examples {
		inputs[filepath.Base(f)] = readFile(t, f)
	}
	for name, s := range map[string]string{
		"no final newline":      "a: 1\nb: 2",
		"two final newlines":    "a: 1\n\n",
		"many final newlines":   "a: 1\n\n\n\n",
		"blank lines inside":    "a: 1\n\n\nb: |\n  x\n\n  y\n",
		"trailing spaces":       "a: 1   \nb: 2 \n",
		"space-only lines":      "a: 1\n   \n      \nb: 2\n",
		"space-only last line":  "a: 1\n   ",
		"leading space":         "  a: 1\n",
		"leading newline":       "\na: 1\n",
		"tab":                   "a:\t1\n",
		"crlf":                  "a: 1\r\nb: 2\r\n",
		"unicode":               "# grüße ✓ 🚀\na: \"é\"\n",
		"line separator":        "a: \"x\u2028y\"\n",
		"nel":                   "a: \"x\u0085y\"\n",
		"bom":                   "\ufeffa: 1\n",
		"document markers":      "---\na: 1\n...\n--- x\n",
		"comment and quotes":    "# '\"`$(reboot)`\na: '|'\n",
		"only newline":          "\n",
		"invalid utf-8":         "a: \xff\xfe\n",
		"yaml-looking content":  "content: |\n  - path: /etc/passwd\nruncmd: [reboot]\n",
		"backslashes and brace": "a: \\x00 {b} [c]\n",
	} {
		inputs[name] = []byte(s)
	}
	lock := readTestdata(t, "nodeprov.lock")
	for name, src := range inputs {
		for _, compress := range []Compression{CompressNever, CompressAlways} {
			t.Run(fmt.Sprintf("%s/%s", name, compress), func(t *testing.T) {
				res := generate(t, Options{SpecName: name, Spec: src, Lock: lock, Compress: compress, MaxSize: -1})
				if res.Compressed != (compress == CompressAlways) {
					t.Errorf("Compressed = %v", res.Compressed)
				}
				doc := parseDoc(t, res.Data)
				got := files(t, doc)
				if len(got) != 2 {
					t.Fatalf("write_files has %d entries, want the spec and the lock", len(got))
				}
				if !bytes.Equal(got[SpecPath], src) {
					t.Errorf("spec does not round-trip:\n got %q\nwant %q", got[SpecPath], src)
				}
				if !bytes.Equal(got[LockPath], lock) {
					t.Errorf("lock does not round-trip:\n got %q", got[LockPath])
				}
				if len(doc.Runcmd) != 1 {
					t.Errorf("runcmd has %d entries, want 1", len(doc.Runcmd))
				}
			})
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNoLock(t *testing.T) {
	res := generate(t, Options{Spec: readTestdata(t, "node.yaml")})
	got := files(t, parseDoc(t, res.Data))
	if _, ok := got[LockPath]; ok || len(got) != 1 {
		t.Errorf("write_files = %v, want only the spec", keys(got))
	}
	if bytes.Contains(res.Data, []byte(LockPath)) {
		t.Error("output mentions the lock file although there is none")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// specOfSize returns a valid spec padded with comment lines to about n
// bytes; random comments do not compress.
func specOfSize(t *testing.T, n int, random bool) []byte {
	t.Helper()
	b := bytes.NewBufferString("apiVersion: nodeprov/v1alpha1\nkind: Node\nmetadata: {name: big}\n")
	for i := 0; b.Len() < n; i++ {
		if random {
			r := make([]byte, 48)
			rand.Read(r)
			fmt.Fprintf(b, "# %s\n", base64.StdEncoding.EncodeToString(r))
		} else {
			fmt.Fprintf(b, "# padding line %d of a long comment that repeats and compresses well\n", i%10)
		}
	}
	if _, err := spec.Load("big.yaml", b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSizeCap(t *testing.T) {
	small := readTestdata(t, "node.yaml")
	compressible := specOfSize(t, 40<<10, false)
	incompressible := specOfSize(t, 20<<10, true)

	// auto: plain while it fits.
	res := generate(t, Options{Spec: small})
	if res.Compressed || res.PlainSize != len(res.Data) || len(res.Data) > DefaultMaxSize {
		t.Errorf("small spec: compressed %v, %d bytes (plain %d)", res.Compressed, len(res.Data), res.PlainSize)
	}
	// auto: compressed when the plain output is over the cap, and it fits.
	res = generate(t, Options{Spec: compressible})
	if !res.Compressed || res.PlainSize <= DefaultMaxSize || len(res.Data) > DefaultMaxSize {
		t.Errorf("compressible spec: compressed %v, %d bytes (plain %d)", res.Compressed, len(res.Data), res.PlainSize)
	}
	if got := files(t, parseDoc(t, res.Data))[SpecPath]; !bytes.Equal(got, compressible) {
		t.Error("compressed spec does not round-trip")
	}
	// auto with a cap just under the plain size compresses the small spec.
	limit := generate(t, Options{Spec: small}).PlainSize - 1
	res = generate(t, Options{Spec: small, MaxSize: limit})
	if !res.Compressed || len(res.Data) > limit {
		t.Errorf("small spec under a %d-byte cap: compressed %v, %d bytes", limit, res.Compressed, len(res.Data))
	}

	var se *SizeError
	for _, c := range []struct {
		name           string
		o              Options
		wantCompressed bool
	}{
		{"incompressible", Options{Spec: incompressible}, true},
		{"never", Options{Spec: compressible, Compress: CompressNever}, false},
		{"tiny cap", Options{Spec: small, MaxSize: 500}, true},
		{"mime envelope counts", Options{Spec: small, Format: MIME, Compress: CompressNever, MaxSize: len(generate(t, Options{Spec: small}).Data) + 10}, false},
	} {
		_, err := Generate(c.o)
		if !errors.As(err, &se) {
			t.Errorf("%s: error %v, want a SizeError", c.name, err)
			continue
		}
		if se.Compressed != c.wantCompressed || se.Size <= se.Max {
			t.Errorf("%s: %+v", c.name, se)
		}
		if !strings.Contains(err.Error(), "--max-size") {
			t.Errorf("%s: error does not say how to raise the cap: %v", c.name, err)
		}
	}
	// No limit.
	if _, err := Generate(Options{Spec: incompressible, MaxSize: -1}); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func TestMIME(t *testing.T) {
	node, lock := readTestdata(t, "node.yaml"), readTestdata(t, "nodeprov.lock")
	for _, compress := range []Compression{CompressNever, CompressAlways} {
		o := Options{SpecName: "node.yaml", Spec: node, Lock: lock, Compress: compress, BinaryURL: "https://example.com/nodeprov", BinarySHA256: testSHA}
		plain := generate(t, o).Data
		o.Format = MIME
		res := generate(t, o)

		msg, err := mail.ReadMessage(bytes.NewReader(res.Data))
		if err != nil {
			t.Fatal(err)
		}
		if v := msg.Header.Get("MIME-Version"); v != "1.0" {
			t.Errorf("MIME-Version %q", v)
		}
		mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
			t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		part, err := mr.NextRawPart()
		if err != nil {
			t.Fatal(err)
		}
		ct, cparams, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil || ct != "text/cloud-config" || cparams["charset"] != "utf-8" {
			t.Errorf("part Content-Type %q", part.Header.Get("Content-Type"))
		}
		if got := part.Header.Get("Merge-Type"); got != MergeType {
			t.Errorf("Merge-Type %q", got)
		}
		if got := part.Header.Get("Content-Transfer-Encoding"); got != "7bit" {
			t.Errorf("Content-Transfer-Encoding %q for an ASCII document", got)
		}
		if _, p, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition")); p["filename"] != PartFilename {
			t.Errorf("Content-Disposition %q", part.Header.Get("Content-Disposition"))
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, plain) {
			t.Errorf("the part is not the cloud-config document:\n%s", body)
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("more than one part: %v", err)
		}
		if got := files(t, parseDoc(t, body)); !bytes.Equal(got[SpecPath], node) {
			t.Error("spec does not round-trip through the MIME part")
		}
	}

	// Non-ASCII content is declared 8bit.
	res := generate(t, Options{Spec: []byte("# grüße\napiVersion: nodeprov/v1alpha1\nkind: Node\n"), Format: MIME})
	if !bytes.Contains(res.Data, []byte("Content-Transfer-Encoding: 8bit\r\n")) {
		t.Errorf("non-ASCII part not 8bit:\n%s", res.Data)
	}
}

func TestOptionErrors(t *testing.T) {
	spec := []byte("apiVersion: nodeprov/v1alpha1\nkind: Node\n")
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "empty"},
		{Options{Spec: spec, BinaryURL: "https://x/nodeprov"}, "needs its sha256"},
		{Options{Spec: spec, BinarySHA256: testSHA}, "without a binary URL"},
		{Options{Spec: spec, BinaryURL: "https://x/nodeprov", BinarySHA256: "abc"}, "64 hex digits"},
		{Options{Spec: spec, BinaryURL: "ftp://x/nodeprov", BinarySHA256: testSHA}, "http or https"},
		{Options{Spec: spec, BinaryURL: "/local/nodeprov", BinarySHA256: testSHA}, "http or https"},
		{Options{Spec: spec, BinaryURL: "https://x/a b", BinarySHA256: testSHA}, "spaces"},
		{Options{Spec: spec, BinaryURL: "https://x/a\nb", BinarySHA256: testSHA}, "binary URL"},
		{Options{Spec: spec, BinaryPath: "nodeprov"}, "absolute"},
		{Options{Spec: spec, BinaryPath: "/usr/local/bin/../nodeprov"}, "clean"},
		{Options{Spec: spec, BinaryPath: "/usr/bin/node\nprov"}, "control"},
		{Options{Spec: spec, Format: "json"}, "format"},
		{Options{Spec: spec, Compress: "sometimes"}, "gzip"},
	} {
		_, err := Generate(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.o, err, c.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	src := []byte(`apiVersion: nodeprov/v1alpha1
kind: Node
keyrings:
  runc: {path: /etc/nodeprov/keys/runc.keyring}
  inline: {armored: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n..."}
`)
	doc, err := spec.Decode("k.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	res := generate(t, Options{Spec: src, Node: doc.Spec})
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "/etc/nodeprov/keys/runc.keyring") {
		t.Errorf("warnings = %q", res.Warnings)
	}
}
