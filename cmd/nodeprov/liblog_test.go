package main

import (
	"bytes"
	"log"
	"testing"
)

func TestLibraryLog(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"unsolicited response dropped",
			"Unsolicited response received on idle HTTP channel starting with \"EXTRA\\x00\\x1b[2J\"; err=<nil>", ""},
		{"plain message prefixed", "http2: something happened", "nodeprov: http2: something happened\n"},
		{"control bytes and invalid UTF-8 escaped", "bad \x00\x1b[2J\xff\xfe end\ttab", `nodeprov: bad \x00\x1b[2J\xff\xfe end` + "\ttab\n"},
		{"printable unicode kept", "host ünïcode ✓", "nodeprov: host ünïcode ✓\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := log.New(libraryLog{w: &buf}, "", 0)
			l.Print(tt.msg)
			if buf.String() != tt.want {
				t.Errorf("got %q, want %q", buf.String(), tt.want)
			}
		})
	}
}
