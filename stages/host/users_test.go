package host

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAddSystemGroup: the group gets the highest free system gid, is
// appended to group and gshadow keeping their modes, and a second call
// changes nothing.
func TestAddSystemGroup(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nsystemd-journal:x:999:\nmessagebus:x:998:\nusers:x:100:"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/gshadow"), []byte("root:*::\n"), 0o640)
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.HasGroup("docker"); ok || err != nil {
		t.Fatalf("HasGroup before = %v, %v", ok, err)
	}
	gid, err := r.AddSystemGroup("docker")
	if err != nil || gid != 997 {
		t.Fatalf("AddSystemGroup = %d, %v; want 997", gid, err)
	}
	for _, again := range []bool{false, true} {
		if again {
			if g, err := r.AddSystemGroup("docker"); g != 997 || err != nil {
				t.Fatalf("second AddSystemGroup = %d, %v", g, err)
			}
		}
		group, _ := os.ReadFile(filepath.Join(dir, "etc/group"))
		if want := "root:x:0:\nsystemd-journal:x:999:\nmessagebus:x:998:\nusers:x:100:\ndocker:x:997:\n"; string(group) != want {
			t.Fatalf("group:\n%s\nwant\n%s", group, want)
		}
		shadow, _ := os.ReadFile(filepath.Join(dir, "etc/gshadow"))
		if string(shadow) != "root:*::\ndocker:!::\n" {
			t.Fatalf("gshadow:\n%s", shadow)
		}
		if st, _ := os.Stat(filepath.Join(dir, "etc/gshadow")); st.Mode().Perm() != 0o640 {
			t.Errorf("gshadow mode %v", st.Mode())
		}
	}
	if ok, err := r.HasGroup("docker"); !ok || err != nil {
		t.Fatalf("HasGroup after = %v, %v", ok, err)
	}
	if _, err := r.AddSystemGroup("bad:name"); err == nil {
		t.Error("a name with ':' was accepted")
	}
}
