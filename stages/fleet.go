package stages

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nodeprov/nodeprov/stages/host"
	"github.com/nodeprov/nodeprov/stages/kube"
)

// FleetGroup is a set of Nodes reporting one machine id or system UUID
// (kube.Group).
type FleetGroup = kube.Group

// Identity fields of a FleetGroup.
const (
	FleetMachineID  = kube.FieldMachineID
	FleetSystemUUID = kube.FieldSystemUUID
)

// FleetCheckOptions configure FleetCheck.
type FleetCheckOptions struct {
	// Kubeconfig is a kubeconfig on this host whose identity may list
	// nodes.
	Kubeconfig string
	// PageSize is how many Nodes one list request asks for (0: 500).
	PageSize int
	// Timeout bounds the whole listing (0: no bound but the caller's).
	Timeout time.Duration
}

// FleetReport is `nodeprov fleet check`'s outcome. OK is false when a group
// of Nodes shares an identity or when the check failed (Error).
type FleetReport struct {
	Command    string `json:"command"`
	Kubeconfig string `json:"kubeconfig"`
	// Server is the API server's URL; Nodes how many Nodes it listed.
	Server string `json:"server,omitempty"`
	Nodes  int    `json:"nodes"`
	// Duplicates are the groups of Nodes sharing a machine id or system
	// UUID, sorted by field and value; empty values are ignored.
	Duplicates []FleetGroup `json:"duplicates"`
	OK         bool         `json:"ok"`
	DurationMs float64      `json:"durationMs"`
	Error      *ErrorReport `json:"error,omitempty"`
	start      time.Time
}

// FleetCheck lists the Nodes of the cluster the kubeconfig names and
// groups those that share a machine id or a system UUID (`nodeprov fleet
// check`). A failure (an unreadable kubeconfig, an unreachable server, a
// 401 or 403) is the report's Error, class "fleet".
func FleetCheck(ctx context.Context, o FleetCheckOptions) *FleetReport {
	rep := &FleetReport{Command: "fleet check", Kubeconfig: o.Kubeconfig, Duplicates: []FleetGroup{}, start: time.Now()}
	nodes, server, err := fleetNodes(ctx, o)
	rep.Server = server
	rep.DurationMs = ms(time.Since(rep.start))
	if err != nil {
		rep.Error = &ErrorReport{Message: err.Error(), Class: "fleet"}
		return rep
	}
	rep.Nodes = len(nodes)
	if groups := kube.Duplicates(nodes); groups != nil {
		rep.Duplicates = groups
	}
	rep.OK = len(rep.Duplicates) == 0
	return rep
}

// fleetNodes reads the kubeconfig (and the files it names) on this host
// and lists the Nodes.
func fleetNodes(ctx context.Context, o FleetCheckOptions) ([]kube.Node, string, error) {
	abs, err := filepath.Abs(o.Kubeconfig)
	if err != nil {
		return nil, "", err
	}
	r, err := host.OpenRoot("/")
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	read := func(p string) ([]byte, error) {
		data, exists, err := r.ReadFile(p)
		if err == nil && !exists {
			err = fmt.Errorf("%s does not exist", p)
		}
		return data, err
	}
	data, err := read(abs)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, err := kube.LoadConfig(abs, data, read)
	if err != nil {
		return nil, "", err
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		return nil, cfg.Server.String(), err
	}
	defer c.Close()
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	nodes, err := c.ListNodes(ctx, o.PageSize)
	return nodes, cfg.Server.String(), err
}
