package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// zstdMaxWindow bounds the window a zstd frame may ask for, and so the
// decoder's history buffer. zstd's levels up to 19 use at most 8 MiB
// (Kata's release tarballs have an 8 MiB window); a hostile frame can
// declare up to 3.75 TB, which the decoder would otherwise try to
// allocate. Only --ultra levels 21-22 and --long exceed it.
const zstdMaxWindow = 16 << 20

// zstdReader decompresses a sequence of zstd frames (skippable frames are
// skipped, as zstd(1) does) and refuses anything else after the last one.
type zstdReader struct {
	src *source
	d   *zstd.Decoder
}

func newZstd(src *source, br *bufio.Reader) (*zstdReader, error) {
	// One goroutine, no read-ahead: decoding is synchronous with the
	// reads of the tar stream, so the limits stop a bomb at once and
	// nothing keeps running when the scan returns. Concurrent decoding
	// only overlaps block decoding with the hashing that follows, on the
	// same cores the other installs use.
	d, err := zstd.NewReader(br,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		// Also caps the window of a single-segment frame, which is its
		// declared content size.
		zstd.WithDecoderMaxMemory(zstdMaxWindow),
	)
	if err != nil {
		return nil, &Error{Reason: "zstd decoder", Err: err}
	}
	return &zstdReader{src: src, d: d}, nil
}

func (z *zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF {
		err = z.error(err)
	}
	return n, err
}

func (z *zstdReader) close() { z.d.Close() }

// error turns an error of the zstd decoder into an *Error.
func (z *zstdReader) error(err error) error {
	switch {
	case z.src.err != nil:
		return z.src.sourceError()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Reason: "truncated zstd stream"}
	case errors.Is(err, zstd.ErrMagicMismatch):
		// The first frame's magic was checked before decoding began:
		// this is what follows a complete frame.
		return &Error{Reason: "trailing garbage after the zstd stream"}
	case errors.Is(err, zstd.ErrCRCMismatch):
		return &Error{Reason: "corrupt zstd stream (checksum mismatch)"}
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return &Error{Reason: fmt.Sprintf("zstd frame needs a window larger than the limit of %d bytes (compressed with --ultra or --long?)", zstdMaxWindow)}
	}
	return &Error{Reason: "corrupt zstd stream", Err: err}
}
