package main

import (
	"bytes"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// libraryLog is where the standard library's logger writes in nodeprov:
// net/http logs through it on the client side, e.g. "Unsolicited response
// received on idle HTTP channel starting with …" when a server sends more
// than the Content-Length it announced, quoting the server's bytes. That
// line is dropped: nodeprov verifies every artifact by its digest and
// reports a short or long body itself. Anything else is passed on with a
// "nodeprov: " prefix and every byte that is not printable text escaped,
// so nodeprov's output never carries raw bytes from the network.
type libraryLog struct {
	w io.Writer
}

// Write implements io.Writer; the logger calls it once per message.
func (l libraryLog) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("Unsolicited response received on idle HTTP channel")) {
		return len(p), nil
	}
	msg := bytes.TrimRight(p, "\n")
	out := []byte("nodeprov: ")
	for len(msg) > 0 {
		r, size := utf8.DecodeRune(msg)
		switch {
		case r == utf8.RuneError && size <= 1:
			out = append(out, `\x`...)
			out = strconv.AppendUint(out, uint64(msg[0])>>4, 16)
			out = strconv.AppendUint(out, uint64(msg[0])&0xf, 16)
		case r == '\t' || unicode.IsPrint(r):
			out = utf8.AppendRune(out, r)
		default:
			q := strconv.QuoteRune(r)
			out = append(out, q[1:len(q)-1]...)
		}
		msg = msg[size:]
	}
	if _, err := l.w.Write(append(out, '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}
