package agent

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func sampleRequest() Request {
	return Request{
		QueueID: "6B091467EEF0E", Sender: "bob@example.org", Recipient: "alice+tag@example.test",
		Orig: "Alice@Example.Test", Arrival: time.Unix(1795757159, 993508000), Active: time.Unix(1795757160, 1),
		Offset: 208, Size: 5188, Body: "8BITMIME", SMTPUTF8: true, Notify: "SUCCESS,FAILURE",
		EnvID: "QQ314159", Ret: "HDRS",
	}
}

func sampleReply() Reply {
	return Reply{Status: Sent, DSN: "2.0.0", Text: "delivered to maildir — ünïcode",
		Partial: []Failure{{DSN: "5.1.1", Text: "unknown user: x"}, {DSN: "5.2.2", Text: ""}},
		Forward: []string{"carol@example.net", "dave@example.com"}}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{sampleRequest(), {}, {QueueID: "A", Arrival: time.Unix(-5, 999999999)}} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Request
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !got.Arrival.Equal(r.Arrival) || !got.Active.Equal(r.Active) {
			t.Fatalf("times: got %v %v, want %v %v", got.Arrival, got.Active, r.Arrival, r.Active)
		}
		got.Arrival, got.Active, r.Arrival, r.Active = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("got %+v, want %+v", got, r)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []Reply{sampleReply(), {}, Tempfail("4.2.2", "mailbox full")} {
		b, _ := r.MarshalBinary()
		var got Reply
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("got %+v, want %+v", got, r)
		}
	}
}

// Every cut of a valid frame, a byte too many, another version, a string
// longer than the frame, a list count beyond its bytes, a bool that is not 0
// or 1, a time flag of 2 and nanoseconds of a whole second are refused, and
// leave the value as it was.
func TestDecodeRefusesMalformed(t *testing.T) {
	req, _ := sampleRequest().MarshalBinary()
	rep, _ := sampleReply().MarshalBinary()
	badReq := [][]byte{nil, {2}, append(bytes.Clone(req), 0),
		{1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		{1, 0, 0, 0, 0, 2},
		{1, 0, 0, 0, 0, 1, 2, 0x80, 0x94, 0xeb, 0xdc, 0x03},
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0},
	}
	for i := range len(req) {
		badReq = append(badReq, req[:i])
	}
	for _, b := range badReq {
		q := Request{QueueID: "KEEP"}
		if err := q.UnmarshalBinary(b); err == nil || q.QueueID != "KEEP" {
			t.Errorf("request %x: err %v, value %+v", b, err, q)
		}
	}
	badRep := [][]byte{nil, {0}, append(bytes.Clone(rep), 0),
		{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		{1, 0, 0, 0, 0, 3, 1, 2},
	}
	for i := range len(rep) {
		badRep = append(badRep, rep[:i])
	}
	for _, b := range badRep {
		p := Reply{Text: "KEEP"}
		if err := p.UnmarshalBinary(b); err == nil || p.Text != "KEEP" {
			t.Errorf("reply %x: err %v, value %+v", b, err, p)
		}
	}
}

// The binary body never starts like a JSON text, so a receiver can tell
// them apart (package ipc).
func TestBinaryIsNotJSON(t *testing.T) {
	b, _ := sampleRequest().MarshalBinary()
	if b[0] >= 0x09 || json.Valid(b) {
		t.Fatalf("binary request %x could be JSON", b)
	}
}

func FuzzRequest(f *testing.F) {
	b, _ := sampleRequest().MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if r.UnmarshalBinary(data) != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var r2 Request
		if err := r2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		if !reflect.DeepEqual(normal(r), normal(r2)) {
			t.Fatalf("round trip changed %+v into %+v", r, r2)
		}
	})
}

func FuzzReply(f *testing.F) {
	b, _ := sampleReply().MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Reply
		if r.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := r.MarshalBinary()
		var r2 Reply
		if err := r2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded reply refused: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed %+v into %+v", r, r2)
		}
	})
}

// normal makes times comparable with DeepEqual.
func normal(r Request) Request {
	r.Arrival, r.Active = r.Arrival.UTC(), r.Active.UTC()
	return r
}
