package wire

import (
	"bytes"
	"errors"
	"github.com/posthorn/posthorn/pkg/imap"
	"io"
	"testing"
)

var commandSeeds = []string{
	"a1 LOGIN alice secret\r\n",
	"a2 SELECT INBOX (CONDSTORE)\r\n",
	"a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512> BINARY[1.2] MODSEQ) (CHANGEDSINCE 7 VANISHED)\r\n",
	"a4 APPEND INBOX (\\Seen) \" 1-Jan-2024 00:00:00 +0000\" {5}\r\nhello\r\n",
	"a5 APPEND INBOX {3+}\r\nabc\r\na6 NOOP\r\n",
	"a7 SEARCH RETURN (MIN MAX) CHARSET UTF-8 OR (FROM x TO y) NOT 1:3 MODSEQ 5\r\n",
	"a8 LIST (SUBSCRIBED) \"\" (INBOX %) RETURN (STATUS (MESSAGES))\r\n",
	"a9 STORE 1 (UNCHANGEDSINCE 3) -FLAGS.SILENT (\\Deleted)\r\n",
	"b1 ID (\"name\" \"x\" \"version\" NIL)\r\n",
	"b2 LOGIN {99999999999999999999+}\r\n",
	"b3 SELECT INBOX (QRESYNC (1 2 1:5 (1:2 3:4)))\r\n",
	"b4 AUTHENTICATE PLAIN AGEAYg==\r\n",
	"b5 APPEND INBOX UTF8 (~{2+}\r\n\x00\x01)\r\n",
	"b6 FOO {4+}\r\nx\r\ny\r\n",
}

// FuzzCommand feeds arbitrary input through the command reader: it must
// neither panic nor hang nor grow its buffers past the limits, and every
// refused command must leave the reader in step or report Fatal.
func FuzzCommand(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Limits{MaxLine: 512, MaxCommand: 2048, MaxLiteral: 256, MaxLiterals: 8, MaxDiscard: 4096, MaxSearchDepth: 10, MaxSearchKeys: 50}
		d := NewDecoder(NewIn(bytes.NewReader(data)), l)
		conts := 0
		d.Continue = func() error { conts++; return nil }
		for i := 0; i < 1000; i++ {
			c, err := d.ReadCommand()
			if cap(d.line) > 4*l.MaxLine+bufSize {
				t.Fatalf("line buffer %d", cap(d.line))
			}
			if err != nil {
				var e *Error
				if errors.As(err, &e) && !e.Fatal {
					continue
				}
				return
			}
			if c.Name == "APPEND" {
				if i%2 == 0 && c.Append.Size >= 0 {
					r, err := d.AppendLiteral()
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, r)
					if err := d.EndAppend(); err != nil {
						var e *Error
						if !errors.As(err, &e) || e.Fatal {
							return
						}
					}
				} else if err := d.RejectLiteral(); err != nil {
					return
				}
			}
			d.Release()
		}
	})
}

// FuzzSearch parses arbitrary SEARCH programs.
func FuzzSearch(f *testing.F) {
	for _, s := range []string{
		"ALL", "OR FROM a TO b", "NOT (SEEN UNSEEN)", "CHARSET UTF-8 TEXT {3}\r\nabc",
		"RETURN (COUNT) 1:*", "UID $", "HEADER X-A \"b\" SINCE 1-Jan-2020", "MODSEQ \"/flags/\\\\seen\" all 1",
		"(((((ALL)))))", "OR OR OR ALL ALL ALL ALL", "LARGER 99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prog string) {
		d := NewDecoder(NewIn(bytes.NewReader([]byte("a SEARCH "+prog+"\r\n"))), Limits{MaxSearchDepth: 20, MaxSearchKeys: 200})
		d.Continue = func() error { return nil }
		c, err := d.ReadCommand()
		if err != nil {
			return
		}
		depth := 0
		var measure func(k *imap.SearchKey, n int)
		measure = func(k *imap.SearchKey, n int) {
			depth = max(depth, n)
			for _, ch := range k.Children {
				measure(ch, n+1)
			}
		}
		measure(c.Search.Key, 0)
		// AND nodes from parentheses add one level each on top of OR/NOT.
		if depth > 2*20+2 {
			t.Fatalf("depth %d", depth)
		}
	})
}
