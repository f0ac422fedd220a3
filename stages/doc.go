// Package stages runs nodeprov's pipeline on a target root: a loaded spec
// (package spec) is planned and applied by ten stages in a fixed order,
// and the outcome is a report.
//
//	preflight   stages/preflight   host probes, k0s sysinfo style
//	machine-id  stages/machineid   identity checks; seal for images
//	kernel      stages/kernel      modules and sysctls, live then persisted
//	fetch       stages/artifacts   verified downloads into the cache
//	install     stages/artifacts   artifacts from the cache into place
//	files       stages/files       the spec's files, directories, links
//	containerd  stages/containerd  config.toml, drop-ins, hosts.toml, CNI, crictl
//	docker      stages/docker      daemon.json, the docker group; with docker.cri
//	                               cri-dockerd's CNI and crictl (stages/cri)
//	units       stages/units       systemd units, live (D-Bus) or offline
//	images      stages/images      image archives into containerd's k8s.io
//	                               namespace (live, once containerd runs)
//
// Each stage implements plan.Stage: it compares desired with actual state
// and returns actions (stages/plan); plan and check stop there, apply runs
// them (runner.go) and later stages see what earlier ones changed.
// Execute (execute.go) is the entry point: it takes the run lock, builds
// the environment and writes the last-run record; report.go and text.go
// are the JSON and text outputs. stages/host is the only code that touches
// the machine; stages/archive, stages/textdiff and stages/cri are shared
// helpers, and stages/kube is the small Kubernetes API client of the
// machine-id stage's fleet check and `nodeprov fleet check`. No
// stage package imports another (TestImportRules): the fetch and install
// stages share one package, and what they hand each other stays in it.
// commands.go holds the policy of lock, fetch --to, seal and sysinfo, so
// that cmd/nodeprov only parses flags and prints; mirror.go that of
// `nodeprov mirror`; sysext.go builds systemd-sysext images (the fetch and
// install stages into a staging tree, relocated for /usr and /opt by
// sysext_layout.go, with the units of sysext_units.go).
package stages
