package bounce

import (
	"io"
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

// parts returns the Content-Type and body of each part of a report.
func parts(t *testing.T, msg []byte) (subject string, types, bodies []string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(msg)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		t.Fatalf("content type %q %v", mt, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(b))
	}
	if len(types) != 3 {
		t.Fatalf("parts %v", types)
	}
	return m.Header.Get("Subject"), types, bodies
}

func TestDSNFields(t *testing.T) {
	orig := "Subject: hello\nFrom: a@b\n\nsecret body\n"
	msg := Build(Report{Hostname: "mx.example.test", QueueID: "0123456789ABC", Sender: "a@b",
		EnvID: "QQ314159", Ret: "FULL",
		Failures: []Failure{{Recipient: "x@example.test", Orig: "rfc822;X@Example.TEST", DSN: "5.1.1", Reason: "unknown user"}}},
		strings.NewReader(orig))
	subject, types, bodies := parts(t, msg)
	if subject != "Undelivered Mail Returned to Sender" {
		t.Errorf("subject %q", subject)
	}
	if !strings.HasPrefix(bodies[1], "Original-Envelope-Id: QQ314159\nReporting-MTA: dns; mx.example.test\n") {
		t.Errorf("per-message fields:\n%s", bodies[1])
	}
	if !strings.Contains(bodies[1], "\nOriginal-Recipient: rfc822;X@Example.TEST\nFinal-Recipient: rfc822; x@example.test\nAction: failed\nStatus: 5.1.1\n") {
		t.Errorf("per-recipient fields:\n%s", bodies[1])
	}
	// RET=FULL returns the whole message.
	if types[2] != "message/rfc822" || bodies[2] != orig {
		t.Errorf("returned part %q:\n%q", types[2], bodies[2])
	}
}

func TestRetFullLimit(t *testing.T) {
	orig := "Subject: big\n\n" + strings.Repeat("x", 100) + "\n"
	for _, tc := range []struct {
		limit int64
		full  bool
	}{{int64(len(orig)), true}, {int64(len(orig)) - 1, false}} {
		msg := Build(Report{Hostname: "mx.example.test", QueueID: "0123456789ABC", Sender: "a@b", Ret: "FULL", FullLimit: tc.limit,
			Failures: []Failure{{Recipient: "x@example.test", DSN: "5.1.1", Reason: "unknown user"}}},
			strings.NewReader(orig))
		_, types, bodies := parts(t, msg)
		if tc.full {
			if types[2] != "message/rfc822" || bodies[2] != orig {
				t.Errorf("limit %d: %q %q", tc.limit, types[2], bodies[2])
			}
			continue
		}
		if types[2] != "text/rfc822-headers" || bodies[2] != "Subject: big\n" || strings.Contains(string(msg), "xxxxx") {
			t.Errorf("limit %d: %q %q", tc.limit, types[2], bodies[2])
		}
		if !strings.Contains(bodies[0], "larger than") {
			t.Errorf("no note of the limit:\n%s", bodies[0])
		}
	}
	// RET=HDRS and no RET return the headers.
	for _, ret := range []string{"HDRS", ""} {
		_, types, bodies := parts(t, Build(Report{Hostname: "h", QueueID: "Q", Sender: "a@b", Ret: ret,
			Failures: []Failure{{Recipient: "x@y", DSN: "5.0.0"}}}, strings.NewReader(orig)))
		if types[2] != "text/rfc822-headers" || bodies[2] != "Subject: big\n" {
			t.Errorf("RET=%s: %q %q", ret, types[2], bodies[2])
		}
	}
}

func TestSuccessNotification(t *testing.T) {
	orig := "Subject: hello\n\nbody\n"
	msg := Build(Report{Hostname: "mx.example.test", QueueID: "0123456789ABC", Sender: "a@b", EnvID: "E1",
		Failures: []Failure{{Recipient: "x@example.test", Action: ActionDelivered, Reason: "delivered to maildir"}}},
		strings.NewReader(orig))
	subject, types, bodies := parts(t, msg)
	if subject != "Successful Mail Delivery Report" {
		t.Errorf("subject %q", subject)
	}
	if !strings.Contains(bodies[1], "\nFinal-Recipient: rfc822; x@example.test\nAction: delivered\nStatus: 2.0.0\n") {
		t.Errorf("delivery status:\n%s", bodies[1])
	}
	if types[2] != "text/rfc822-headers" || !strings.Contains(bodies[0], "successfully delivered") {
		t.Errorf("parts %q\n%s", types, bodies[0])
	}
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		notify, kind string
		want         bool
	}{
		{"", "FAILURE", true}, {"", "DELAY", true}, {"", "SUCCESS", false},
		{"NEVER", "FAILURE", false}, {"NEVER", "SUCCESS", false},
		{"SUCCESS", "SUCCESS", true}, {"SUCCESS", "FAILURE", false},
		{"SUCCESS,FAILURE", "FAILURE", true}, {"DELAY", "FAILURE", false},
	} {
		if got := Wants(tc.notify, tc.kind); got != tc.want {
			t.Errorf("Wants(%q, %q) = %v", tc.notify, tc.kind, got)
		}
	}
}
