package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/nodeprov/nodeprov/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestRuntimeClassesGolden compares `nodeprov runtimeclasses` for the
// examples, as YAML and as JSON, with reviewed golden files, and checks
// them the way the API server would: decoded strictly into k8s.io/api's
// RuntimeClass (kubectl's List for JSON), both formats the same objects,
// valid by Kubernetes' validation, and what the spec says.
func TestRuntimeClassesGolden(t *testing.T) {
	var withOverhead, withSelector int
	for _, example := range []string{"k8s-worker", "gvisor-sandbox", "kata"} {
		t.Run(example, func(t *testing.T) {
			specFile := filepath.Join("..", "..", "examples", example+".yaml")
			var decoded [][]*nodev1.RuntimeClass
			for _, format := range []string{"yaml", "json"} {
				code, out, errs := runArgs(t, "", "runtimeclasses", "-o", format, specFile)
				if code != exitOK || errs != "" {
					t.Fatalf("-o %s: exit %d\n%s", format, code, errs)
				}
				golden(t, filepath.Join("testdata", "runtimeclasses", example+"."+format), out)
				if format == "yaml" {
					decoded = append(decoded, decodeYAMLStream(t, out))
				} else {
					decoded = append(decoded, decodeList(t, out))
				}
			}
			if !apiequality.Semantic.DeepEqual(decoded[0], decoded[1]) {
				t.Errorf("YAML and JSON differ:\n%v\n%v", decoded[0], decoded[1])
			}
			doc, err := spec.LoadFile(specFile, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, rc := range decoded[0] {
				if errs := validateRuntimeClass(rc); len(errs) > 0 {
					t.Errorf("RuntimeClass %s is invalid: %v", rc.Name, errs.ToAggregate())
				}
				if rc.Overhead != nil {
					withOverhead++
				}
				if rc.Scheduling != nil {
					withSelector++
				}
			}
			checkAgainstSpec(t, doc.Spec.Containerd, decoded[0])
		})
	}
	// The examples exercise every field.
	if withOverhead == 0 || withSelector == 0 {
		t.Errorf("the examples give %d RuntimeClasses an overhead and %d a node selector; want some of each", withOverhead, withSelector)
	}
}

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/nodeprov -run TestRuntimeClassesGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./cmd/nodeprov -run TestRuntimeClassesGolden -update and review the diff):\n%s", path, got)
	}
}

// strictDecoder decodes YAML or JSON into the registered Kubernetes types,
// failing on unknown and duplicate fields.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{nodev1.AddToScheme, corev1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

func decodeRuntimeClass(t *testing.T, dec runtime.Decoder, data []byte) *nodev1.RuntimeClass {
	t.Helper()
	obj, gvk, err := dec.Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	rc, ok := obj.(*nodev1.RuntimeClass)
	if !ok || gvk.GroupVersion() != nodev1.SchemeGroupVersion {
		t.Fatalf("decoded %s (%T), want a node.k8s.io/v1 RuntimeClass", gvk, obj)
	}
	return rc
}

// decodeYAMLStream splits a YAML stream into its documents, as kubectl
// does, and decodes each.
func decodeYAMLStream(t *testing.T, out string) []*nodev1.RuntimeClass {
	t.Helper()
	dec := strictDecoder(t)
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var rcs []*nodev1.RuntimeClass
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rcs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			rcs = append(rcs, decodeRuntimeClass(t, dec, doc))
		}
	}
}

// decodeList decodes a v1 List and its items, as kubectl does.
func decodeList(t *testing.T, out string) []*nodev1.RuntimeClass {
	t.Helper()
	dec := strictDecoder(t)
	obj, gvk, err := dec.Decode([]byte(out), nil, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	list, ok := obj.(*corev1.List)
	if !ok {
		t.Fatalf("decoded %s (%T), want a v1 List", gvk, obj)
	}
	var rcs []*nodev1.RuntimeClass
	for _, item := range list.Items {
		rcs = append(rcs, decodeRuntimeClass(t, dec, item.Raw))
	}
	return rcs
}

// validateRuntimeClass checks what the API server checks of a new
// RuntimeClass (pkg/apis/node/validation, which lives in k8s.io/kubernetes)
// with apimachinery's helpers: a cluster-scoped name that is a DNS
// subdomain, a handler that is a DNS label, overhead quantities of known
// resources that are not negative, and a node selector of valid labels.
func validateRuntimeClass(rc *nodev1.RuntimeClass) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&rc.ObjectMeta, false, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	for _, msg := range validation.IsDNS1123Label(rc.Handler) {
		errs = append(errs, field.Invalid(field.NewPath("handler"), rc.Handler, msg))
	}
	if rc.Overhead != nil {
		p := field.NewPath("overhead", "podFixed")
		if len(rc.Overhead.PodFixed) == 0 {
			errs = append(errs, field.Required(p, "nodeprov leaves out an empty overhead"))
		}
		for name, q := range rc.Overhead.PodFixed {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				errs = append(errs, field.NotSupported(p, name, []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}))
			}
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(p.Key(string(name)), q.String(), "must not be negative"))
			}
		}
	}
	if rc.Scheduling != nil {
		errs = append(errs, metav1validation.ValidateLabels(rc.Scheduling.NodeSelector, field.NewPath("scheduling", "nodeSelector"))...)
	}
	return errs
}

// checkAgainstSpec: one RuntimeClass per handler, runc first, each with
// the spec's overhead (equal quantities) and node selector.
func checkAgainstSpec(t *testing.T, c *spec.Containerd, rcs []*nodev1.RuntimeClass) {
	t.Helper()
	want := []string{"runc"}
	for _, name := range slices.Sorted(maps.Keys(c.Runtimes)) {
		if name != "runc" {
			want = append(want, name)
		}
	}
	var got []string
	for _, rc := range rcs {
		got = append(got, rc.Handler)
		if rc.Name != rc.Handler {
			t.Errorf("RuntimeClass %s has handler %s; want them equal", rc.Name, rc.Handler)
		}
		rt := c.Runtimes[rc.Handler]
		wantQ := map[corev1.ResourceName]spec.Quantity{}
		if rt.Overhead != nil {
			wantQ[corev1.ResourceCPU], wantQ[corev1.ResourceMemory] = rt.Overhead.CPU, rt.Overhead.Memory
		}
		var podFixed corev1.ResourceList
		if rc.Overhead != nil {
			podFixed = rc.Overhead.PodFixed
		}
		for name, s := range wantQ {
			q, ok := podFixed[name]
			if s == "" {
				if ok {
					t.Errorf("%s: overhead %s %s that the spec does not set", rc.Name, name, q.String())
				}
				continue
			}
			specQ, err := resource.ParseQuantity(string(s))
			if err != nil || !ok || q.Cmp(specQ) != 0 {
				t.Errorf("%s: overhead %s = %s (set: %v), spec says %q (%v)", rc.Name, name, q.String(), ok, s, err)
			}
		}
		var sel map[string]string
		if rc.Scheduling != nil {
			sel = rc.Scheduling.NodeSelector
		}
		if !maps.Equal(sel, rt.NodeSelector) {
			t.Errorf("%s: nodeSelector %v, spec says %v", rc.Name, sel, rt.NodeSelector)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("handlers %q, want %q", got, want)
	}
}

func TestRuntimeClassesErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("apiVersion: nodeprov/v1alpha1\nkind: Node\n"+src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	invalid := write("invalid.yaml", "containerd:\n  runtimes:\n    kata: {type: io.containerd.kata.v2, overhead: {memory: 1.5GB}}\n")
	underscore := write("underscore.yaml", "containerd:\n  runtimes:\n    kata_qemu: {type: io.containerd.kata.v2}\n")
	none := write("none.yaml", "kernel: {modules: [overlay]}\n")
	for _, c := range []struct {
		name string
		args []string
		want []string // on stderr
	}{
		{"invalid spec, like validate", []string{"runtimeclasses", "-o", "json", invalid},
			[]string{invalid + `:5:60: containerd.runtimes.kata.overhead.memory: invalid quantity "1.5GB"`, "    5 |", "runtimeclasses: 1 problem in " + invalid}},
		{"handler no RuntimeClass can name", []string{"runtimeclasses", underscore},
			[]string{underscore + `:5:5: containerd.runtimes.kata_qemu: runtime handler "kata_qemu" cannot have a Kubernetes RuntimeClass`, "runtimeclasses: 1 problem in " + underscore}},
		{"no containerd", []string{"runtimeclasses", none},
			[]string{none + ": the spec configures no containerd"}},
		{"text is not an output format", []string{"runtimeclasses", "-o", "text", none},
			[]string{`invalid value "text" for flag -o: expected yaml, json`}},
		{"no spec", []string{"runtimeclasses"}, []string{"Usage: nodeprov runtimeclasses"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runArgs(t, "", c.args...)
			if code != exitInvalid || out != "" {
				t.Errorf("exit %d, stdout %q; want exit %d and nothing on stdout", code, out, exitInvalid)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
	// A spec from standard input.
	code, out, errs := runArgs(t, "apiVersion: nodeprov/v1alpha1\nkind: Node\ncontainerd: {}\n", "runtimeclasses", "-")
	if code != exitOK || out != "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: runc\nhandler: runc\n" {
		t.Errorf("from stdin: exit %d\n%s\n%s", code, out, errs)
	}
}
