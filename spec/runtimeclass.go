package spec

import (
	"bytes"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"
)

// RuntimeClass is a Kubernetes node.k8s.io/v1 RuntimeClass with the fields
// nodeprov fills in, keyed as Kubernetes keys them. nodeprov writes the
// manifests itself, keeping Kubernetes' API packages out of the binary;
// its tests decode them strictly into k8s.io/api's type.
type RuntimeClass struct {
	APIVersion string                  `json:"apiVersion" yaml:"apiVersion"`
	Kind       string                  `json:"kind" yaml:"kind"`
	Metadata   ObjectMeta              `json:"metadata" yaml:"metadata"`
	Handler    string                  `json:"handler" yaml:"handler"`
	Overhead   *RuntimeClassOverhead   `json:"overhead,omitempty" yaml:"overhead,omitempty"`
	Scheduling *RuntimeClassScheduling `json:"scheduling,omitempty" yaml:"scheduling,omitempty"`
}

// ObjectMeta is the part of a Kubernetes object's metadata nodeprov sets.
type ObjectMeta struct {
	Name string `json:"name" yaml:"name"`
}

// RuntimeClassOverhead is a RuntimeClass's overhead.
type RuntimeClassOverhead struct {
	// PodFixed maps resource names (cpu, memory) to quantities.
	PodFixed map[string]string `json:"podFixed" yaml:"podFixed"`
}

// RuntimeClassScheduling is a RuntimeClass's scheduling.
type RuntimeClassScheduling struct {
	NodeSelector map[string]string `json:"nodeSelector" yaml:"nodeSelector"`
}

// KubernetesList is a Kubernetes v1 List: what `kubectl get -o json`
// prints for several objects, and what `kubectl apply -f` reads back (a
// bare JSON array is not a Kubernetes object, and kubectl rejects it).
type KubernetesList struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Items      []RuntimeClass `json:"items"`
}

// RuntimeClasses returns a RuntimeClass for every runtime handler nodeprov
// renders into containerd's config, named after its handler: runc first
// (always there; containerd.runtimes.runc, if present, replaces it as in
// the config), then containerd.runtimes by name. runc gets one too,
// although pods without a runtimeClassName run on the default runtime:
// with it a pod can ask for runc where defaultRuntime is another handler,
// or on nodes whose default differs.
//
// A handler that is not a DNS label (containerd accepts '_', Kubernetes
// does not) cannot have a RuntimeClass; the error is then *Diagnostics
// pointing at it, as when a spec that does not use containerd has no
// handlers at all.
func RuntimeClasses(doc *Document) ([]RuntimeClass, error) {
	sink := &diagSink{file: doc.File}
	c := doc.Spec.Containerd
	if c == nil {
		sink.add(Pos{}, "", "the spec configures no containerd (no containerd section and no containerd component), so nodeprov renders no runtime handlers")
		return nil, sink.result(doc.Source)
	}
	runtimes := maps.Clone(c.Runtimes)
	if runtimes == nil {
		runtimes = map[string]Runtime{}
	}
	if _, ok := runtimes["runc"]; !ok {
		runtimes["runc"] = Runtime{}
	}
	names := slices.Sorted(maps.Keys(runtimes))
	if i := slices.Index(names, "runc"); i > 0 {
		names = slices.Insert(slices.Delete(names, i, i+1), 0, "runc")
	}
	var out []RuntimeClass
	for _, name := range names {
		if !dnsLabel().MatchString(name) {
			p := keyPath("containerd.runtimes", name)
			sink.add(doc.keyPos[p], p, "runtime handler %q cannot have a Kubernetes RuntimeClass: a RuntimeClass handler must be a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit); rename the handler", name)
			continue
		}
		out = append(out, runtimeClass(name, runtimes[name]))
	}
	if err := sink.result(doc.Source); err != nil {
		return nil, err
	}
	return out, nil
}

// runtimeClass is the RuntimeClass of one handler.
func runtimeClass(name string, rt Runtime) RuntimeClass {
	rc := RuntimeClass{APIVersion: "node.k8s.io/v1", Kind: "RuntimeClass", Metadata: ObjectMeta{Name: name}, Handler: name}
	if o := rt.Overhead; o != nil && (o.CPU != "" || o.Memory != "") {
		fixed := map[string]string{}
		if o.CPU != "" {
			fixed["cpu"] = string(o.CPU)
		}
		if o.Memory != "" {
			fixed["memory"] = string(o.Memory)
		}
		rc.Overhead = &RuntimeClassOverhead{PodFixed: fixed}
	}
	if len(rt.NodeSelector) > 0 {
		rc.Scheduling = &RuntimeClassScheduling{NodeSelector: maps.Clone(rt.NodeSelector)}
	}
	return rc
}

// RuntimeClassesYAML renders RuntimeClasses as a YAML stream, one document
// each, as `kubectl apply -f -` reads it.
func RuntimeClassesYAML(rcs []RuntimeClass) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, rc := range rcs {
		if err := enc.Encode(rc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// NewKubernetesList wraps RuntimeClasses in a v1 List for JSON output.
func NewKubernetesList(rcs []RuntimeClass) KubernetesList {
	return KubernetesList{APIVersion: "v1", Kind: "List", Items: append([]RuntimeClass{}, rcs...)}
}
