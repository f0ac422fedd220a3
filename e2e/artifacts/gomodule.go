package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// BuildModuleMain builds the main package pkg of module@version (the
// module's root when pkg is empty) into bin, in a scratch module in src
// that applies the module's own replace directives (`go install
// pkg@version` refuses modules with replace directives); xflags are extra
// -X name=value link flags (upstream's version stamps). The output of
// every step goes to log.
func BuildModuleMain(ctx context.Context, src, module, version, pkg, bin string, log io.Writer, xflags ...string) error {
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	run := func(args ...string) ([]byte, error) {
		fmt.Fprintf(log, "$ %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, log
		err := cmd.Run()
		return stdout.Bytes(), err
	}
	if _, err := run("go", "mod", "init", "nodeprov.test/scratch"); err != nil {
		return err
	}
	dl, err := run("go", "mod", "download", "-json", module+"@"+version)
	if err != nil {
		return err
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(dl, &info); err != nil || info.GoMod == "" {
		return fmt.Errorf("go mod download %s: %v %s", module, err, dl)
	}
	modJSON, err := run("go", "mod", "edit", "-json", info.GoMod)
	if err != nil {
		return err
	}
	var gomod struct {
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(modJSON, &gomod); err != nil {
		return err
	}
	for _, r := range gomod.Replace {
		if r.New.Version == "" {
			return fmt.Errorf("%s replaces %s with a directory", module, r.Old.Path)
		}
		old := r.Old.Path
		if r.Old.Version != "" {
			old += "@" + r.Old.Version
		}
		if _, err := run("go", "mod", "edit", "-replace", old+"="+r.New.Path+"@"+r.New.Version); err != nil {
			return err
		}
	}
	if pkg == "" {
		pkg = module
	}
	if _, err := run("go", "get", pkg+"@"+version); err != nil {
		return err
	}
	ldflags := "-s -w"
	for _, x := range xflags {
		ldflags += " -X " + x
	}
	_, err = run("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, pkg)
	return err
}
