package archive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// source reads the compressed archive, counting bytes and remembering the
// first error of the reader itself (or of the context), so that it can be
// told apart from errors in the archive's contents: compress/flate wraps
// read errors without Unwrap.
type source struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// sourceError is the error for a failure of the source itself.
func (s *source) sourceError() error {
	return fmt.Errorf("read archive: %w", s.err)
}

// stream is the decompressed tar stream of a gzip-compressed archive,
// enforcing the decompressed-size and compression-ratio limits.
type stream struct {
	src *source
	br  *bufio.Reader
	z   gzip.Reader
	lim Limits
	out int64 // decompressed bytes
	eof bool
	err error // sticky
}

// gzip magic bytes (RFC 1952).
const (
	gzipID1 = 0x1f
	gzipID2 = 0x8b
)

func newStream(src *source, lim Limits) (*stream, error) {
	br := bufio.NewReaderSize(src, 32<<10)
	// A ustar header has "ustar" at offset 257.
	head, _ := br.Peek(262)
	if src.err != nil {
		return nil, src.sourceError()
	}
	if len(head) < 2 || head[0] != gzipID1 || head[1] != gzipID2 {
		switch {
		case len(head) == 0:
			return nil, &Error{Reason: "empty file, not a gzip-compressed tar archive"}
		case len(head) >= 262 && string(head[257:262]) == "ustar":
			return nil, &Error{Reason: "uncompressed tar archive: only gzip-compressed tar (.tar.gz, .tgz) is accepted"}
		}
		return nil, &Error{Reason: fmt.Sprintf("not a gzip-compressed tar archive (starts with % x)", head[:min(len(head), 8)])}
	}
	s := &stream{src: src, br: br, lim: lim}
	if err := s.startMember(); err != nil {
		return nil, err
	}
	return s, nil
}

// startMember reads the header of the gzip member at the current position.
func (s *stream) startMember() error {
	if err := s.z.Reset(s.br); err != nil {
		return s.gzipError(err)
	}
	// Read members one at a time so that what follows each is checked here.
	s.z.Multistream(false)
	return nil
}

func (s *stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for !s.eof {
		n, err := s.z.Read(p)
		s.out += int64(n)
		if lerr := s.checkLimits(); lerr != nil {
			s.err = lerr
			return 0, lerr
		}
		if err == io.EOF {
			err = s.nextMember()
		} else if err != nil {
			err = s.gzipError(err)
		}
		if err != nil {
			s.err = err
			return n, err
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// nextMember is called at the end of a gzip member: the input must end
// there or another gzip member must follow.
func (s *stream) nextMember() error {
	next, _ := s.br.Peek(2)
	switch {
	case s.src.err != nil:
		return s.src.sourceError()
	case len(next) == 0:
		s.eof = true
		return nil
	case len(next) < 2 || next[0] != gzipID1 || next[1] != gzipID2:
		offset := s.src.n - int64(s.br.Buffered())
		return &Error{Reason: fmt.Sprintf("trailing garbage after the gzip stream at byte %d", offset)}
	}
	return s.startMember()
}

// checkLimits enforces MaxTotalSize and MaxCompressionRatio on the bytes
// decompressed so far.
func (s *stream) checkLimits() error {
	if s.out > s.lim.MaxTotalSize {
		return &Error{Reason: fmt.Sprintf("decompressed data exceeds the limit of %d bytes (a decompression bomb?)", s.lim.MaxTotalSize)}
	}
	r := int64(s.lim.MaxCompressionRatio)
	if r > 0 && s.out > ratioFloor && s.out/r > max(s.src.n, 1) {
		return &Error{Reason: fmt.Sprintf("compression ratio exceeds %d:1 after %d decompressed bytes (a decompression bomb?)", r, s.out)}
	}
	return nil
}

// gzipError turns an error of the gzip reader into an *Error.
func (s *stream) gzipError(err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case s.src.err != nil:
		return s.src.sourceError()
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

// drain reads what is left of the stream after the tar end-of-archive
// marker; anything but zero padding there is hidden data.
func (s *stream) drain() error {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return &Error{Reason: "data after the end of the tar archive"}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
