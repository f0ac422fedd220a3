// Package spec is nodeprov's node spec (apiVersion nodeprov/v1alpha1): the
// first step of the pipeline, load → expand → plan → apply → report.
//
// Where each part lives:
//   - types.go: the Go types of the spec; the JSON Schema (package schema)
//     is generated from them.
//   - load.go, decode.go: strict decoding through yaml.Node, so every
//     problem is reported at once as file:line:col with the key path
//     (diag.go formats them, with the source line and a caret); YAML merge
//     keys and aliases are resolved within a node budget.
//   - validate.go: every rule a value must meet; defaults.go fills defaults
//     after validation.
//   - catalog.go, expand.go: components (containerd, runc, CNI, gVisor,
//     crictl, Kata) expanded, with mirrors, into the plain artifacts the
//     fetch and install stages see (files, archive members, links).
//   - lock.go: nodeprov.lock, the pinned digests and how each was trusted.
//   - redact.go: the one redaction every output goes through.
//   - userdata/: cloud-init user data for first boot.
//   - runtimeclass.go: a Kubernetes RuntimeClass for every containerd
//     runtime handler (nodeprov runtimeclasses).
//
// spec imports none of nodeprov's other packages; the stages (package
// stages) plan and apply what it describes.
package spec
