package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/imap/memstore"
)

var sessionSeeds = []string{
	"a CAPABILITY\r\nb LOGOUT\r\n",
	"a LOGIN alice secret\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)] BODYSTRUCTURE ENVELOPE)\r\n",
	"a LOGIN alice secret\r\nb SELECT INBOX (CONDSTORE)\r\nc UID STORE 1:* +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n",
	"a LOGIN alice secret\r\nb ENABLE QRESYNC\r\nc SELECT INBOX (QRESYNC (1 1 1:*))\r\nd UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
	"a LOGIN alice secret\r\nb SELECT INBOX\r\nc SEARCH RETURN (SAVE) OR FROM bob TEXT x\r\nd FETCH $ BINARY[2]\r\n",
	"a LOGIN alice secret\r\nb APPEND INBOX {5+}\r\nhello\r\nc LIST \"\" *\r\n",
	"a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\nDONE\r\nd MOVE 1 INBOX\r\n",
	"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nb CREATE &Jjo!\r\n",
	"a LOGIN alice secret\r\nb ENABLE IMAP4rev2 UTF8=ACCEPT\r\nc SELECT INBOX\r\nd SEARCH ALL\r\n",
}

// FuzzSession runs arbitrary client input through a whole session on an
// in-memory store: no panic, no hang once the client has gone, and the
// session always ends.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		be := memstore.New()
		u := be.AddUser("alice", "secret")
		u.Deliver("INBOX", []byte(simpleMsg))
		u.Deliver("INBOX", []byte(multipartMsg), `\Seen`)
		srv := New(Config{Backend: be, AllowCleartext: true, AuthFailureDelay: -1, Log: quietLog(),
			CommandTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second, PreAuthTimeout: 2 * time.Second})
		cli, sv := net.Pipe()
		ended := make(chan struct{})
		go func() { srv.ServeConn(sv); close(ended) }()
		go io.Copy(io.Discard, cli)
		cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cli.Write(data)
		cli.Close()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end after the client left")
		}
	})
}
