package units

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec"
)

func TestValidate(t *testing.T) {
	long := "[Service]\nExecStart=/bin/true " + strings.Repeat("x", 2100) + "\n"
	tests := []struct {
		name   string
		unit   string
		dropin bool
		data   string
		line   int    // 0: no line
		want   string // "" means valid
	}{
		{name: "valid service", unit: "a.service", data: "# c\n; c\n[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/true \\\n  --flag\n[Install]\nWantedBy=multi-user.target\n"},
		{name: "valid CRLF", unit: "a.service", data: "[Service]\r\nExecStart=/bin/true\r\n"},
		{name: "X- section", unit: "a.service", data: "[X-Vendor]\nAnything=1\n[Service]\nExecStart=/bin/true\n"},
		{name: "valid drop-in", unit: "a.service", dropin: true, data: "[Service]\nLimitNOFILE=1048576\n"},
		{name: "valid target", unit: "a.target", data: "[Unit]\nDescription=t\n"},
		{name: "valid timer", unit: "a.timer", data: "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n"},
		{name: "outside section", unit: "a.service", data: "# head\nExecStart=/bin/true\n[Service]\n", line: 2, want: "outside of any section"},
		{name: "missing =", unit: "a.service", data: "[Service]\nExecStart /bin/true\n", line: 2, want: "missing '='"},
		{name: "empty key", unit: "a.service", data: "[Service]\nExecStart=/bin/true\n =x\n", line: 3, want: "empty key"},
		{name: "invalid key", unit: "a.service", data: "[Service]\nExec Start=/bin/true\n", line: 2, want: `invalid key "Exec Start"`},
		{name: "unknown section", unit: "a.service", data: "[Unit]\nDescription=a\n[Serivce]\nExecStart=/bin/true\n", line: 3, want: "unknown section [Serivce]"},
		{name: "section of another type", unit: "a.target", data: "[Service]\nExecStart=/bin/true\n", line: 1, want: "unknown section [Service] for a .target unit"},
		{name: "unknown [Install] key", unit: "a.service", data: "[Service]\nExecStart=/bin/true\n[Install]\nWantBy=multi-user.target\n", line: 4, want: `unknown key "WantBy" in [Install]`},
		{name: "unclosed header", unit: "a.service", data: "[Service\nExecStart=/bin/true\n", line: 1, want: "not closed"},
		{name: "empty header", unit: "a.service", data: "[]\n", line: 1, want: "invalid section header"},
		{name: "NUL", unit: "a.service", data: "[Service]\nExecStart=/bin/\x00true\n", line: 2, want: "NUL"},
		{name: "invalid UTF-8", unit: "a.service", data: "[Unit]\nDescription=\xff\n", line: 2, want: "UTF-8"},
		{name: "no section", unit: "a.service", data: "# only a comment\n", want: "no section: a unit file needs"},
		{name: "empty drop-in", unit: "a.service", dropin: true, data: "", want: "no section: a drop-in needs"},
		{name: "long line", unit: "a.service", data: long, line: 2, want: "bytes long"},
		{name: "comment in continuation", unit: "a.service", data: "[Service]\nExecStart=/bin/true \\\n# note\n  --x\n", line: 3, want: "comment inside a value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseStrict(tc.unit, []byte(tc.data), tc.dropin)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(f.sections) == 0 {
					t.Fatal("no sections parsed")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LineError", err)
			}
			if le.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q (line %d), want line %d and %q", err, le.Line, tc.line, tc.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	f, err := parseStrict("a.service", []byte("[Service]\nExecStart=/bin/a \\\n  --b\nExecStart=\nExecStart=/bin/c\n[Install]\nWantedBy=a.target\nWantedBy=b.target c.target\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.values("Service", "ExecStart"); len(got) != 3 || strings.Join(strings.Fields(got[0]), " ") != "/bin/a --b" || strings.Contains(got[0], "\\") {
		t.Fatalf("values = %q, want the continued value joined", got)
	}
	if got := execStarts([]*unitFile{f}); len(got) != 1 || got[0] != "/bin/c" {
		t.Fatalf("execStarts = %q, want the list after the reset", got)
	}
	info, err := parseInstall("a.service", f)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.deps["WantedBy"], " "); got != "a.target b.target c.target" {
		t.Fatalf("WantedBy = %q", got)
	}
}

func TestCheckService(t *testing.T) {
	tests := []struct {
		name   string
		unit   string
		dropin string
		want   string
	}{
		{name: "simple", unit: "[Service]\nExecStart=/bin/true\n"},
		{name: "no ExecStart", unit: "[Service]\nType=simple\n", want: "has no ExecStart="},
		{name: "oneshot with ExecStop", unit: "[Service]\nType=oneshot\nExecStop=/bin/true\n"},
		{name: "oneshot with nothing", unit: "[Service]\nType=oneshot\n", want: "no ExecStart=, ExecStop="},
		{name: "implied oneshot", unit: "[Service]\nExecStop=/bin/true\n"},
		{name: "implied oneshot with nothing", unit: "[Unit]\nDescription=x\n[Service]\nRemainAfterExit=yes\n", want: "no ExecStart=, ExecStop="},
		{name: "dbus service without ExecStart", unit: "[Service]\nBusName=org.x\nExecStop=/bin/true\n", want: "has no ExecStart="},
		{name: "two ExecStart", unit: "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n", want: "2 ExecStart="},
		{name: "oneshot two ExecStart", unit: "[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n"},
		{name: "drop-in replaces", unit: "[Service]\nExecStart=/bin/a\n", dropin: "[Service]\nExecStart=\nExecStart=/bin/b\n"},
		{name: "drop-in adds a second", unit: "[Service]\nExecStart=/bin/a\n", dropin: "[Service]\nExecStart=/bin/b\n", want: "2 ExecStart="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := []*unitFile{mustParse(t, tc.unit)}
			if tc.dropin != "" {
				files = append(files, mustParse(t, tc.dropin))
			}
			err := checkService(files)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("checkService = %v, want %q", err, tc.want)
			}
		})
	}
}

func mustParse(t *testing.T, data string) *unitFile {
	t.Helper()
	f, err := parseStrict("x.service", []byte(data), false)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExecBinary(t *testing.T) {
	tests := map[string]string{
		"/usr/local/bin/containerd":       "/usr/local/bin/containerd",
		"-/sbin/modprobe overlay":         "/sbin/modprobe",
		"+@/usr/bin/foo foo-name --x":     "/usr/bin/foo",
		`"/opt/my dir/tool" --flag`:       "/opt/my dir/tool",
		"!!/usr/bin/bar\t--tab":           "/usr/bin/bar",
		"containerd --config /etc/c.toml": "containerd",
		"  :/usr/bin/baz":                 "/usr/bin/baz",
		"":                                "",
	}
	for in, want := range tests {
		if got := execBinary(in); got != want {
			t.Errorf("execBinary(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPlanMalformed checks that the stage names the unit, the spec entry
// and the line.
func TestPlanMalformed(t *testing.T) {
	tests := []struct {
		name string
		unit spec.Unit
		want string
	}{
		{
			name: "unit file",
			unit: spec.Unit{Name: "a.service", Contents: "[Unit]\nDescription=a\nExecStart=/bin/true\n[Servce]\n"},
			want: "unit a.service (units[0]): line 4: unknown section [Servce]",
		},
		{
			name: "drop-in",
			unit: spec.Unit{Name: "a.service", Contents: "[Service]\nExecStart=/bin/true\n", Dropins: []spec.Dropin{{Name: "10-x.conf", Contents: "LimitNOFILE=1\n"}}},
			want: "unit a.service (units[0]): drop-in 10-x.conf (units[0].dropins[0]): line 1:",
		},
		{
			name: "no ExecStart",
			unit: spec.Unit{Name: "a.service", Contents: "[Unit]\nDescription=a\n"},
			want: "unit a.service (units[0]): [Service] has no ExecStart=",
		},
		{
			name: "missing unit",
			unit: spec.Unit{Name: "nothere.service", State: "started"},
			want: "unit nothere.service (units[0]): no contents in the spec, no built-in unit, and no unit file in the root",
		},
		{
			name: "masked with contents",
			unit: spec.Unit{Name: "a.service", Masked: true, Contents: "[Service]\nExecStart=/bin/true\n"},
			want: "a masked unit is a link to /dev/null and has no unit file",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := newRoot(t)
			env := newEnv(root, &spec.Node{Units: []spec.Unit{tc.unit}}, false, "apply")
			_, err := Stage{}.Plan(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Plan error = %v, want %q", err, tc.want)
			}
		})
	}
}
