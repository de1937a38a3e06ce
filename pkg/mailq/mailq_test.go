package mailq

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/spool"
)

func TestEmptyAndFormat(t *testing.T) {
	var b bytes.Buffer
	Write(&b, nil)
	if b.String() != "Mail queue is empty\n" {
		t.Fatalf("empty queue: %q", b.String())
	}
	b.Reset()
	at := time.Date(2026, 11, 26, 15, 7, 56, 0, time.Local)
	Write(&b, []Message{
		{Queue: spool.Active, Size: 2048, Env: &spool.Envelope{ID: "0193A5F2C41D2", Arrival: at, Sender: "",
			Rcpts: []spool.Recipient{{Addr: "a@x"}, {Addr: "done@x", Status: spool.StatusSent}}}},
		{Queue: spool.Deferred, Size: 1024, Env: &spool.Envelope{ID: "0193A5F2C41D3", Arrival: at, Sender: "s@y",
			Rcpts: []spool.Recipient{{Addr: "b@x", Status: spool.StatusDeferred, Reason: "mailbox full"}, {Addr: "c@x", Status: spool.StatusDeferred, Reason: "mailbox full"}}}},
	})
	want := "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n" +
		"0193A5F2C41D2*        2048 Thu Nov 26 15:07:56 MAILER-DAEMON\n" +
		strings.Repeat(" ", 47) + "a@x\n" +
		"\n" +
		"0193A5F2C41D3         1024 Thu Nov 26 15:07:56 s@y\n" +
		strings.Repeat(" ", 64) + "(mailbox full)\n" +
		strings.Repeat(" ", 47) + "b@x\n" +
		strings.Repeat(" ", 47) + "c@x\n" +
		"\n-- 3 Kbytes in 2 Requests.\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
