package spec

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestRuntimeClasses(t *testing.T) {
	rc := func(name string) RuntimeClass {
		return RuntimeClass{APIVersion: "node.k8s.io/v1", Kind: "RuntimeClass", Metadata: ObjectMeta{Name: name}, Handler: name}
	}
	kata := rc("kata")
	kata.Overhead = &RuntimeClassOverhead{PodFixed: map[string]string{"cpu": "250m", "memory": "160Mi"}}
	kata.Scheduling = &RuntimeClassScheduling{NodeSelector: map[string]string{"katacontainers.io/kata-runtime": "true"}}
	memOnly := rc("gvisor")
	memOnly.Overhead = &RuntimeClassOverhead{PodFixed: map[string]string{"memory": "64Mi"}}
	runc := rc("runc")
	runc.Overhead = &RuntimeClassOverhead{PodFixed: map[string]string{"cpu": "1"}}
	selOnly := rc("a")
	selOnly.Scheduling = &RuntimeClassScheduling{NodeSelector: map[string]string{"zone": ""}}

	for _, c := range []struct {
		name, src string
		want      []RuntimeClass
	}{
		{"runc only", "containerd: {}\n", []RuntimeClass{rc("runc")}},
		{"the containerd component implies containerd", "components:\n  containerd: {version: 2.1.4}\n", []RuntimeClass{rc("runc")}},
		{"runc first, then by name", "containerd:\n  runtimes:\n    zz: {type: io.containerd.x.v1}\n    kata: {type: io.containerd.kata.v2, overhead: {cpu: 250m, memory: 160Mi}, nodeSelector: {katacontainers.io/kata-runtime: \"true\"}}\n    a: {type: io.containerd.x.v1, nodeSelector: {zone: \"\"}}\n",
			[]RuntimeClass{rc("runc"), selOnly, kata, rc("zz")}},
		{"only memory", "containerd:\n  runtimes:\n    gvisor: {type: io.containerd.runsc.v1, overhead: {memory: 64Mi}}\n",
			[]RuntimeClass{rc("runc"), memOnly}},
		{"runtimes.runc replaces the built-in runc", "containerd:\n  runtimes:\n    runc: {type: io.containerd.runc.v2, overhead: {cpu: 1}}\n",
			[]RuntimeClass{runc}},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := Load("t.yaml", []byte(header+c.src))
			if err != nil {
				t.Fatal(err)
			}
			got, err := RuntimeClasses(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestRuntimeClassesErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      []string
	}{
		{"no containerd", "kernel: {modules: [overlay]}\n",
			[]string{"t.yaml: the spec configures no containerd"}},
		{"handlers that are not DNS labels", "containerd:\n  runtimes:\n    kata_qemu: {type: io.containerd.kata.v2}\n    ok: {type: io.containerd.kata.v2}\n    kata-: {type: io.containerd.kata.v2}\n",
			[]string{`t.yaml:5:5: containerd.runtimes.kata_qemu: runtime handler "kata_qemu" cannot have a Kubernetes RuntimeClass`,
				`t.yaml:7:5: containerd.runtimes.kata-: runtime handler "kata-" cannot have`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, err := Load("t.yaml", []byte(header+c.src))
			if err != nil {
				t.Fatal(err)
			}
			rcs, err := RuntimeClasses(doc)
			var ds *Diagnostics
			if !errors.As(err, &ds) || rcs != nil {
				t.Fatalf("got %v, %v; want *Diagnostics and no RuntimeClasses", rcs, err)
			}
			if len(ds.Items) != len(c.want) {
				t.Fatalf("%d diagnostics, want %d:\n%s", len(ds.Items), len(c.want), ds.Pretty())
			}
			for i, w := range c.want {
				if !strings.HasPrefix(ds.Items[i].String(), w) {
					t.Errorf("diagnostic %d = %q, want it to start with %q", i, ds.Items[i], w)
				}
			}
		})
	}
}

func TestRuntimeClassDiagnostics(t *testing.T) {
	rt := "containerd:\n  runtimes:\n    kata:\n      type: io.containerd.kata.v2\n"
	for _, c := range []struct {
		name, src string
		want      []string // prefixes; "head … tail": a prefix and a substring
	}{
		{"quantities as strings and numbers", rt + "      overhead: {cpu: 0.5, memory: 1e9}\n", nil},
		{"negative", rt + "      overhead: {cpu: -1}\n",
			[]string{`7:23: containerd.runtimes.kata.overhead.cpu: quantity "-1" is negative`}},
		{"not a quantity, with a minus", rt + "      overhead: {cpu: -x}\n",
			[]string{`7:23: containerd.runtimes.kata.overhead.cpu: invalid quantity "-x"`}},
		{"not a quantity", rt + "      overhead: {memory: 1.5GB}\n",
			[]string{`7:26: containerd.runtimes.kata.overhead.memory: invalid quantity "1.5GB": expected a Kubernetes quantity such as 160Mi or 1Gi`}},
		{"a boolean", rt + "      overhead: {cpu: true}\n",
			[]string{`7:23: containerd.runtimes.kata.overhead.cpu: expected a quantity such as 250m or 160Mi, got a boolean`}},
		{"empty overhead", rt + "      overhead: {}\n",
			[]string{`7:17: containerd.runtimes.kata.overhead: overhead needs cpu, memory or both`}},
		{"bad label key at the key", rt + "      nodeSelector:\n        \"Example.com/zone\": a\n",
			[]string{`8:9: containerd.runtimes.kata.nodeSelector["Example.com/zone"]: invalid label key "Example.com/zone"`}},
		{"bad label value at the value", rt + "      nodeSelector:\n        zone: \"-a\"\n",
			[]string{`8:15: containerd.runtimes.kata.nodeSelector.zone: invalid label value "-a"`}},
		{"a boolean label value", rt + "      nodeSelector:\n        kata: true\n",
			[]string{`8:15: containerd.runtimes.kata.nodeSelector.kata: expected a string, got a boolean true; quote it`}},
		{"label key prefix over 253 characters", rt + "      nodeSelector:\n        " + dnsSubdomain(254) + "/zone: a\n",
			[]string{`8:9: containerd.runtimes.kata.nodeSelector["aaa … : invalid label key: its prefix is 254 characters; a DNS subdomain has at most 253`}},
		{"handler that no RuntimeClass can name", "containerd:\n  runtimes:\n    kata_qemu:\n      type: io.containerd.kata.v2\n      overhead: {cpu: 250m}\n",
			[]string{`5:5: containerd.runtimes.kata_qemu: runtime handler "kata_qemu" has overhead or nodeSelector, which go into a Kubernetes RuntimeClass, and a RuntimeClass handler must be a DNS label`}},
		{"such a handler is fine without them", "containerd:\n  runtimes:\n    kata_qemu: {type: io.containerd.kata.v2}\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := diags(t, header+c.src)
			if len(got) != len(c.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, w := range c.want {
				head, tail, _ := strings.Cut(w, " … ")
				if !strings.HasPrefix(got[i], head) || !strings.Contains(got[i], tail) {
					t.Errorf("diagnostic %d = %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// dnsSubdomain returns a valid DNS subdomain of n characters: labels of
// at most 63 characters joined by dots.
func dnsSubdomain(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("a", min(63, n-b.Len())))
	}
	s := b.String()
	if strings.HasSuffix(s, ".") {
		s = s[:len(s)-1] + "b"
	}
	return s
}

// TestQuantitiesAgreeWithKubernetes: validate accepts an overhead quantity
// exactly when Kubernetes parses it as a quantity that is not negative
// (what the API server checks of a RuntimeClass's overhead.podFixed),
// except for the strings without digits that Kubernetes' parser reads as
// zero: validate follows the grammar documented with resource.Quantity,
// in which a quantity starts with a number.
func TestQuantitiesAgreeWithKubernetes(t *testing.T) {
	noDigits := []string{"Mi", "m", "e3", ".", "+"}
	for _, q := range append([]string{
		"0", "1", "250m", "0.5", ".5", "1.", "0.25", "160Mi", "1.5Gi", "1Ki", "2Ti", "1Pi", "1Ei",
		"100n", "10u", "1k", "1M", "1G", "1T", "1P", "1E", "1e3", "1E3", "1e-3", "1e+3", "5e0",
		"+1", "+250m", "000250m", "12345678901234567890", "0.000000001",
		"-1", "-250m", "-1Gi", "1.5GB", "1KI", "1ki", "1K", "1mi", "1MI", "1e",
		"1e1.5", "1.2.3", "1m1", "1Mi1", "1ii", " 1", "1 ", "1,5", "0x10", "1_000", "NaN", "Inf", "1 Gi",
	}, noDigits...) {
		src := header + "containerd:\n  runtimes:\n    kata:\n      type: io.containerd.kata.v2\n      overhead: {cpu: " + strconv.Quote(q) + "}\n"
		ours := len(diags(t, src)) == 0
		parsed, err := resource.ParseQuantity(q)
		theirs := err == nil && parsed.Sign() >= 0
		if slices.Contains(noDigits, q) {
			theirs = false
			if err != nil {
				t.Errorf("Kubernetes no longer parses %q (%v): drop the exception", q, err)
			}
		}
		if ours != theirs {
			t.Errorf("quantity %q: validate accepts it: %v; want %v (Kubernetes: %v)", q, ours, theirs, err)
		}
	}
}

// TestLabelsAgreeWithKubernetes: validate accepts a nodeSelector key and
// value exactly when Kubernetes' label validation does.
func TestNodeNamesAgreeWithKubernetes(t *testing.T) {
	for _, name := range []string{
		"worker-1", "ip-10-0-0-1.ec2.internal", "a", "0", dnsSubdomain(253), dnsSubdomain(254),
		"Worker", "a_b", "-a", "a-", ".a", "a.", "a..b", "a.-b", "é", "a b", strings.Repeat("a", 64),
	} {
		src := header + "machineID:\n  fleet: {kubeconfig: /k, nodeName: " + strconv.Quote(name) + "}\n"
		ours := len(diags(t, src)) == 0
		errs := validation.IsDNS1123Subdomain(name)
		if theirs := len(errs) == 0; ours != theirs {
			t.Errorf("node name %q: validate accepts it: %v; Kubernetes: %v %q", name, ours, theirs, errs)
		}
	}
}

func TestLabelsAgreeWithKubernetes(t *testing.T) {
	name63 := strings.Repeat("a", 63)
	for _, key := range []string{
		"zone", "a", "A", "kubernetes.io/arch", "node.kubernetes.io/instance-type", "example.com/a_b.c-D",
		"katacontainers.io/kata-runtime", name63, name63 + "a", "x/" + name63, "x/" + name63 + "a",
		dnsSubdomain(253) + "/a", dnsSubdomain(254) + "/a", strings.Repeat("b", 100) + ".com/a",
		"a/b/c", "/a", "a/", "Example.com/a", "-a", "a-", "a_", "_a", ".a", "a.b", "a..b/c", "a.-b/c",
		"ex_ample.com/x", "a b", "é", "a:b",
	} {
		src := header + "containerd:\n  runtimes:\n    kata:\n      type: io.containerd.kata.v2\n      nodeSelector: {" + strconv.Quote(key) + ": v}\n"
		ours := len(diags(t, src)) == 0
		errs := validation.IsQualifiedName(key)
		if theirs := len(errs) == 0; ours != theirs {
			t.Errorf("label key %q: validate accepts it: %v; Kubernetes: %v %q", key, ours, theirs, errs)
		}
	}
	for _, val := range []string{
		"", "true", "a", "A-b_c.d", "0", name63, name63 + "a", "-a", "a-", ".a", "a.", "_a", "a b", "ä", "a/b",
	} {
		src := header + "containerd:\n  runtimes:\n    kata:\n      type: io.containerd.kata.v2\n      nodeSelector: {zone: " + strconv.Quote(val) + "}\n"
		ours := len(diags(t, src)) == 0
		errs := validation.IsValidLabelValue(val)
		if theirs := len(errs) == 0; ours != theirs {
			t.Errorf("label value %q: validate accepts it: %v; Kubernetes: %v %q", val, ours, theirs, errs)
		}
	}
}
