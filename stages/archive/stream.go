package archive

import (
	"bufio"
	"context"
	"fmt"
	"io"
)

// source reads the compressed archive, counting bytes and remembering the
// first error of the reader itself (or of the context), so that it can be
// told apart from errors in the archive's contents: the decompressors wrap
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

// decompressor is one compression format's reader over the buffered
// source. Read returns io.EOF only at a clean end of the compressed data
// with nothing but end of input after it; every other problem is an *Error
// (or the source's own error).
type decompressor interface {
	io.Reader
	close()
}

// stream is the decompressed tar stream of a compressed archive,
// enforcing the decompressed-size and compression-ratio limits whatever
// the format.
type stream struct {
	src *source
	dec decompressor
	lim Limits
	out int64 // decompressed bytes
	err error // sticky
}

// Magic bytes of the accepted formats: gzip (RFC 1952) and a zstd frame
// (RFC 8878).
const (
	gzipMagic = "\x1f\x8b"
	zstdMagic = "\x28\xb5\x2f\xfd"
)

// newStream detects the format by its magic bytes, never by a file name.
func newStream(src *source, lim Limits) (*stream, error) {
	br := bufio.NewReaderSize(src, 32<<10)
	// A ustar header has "ustar" at offset 257.
	head, _ := br.Peek(262)
	if src.err != nil {
		return nil, src.sourceError()
	}
	var (
		dec decompressor
		err error
	)
	switch {
	case hasPrefix(head, gzipMagic):
		dec, err = newGzip(src, br)
	case hasPrefix(head, zstdMagic):
		dec, err = newZstd(src, br)
	case len(head) == 0:
		return nil, &Error{Reason: "empty file, not a compressed tar archive"}
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return nil, &Error{Reason: "uncompressed tar archive: only gzip- or zstd-compressed tar (.tar.gz, .tgz, .tar.zst) is accepted"}
	default:
		return nil, &Error{Reason: fmt.Sprintf("not a gzip- or zstd-compressed tar archive (starts with % x)", head[:min(len(head), 8)])}
	}
	if err != nil {
		return nil, err
	}
	return &stream{src: src, dec: dec, lim: lim}, nil
}

func hasPrefix(b []byte, magic string) bool {
	return len(b) >= len(magic) && string(b[:len(magic)]) == magic
}

func (s *stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.dec.Read(p)
	s.out += int64(n)
	if lerr := s.checkLimits(); lerr != nil {
		s.err = lerr
		return 0, lerr
	}
	if err != nil {
		s.err = err
	}
	return n, err
}

// close releases the decompressor's buffers.
func (s *stream) close() { s.dec.close() }

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
