package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Machine ids and system UUIDs of the test's Nodes. idA is reported by
// node-a and node-c: the planted duplicate.
const (
	fleetIDA = "0123456789abcdef0123456789abcdef"
	fleetIDB = "fedcba9876543210fedcba9876543210"
	fleetIDD = "00112233445566778899aabbccddeeff"
	fleetIDE = "ffeeddccbbaa99887766554433221100"
)

// fleetReport mirrors the documented JSON of `nodeprov fleet check`.
type fleetReport struct {
	Command    string `json:"command"`
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	Nodes      int    `json:"nodes"`
	Duplicates []struct {
		Field string   `json:"field"`
		Value string   `json:"value"`
		Nodes []string `json:"nodes"`
	} `json:"duplicates"`
	OK    bool `json:"ok"`
	Error *struct {
		Message, Class string
	} `json:"error"`
}

// fleetIdentities are the kubeconfigs of the test: a reader bound to the
// documented ClusterRole (client certificate files next to it), a real
// kubelet bootstrap token (no right to list nodes), a token the server does
// not know, and a server nobody listens on.
type fleetIdentities struct {
	dir                                     string
	reader, bootstrap, unknown, unreachable string
}

func writeFleetKubeconfigs(t *testing.T, c *kubeCluster) fleetIdentities {
	t.Helper()
	dir := filepath.Join(c.dir, "kubeconfigs")
	ca, err := os.ReadFile(c.pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFileT(t, filepath.Join(dir, "pki", "ca.crt"), ca)
	cert, key := c.clientCert(t, "fleet-reader")
	writeFileT(t, filepath.Join(dir, "pki", "fleet-reader.crt"), cert)
	writeFileT(t, filepath.Join(dir, "pki", "fleet-reader.key"), key)
	ids := fleetIdentities{dir: dir}
	for _, k := range []struct {
		path *string
		name string
		cfg  kubeconfig
	}{
		{&ids.reader, "fleet.conf", kubeconfig{kubeServer, "pki/ca.crt", "{client-certificate: pki/fleet-reader.crt, client-key: pki/fleet-reader.key}"}},
		{&ids.bootstrap, "bootstrap.conf", kubeconfig{kubeServer, "pki/ca.crt", "{token: " + bootstrapTok + "}"}},
		{&ids.unknown, "unknown.conf", kubeconfig{kubeServer, "pki/ca.crt", "{token: zyxwvu.zyxwvutsrqponmlk}"}},
		{&ids.unreachable, "unreachable.conf", kubeconfig{"https://127.0.0.1:6444", "pki/ca.crt", "{token: " + bootstrapTok + "}"}},
	} {
		*k.path = filepath.Join(dir, k.name)
		writeFileT(t, *k.path, []byte(k.cfg.String()))
	}
	return ids
}

// TestFleetMachineID runs `nodeprov fleet check` and the machine-id stage's
// machineID.fleet against a real kube-apiserver and etcd: Nodes created
// through the API with the identities their kubelets would report, two of
// them sharing a machine id and two a system UUID.
func TestFleetMachineID(t *testing.T) {
	c := startKubeCluster(t)
	c.grantNodeReader(t, "fleet-reader")
	c.createBootstrapToken(t)
	ids := writeFleetKubeconfigs(t, c)
	c.createNode(t, "node-a", fleetIDA, "4c4c4544-0001-1000-8000-000000000001")
	c.createNode(t, "node-b", fleetIDB, "EC2A1B2C-0000-0000-0000-00000000000B")
	c.createNode(t, "node-c", fleetIDA, "4c4c4544-0001-1000-8000-000000000003")
	c.createNode(t, "node-d", fleetIDD, "ec2a1b2c-0000-0000-0000-00000000000b")
	c.createNode(t, "node-e", "", "") // a kubelet that has not reported yet

	t.Run("check finds the planted duplicates", func(t *testing.T) {
		// Two Nodes a page: the list takes three requests.
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.reader, "--page-size", "2")
		if r.code != 3 {
			t.Fatalf("want exit 3 for duplicates: %s", r)
		}
		for _, want := range []string{
			"fleet check: 5 Nodes at " + kubeServer + "\n",
			"  duplicate machine id " + fleetIDA + ": 2 Nodes: node-a, node-c\n",
			"  duplicate system UUID ec2a1b2c-0000-0000-0000-00000000000b: 2 Nodes: node-b, node-d\n",
			"fleet check: 2 groups of Nodes share an identity\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		t.Logf("nodeprov fleet check:\n%s", r.stdout)
	})

	t.Run("check -o json", func(t *testing.T) {
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.reader, "-o", "json")
		if r.code != 3 {
			t.Fatalf("want exit 3: %s", r)
		}
		var rep fleetReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, r.stdout)
		}
		type group struct {
			Field, Value string
			Nodes        []string
		}
		var got []group
		for _, g := range rep.Duplicates {
			got = append(got, group{g.Field, g.Value, g.Nodes})
		}
		want := []group{{"machineID", fleetIDA, []string{"node-a", "node-c"}}, {"systemUUID", "ec2a1b2c-0000-0000-0000-00000000000b", []string{"node-b", "node-d"}}}
		if rep.Command != "fleet check" || rep.OK || rep.Nodes != 5 || rep.Server != kubeServer || rep.Kubeconfig != ids.reader || !reflect.DeepEqual(got, want) {
			t.Errorf("report %+v\ngroups %+v, want %+v", rep, got, want)
		}
	})

	t.Run("a bootstrap token may not list nodes", func(t *testing.T) {
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.bootstrap)
		if r.code != 1 {
			t.Fatalf("want exit 1: %s", r)
		}
		for _, want := range []string{
			"fleet check: list nodes: GET " + kubeServer + "/api/v1/nodes?limit=500: 403 Forbidden",
			`User "system:bootstrap:` + bootstrapID + `" cannot list resource "nodes"`,
			`user "e2e-user" in ` + ids.bootstrap + " may not list nodes: the identity needs a ClusterRole with nodes get and list bound to it",
			"a kubelet bootstrap token does not have it",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		noSecret(t, r, strings.Split(bootstrapTok, ".")[1])
	})

	t.Run("an unknown token is 401", func(t *testing.T) {
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.unknown, "-o", "json")
		var rep fleetReport
		json.Unmarshal([]byte(r.stdout), &rep)
		want := "401 Unauthorized; the API server did not accept the bearer token of user \"e2e-user\" in " + ids.unknown
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, want) || !strings.Contains(r.stderr, want) {
			t.Errorf("want exit 1 and %q: %s", want, r)
		}
		noSecret(t, r, "zyxwvutsrqponmlk")
	})

	t.Run("an unreachable server", func(t *testing.T) {
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.unreachable)
		want := "fleet check: list nodes: cannot reach the Kubernetes API at https://127.0.0.1:6444/api/v1/nodes?limit=500: dial tcp 127.0.0.1:6444: connect: connection refused"
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("want exit 1 and %q: %s", want, r)
		}
	})

	t.Run("stage", func(t *testing.T) { testFleetStage(t, c, ids) })

	t.Run("check without duplicates", func(t *testing.T) {
		c.deleteNode(t, "node-c")
		c.deleteNode(t, "node-d")
		r := c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.reader)
		if r.code != 0 || !strings.Contains(r.stdout, "fleet check: no two Nodes share a machine id or a system UUID") {
			t.Fatalf("want exit 0: %s", r)
		}
		r = c.nodeprov(t, "fleet", "check", "--kubeconfig", ids.reader, "-o", "json")
		var rep fleetReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.OK || len(rep.Duplicates) != 0 || rep.Nodes < 3 {
			t.Errorf("want exit 0 and ok: %v %s", err, r)
		}
	})
}

// testFleetStage applies the machine-id stage live to sandbox roots whose
// /etc/machine-id is node-a's, under each policy.
func testFleetStage(t *testing.T, c *kubeCluster, ids fleetIdentities) {
	// newRoot is a sandbox root with the id and the reader's kubeconfig
	// (and its certificate files) under /etc/nodeprov.
	newRoot := func(t *testing.T, id string) string {
		root := sandbox(t)
		writeFileT(t, filepath.Join(root, "etc/machine-id"), []byte(id+"\n"))
		for _, f := range []string{"fleet.conf", "bootstrap.conf", "pki/ca.crt", "pki/fleet-reader.crt", "pki/fleet-reader.key"} {
			b, err := os.ReadFile(filepath.Join(ids.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFileT(t, filepath.Join(root, "etc/nodeprov", f), b)
		}
		return root
	}
	specFor := func(t *testing.T, policy, kubeconfig, nodeName string) string {
		s := "apiVersion: nodeprov/v1alpha1\nkind: Node\nmachineID:\n  policy: " + policy + "\n  fleet:\n    kubeconfig: " + kubeconfig + "\n"
		if nodeName != "" {
			s += "    nodeName: " + nodeName + "\n"
		}
		return writeSpec(t, s)
	}
	apply := func(t *testing.T, root, spec string, prefix ...string) (result, report) {
		r := c.nodeprovIn(t, prefix, "apply", "--root", root, "--live", "yes", "--stages", "machine-id", "-o", "json", spec)
		return r, parseReport(t, r.stdout)
	}
	machineID := func(t *testing.T, root string) string {
		return strings.TrimSpace(readFile(t, filepath.Join(root, "etc/machine-id")))
	}
	fleetDetail := func(rep report) string {
		for _, s := range rep.Stages {
			for _, a := range s.Actions {
				if a.Resource == "machine-id fleet" {
					return a.Op + " " + a.Detail
				}
			}
		}
		return ""
	}
	const duplicate = `machine-id.fleet-duplicate: Node "node-b" already reports machine id fedc…3210 (Kubernetes API ` + kubeServer +
		`, kubeconfig /etc/nodeprov/fleet.conf): this host, Node "node-new", would join as a duplicate`

	t.Run("fail", func(t *testing.T) {
		root := newRoot(t, fleetIDB)
		r, rep := apply(t, root, specFor(t, "fail", "/etc/nodeprov/fleet.conf", "node-new"))
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, duplicate) || rep.Error.Stage != "machine-id" {
			t.Fatalf("want exit 1 naming %q: %s", duplicate, r)
		}
		if got := machineID(t, root); got != fleetIDB {
			t.Errorf("policy fail changed /etc/machine-id to %s", got)
		}
		// node-a's id is node-c's too: a host named node-a still meets
		// node-c.
		r, rep = apply(t, newRoot(t, fleetIDA), specFor(t, "fail", "/etc/nodeprov/fleet.conf", ""), "unshare", "--uts", "--", "sh", "-c", `hostname node-a && exec "$@"`, "sh")
		want := `Node "node-c" already reports machine id 0123…cdef`
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, want) {
			t.Errorf("want exit 1 naming %q: %s", want, r)
		}
		r, rep = apply(t, newRoot(t, fleetIDA), specFor(t, "fail", "/etc/nodeprov/fleet.conf", "node-new"))
		want = `Nodes "node-a", "node-c" already report machine id 0123…cdef`
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, want) {
			t.Errorf("want exit 1 naming %q: %s", want, r)
		}
	})

	t.Run("warn", func(t *testing.T) {
		root := newRoot(t, fleetIDB)
		r, rep := apply(t, root, specFor(t, "warn", "/etc/nodeprov/fleet.conf", "node-new"))
		if r.code != 0 || !strings.Contains(strings.Join(reportWarnings(t, r.stdout), "\n"), duplicate) || rep.Changed != 0 {
			t.Fatalf("want exit 0 and a warning %q: %s", duplicate, r)
		}
		if got := machineID(t, root); got != fleetIDB {
			t.Errorf("policy warn changed /etc/machine-id to %s", got)
		}
	})

	t.Run("regenerate", func(t *testing.T) {
		root := newRoot(t, fleetIDB)
		spec := specFor(t, "regenerate", "/etc/nodeprov/fleet.conf", "node-new")
		r, rep := apply(t, root, spec)
		if r.code != 0 || rep.Changed != 1 || rep.statuses()["machine-id /etc/machine-id"] != "changed" {
			t.Fatalf("want the id regenerated: %s", r)
		}
		id := machineID(t, root)
		if id == fleetIDB || len(id) != 32 {
			t.Fatalf("/etc/machine-id is %q after regenerate", id)
		}
		// The new id is no other Node's: a second run changes nothing.
		r, rep = apply(t, root, spec)
		if r.code != 0 || rep.Changed != 0 || !strings.Contains(fleetDetail(rep), "no other Node of 5 reports") {
			t.Errorf("second apply: fleet %q: %s", fleetDetail(rep), r)
		}
	})

	t.Run("a host's own Node is no duplicate", func(t *testing.T) {
		root := newRoot(t, fleetIDB)
		r, rep := apply(t, root, specFor(t, "fail", "/etc/nodeprov/fleet.conf", "node-b"))
		if r.code != 0 || !strings.Contains(fleetDetail(rep), `no other Node of 5 reports fedc…3210 (this host is Node "node-b"; `+kubeServer+")") {
			t.Errorf("fleet %q: %s", fleetDetail(rep), r)
		}
	})

	t.Run("node name defaults to the host name", func(t *testing.T) {
		// In a UTS namespace with a host name in mixed case: the kubelet
		// registers it in lower case, and so does the check.
		in := func(hostname string) []string {
			return []string{"unshare", "--uts", "--", "sh", "-c", `hostname "$0" && exec "$@"`, hostname}
		}
		root := newRoot(t, fleetIDB)
		spec := specFor(t, "fail", "/etc/nodeprov/fleet.conf", "")
		if r, rep := apply(t, root, spec, in("Node-B")...); r.code != 0 || !strings.Contains(fleetDetail(rep), `this host is Node "node-b"`) {
			t.Errorf("host name Node-B: fleet %q: %s", fleetDetail(rep), r)
		}
		r, rep := apply(t, root, spec, in("node-z")...)
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, `this host, Node "node-z", would join as a duplicate`) {
			t.Errorf("host name node-z: want the duplicate: %s", r)
		}
	})

	t.Run("a bootstrap token fails the stage with the RBAC it lacks", func(t *testing.T) {
		root := newRoot(t, fleetIDE)
		r, rep := apply(t, root, specFor(t, "regenerate", "/etc/nodeprov/bootstrap.conf", "node-new"))
		want := `machineID.fleet: list nodes: GET ` + kubeServer + `/api/v1/nodes?limit=500: 403 Forbidden`
		if r.code != 1 || rep.Error == nil || !strings.Contains(rep.Error.Message, want) || !strings.Contains(rep.Error.Message, "a kubelet bootstrap token does not have it") {
			t.Errorf("want exit 1 and %q: %s", want, r)
		}
		if got := machineID(t, root); got != fleetIDE {
			t.Errorf("an unanswered check changed /etc/machine-id to %s", got)
		}
		noSecret(t, r, strings.Split(bootstrapTok, ".")[1])
	})

	t.Run("offline the check is deferred", func(t *testing.T) {
		root := newRoot(t, "uninitialized")
		r := runNodeprov(t, "", "apply", "--root", root, "--stages", "machine-id", "-o", "json", specFor(t, "fail", "/etc/nodeprov/fleet.conf", ""))
		rep := parseReport(t, r.stdout)
		if r.code != 0 || !strings.HasPrefix(fleetDetail(rep), "deferred checked against the Kubernetes API's Nodes at a live apply (first boot)") {
			t.Errorf("fleet %q: %s", fleetDetail(rep), r)
		}
	})
}

// reportWarnings returns the warnings of a JSON report.
func reportWarnings(t *testing.T, stdout string) []string {
	t.Helper()
	var rep struct{ Warnings []string }
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout)
	}
	return rep.Warnings
}

// noSecret fails the test when a run's output shows secret.
func noSecret(t *testing.T, r result, secret string) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("the output shows a secret:\n%s", r)
	}
}
