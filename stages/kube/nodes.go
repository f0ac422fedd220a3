package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// DefaultPageSize is how many Nodes one list request asks for: pages keep
// each answer (Nodes carry their image lists) and the API server's work
// per request bounded on large fleets.
const DefaultPageSize = 500

// maxPages stops a server that keeps answering with a continue token.
const maxPages = 100_000

// Node is the identity a Node reports: its name and what the kubelet read
// from the host.
type Node struct {
	Name string `json:"name"`
	// MachineID is status.nodeInfo.machineID (/etc/machine-id).
	MachineID string `json:"machineID,omitempty"`
	// SystemUUID is status.nodeInfo.systemUUID (the DMI product UUID).
	SystemUUID string `json:"systemUUID,omitempty"`
}

// nodeList is the part of a v1 NodeList nodeprov reads.
type nodeList struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			NodeInfo struct {
				MachineID  string `json:"machineID"`
				SystemUUID string `json:"systemUUID"`
			} `json:"nodeInfo"`
		} `json:"status"`
	} `json:"items"`
}

// RBACHint says what a 403 on listing Nodes means. Kubelets authorized
// by the Node authorizer can read Nodes, but a bootstrap token (group
// system:bootstrappers) can only create certificate signing requests.
const RBACHint = "the identity needs a ClusterRole with nodes get and list bound to it " +
	"(kubectl create clusterrole nodeprov-fleet --verb=get,list --resource=nodes; " +
	"kubectl create clusterrolebinding nodeprov-fleet --clusterrole=nodeprov-fleet --user=NAME or --group=NAME); " +
	"a kubelet bootstrap token does not have it"

// ListNodes lists every Node, pageSize at a time (DefaultPageSize when
// 0), following the API's continue tokens.
func (c *Client) ListNodes(ctx context.Context, pageSize int) ([]Node, error) {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	var nodes []Node
	cont := ""
	for page := 0; page < maxPages; page++ {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var list nodeList
		if err := c.get(ctx, "/api/v1/nodes", q, &list); err != nil {
			return nil, listError(c.cfg, err, cont != "")
		}
		for _, it := range list.Items {
			nodes = append(nodes, Node{Name: it.Metadata.Name, MachineID: it.Status.NodeInfo.MachineID, SystemUUID: it.Status.NodeInfo.SystemUUID})
		}
		if cont = list.Metadata.Continue; cont == "" {
			return nodes, nil
		}
	}
	return nil, fmt.Errorf("list nodes at %s: still more after %d pages", c.cfg.Server, maxPages)
}

// listError adds what a failed list means for nodeprov.
func listError(cfg *Config, err error, paging bool) error {
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Code == http.StatusForbidden:
			ae.Hint = fmt.Sprintf("user %q in %s may not list nodes: %s", cfg.User, cfg.File, RBACHint)
		case ae.Code == http.StatusGone && paging:
			ae.Hint = "the Node list changed too much while it was read page by page (continue token expired); run again"
		}
	}
	return fmt.Errorf("list nodes: %w", err)
}
