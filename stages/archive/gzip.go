package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// gzipReader decompresses concatenated gzip members, as gzip(1) reads
// them, and refuses anything else after the last one.
type gzipReader struct {
	src *source
	br  *bufio.Reader
	z   gzip.Reader
	eof bool
}

func newGzip(src *source, br *bufio.Reader) (*gzipReader, error) {
	g := &gzipReader{src: src, br: br}
	if err := g.startMember(); err != nil {
		return nil, err
	}
	return g, nil
}

// startMember reads the header of the gzip member at the current position.
func (g *gzipReader) startMember() error {
	if err := g.z.Reset(g.br); err != nil {
		return g.error(err)
	}
	// Read members one at a time so that what follows each is checked here.
	g.z.Multistream(false)
	return nil
}

func (g *gzipReader) Read(p []byte) (int, error) {
	for !g.eof {
		n, err := g.z.Read(p)
		if err == io.EOF {
			err = g.nextMember()
		} else if err != nil {
			err = g.error(err)
		}
		if err != nil || n > 0 || len(p) == 0 {
			return n, err
		}
	}
	return 0, io.EOF
}

func (g *gzipReader) close() {}

// nextMember is called at the end of a gzip member: the input must end
// there or another gzip member must follow.
func (g *gzipReader) nextMember() error {
	next, _ := g.br.Peek(2)
	switch {
	case g.src.err != nil:
		return g.src.sourceError()
	case len(next) == 0:
		g.eof = true
		return nil
	case !hasPrefix(next, gzipMagic):
		offset := g.src.n - int64(g.br.Buffered())
		return &Error{Reason: fmt.Sprintf("trailing garbage after the gzip stream at byte %d", offset)}
	}
	return g.startMember()
}

// error turns an error of the gzip reader into an *Error.
func (g *gzipReader) error(err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case g.src.err != nil:
		return g.src.sourceError()
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &Error{Reason: "truncated gzip stream"}
	case errors.Is(err, gzip.ErrChecksum):
		return &Error{Reason: "corrupt gzip stream (checksum mismatch)"}
	case errors.Is(err, gzip.ErrHeader):
		return &Error{Reason: "invalid gzip header"}
	case errors.As(err, &corrupt):
		return &Error{Reason: "corrupt gzip stream", Err: err}
	}
	return &Error{Reason: "decompress", Err: err}
}
