package spec

import (
	"fmt"
	"io"
	"os"
)

// LoadFile reads and loads a spec file; "-" reads standard input.
func LoadFile(name string, stdin io.Reader) (*Document, error) {
	src, err := readSpec(name, stdin)
	if err != nil {
		return nil, err
	}
	return Load(name, src)
}

func readSpec(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	src, err := io.ReadAll(io.LimitReader(r, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("read spec %s: %w", name, err)
	}
	return src, nil
}
