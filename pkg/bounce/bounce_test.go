package bounce

import (
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestBuildIsAParsableReport(t *testing.T) {
	orig := "Subject: hello\nFrom: a@b\n\nsecret body\n"
	msg := Build(Report{Hostname: "mx.example.test", QueueID: "0123456789ABC", Sender: "a@b",
		Arrival:  time.Unix(1700000000, 0),
		Failures: []Failure{{Recipient: "x@example.test", DSN: "4.2.2", Reason: "mailbox full\r\nInjected: yes", Expired: true}}},
		strings.NewReader(orig))
	m, err := mail.ReadMessage(strings.NewReader(string(msg)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v %v", mt, params, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		types = append(types, p.Header.Get("Content-Type"))
		buf := new(strings.Builder)
		_, _ = strings.NewReader("").WriteTo(buf)
		b := make([]byte, 4096)
		n, _ := p.Read(b)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "message/delivery-status") {
			status = string(b[:n])
		}
		if strings.Contains(string(b[:n]), "secret body") {
			t.Fatal("the original body was included")
		}
	}
	if len(types) != 3 {
		t.Fatalf("parts %v", types)
	}
	if !strings.Contains(status, "Status: 5.2.2") || !strings.Contains(status, "Final-Recipient: rfc822; x@example.test") {
		t.Fatalf("delivery status part:\n%s", status)
	}
	if strings.Contains(string(msg), "\nInjected: yes") {
		t.Fatal("a reason with a line break forged a header")
	}
}
