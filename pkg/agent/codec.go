package agent

import (
	"encoding/binary"
	"errors"
	"time"
)

// Requests and replies cross the qmgr–agent socket once per recipient, so
// they travel in a compact encoding of their own rather than as JSON (see
// package ipc: a body that starts with this version byte, never the first
// byte of a JSON text). Every
// field is a uvarint length and bytes, a varint, a byte, or a time, in the
// order of the struct; the decoder takes nothing on trust: each length is
// checked against what is left, and bytes left over are an error.
const codecVersion = 1

// maxList bounds the entries of a list (Partial, Forward); strings are
// bounded by the frame itself (ipc.MaxFrame).
const maxList = 1024

var errCodec = errors.New("agent: malformed frame")

// MarshalBinary encodes r.
func (r Request) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// AppendBinary appends r's encoding to b (encoding.BinaryAppender, which
// ipc.Conn.Send uses to build the frame in one buffer).
func (r Request) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, codecVersion)
	b = putString(b, r.QueueID)
	b = putString(b, r.Sender)
	b = putString(b, r.Recipient)
	b = putString(b, r.Orig)
	b = putTime(b, r.Arrival)
	b = putTime(b, r.Active)
	b = binary.AppendVarint(b, r.Offset)
	b = binary.AppendVarint(b, r.Size)
	b = putString(b, r.Body)
	b = putBool(b, r.SMTPUTF8)
	b = putString(b, r.Notify)
	b = putString(b, r.EnvID)
	b = putString(b, r.Ret)
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary made.
func (r *Request) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	d.version()
	var q Request
	q.QueueID = d.string()
	q.Sender = d.string()
	q.Recipient = d.string()
	q.Orig = d.string()
	q.Arrival = d.time()
	q.Active = d.time()
	q.Offset = d.varint()
	q.Size = d.varint()
	q.Body = d.string()
	q.SMTPUTF8 = d.bool()
	q.Notify = d.string()
	q.EnvID = d.string()
	q.Ret = d.string()
	if err := d.end(); err != nil {
		return err
	}
	*r = q
	return nil
}

// MarshalBinary encodes r.
func (r Reply) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// AppendBinary appends r's encoding to b (encoding.BinaryAppender).
func (r Reply) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, codecVersion)
	b = putString(b, r.Status)
	b = putString(b, r.DSN)
	b = putString(b, r.Text)
	b = binary.AppendUvarint(b, uint64(len(r.Partial)))
	for _, f := range r.Partial {
		b = putString(b, f.DSN)
		b = putString(b, f.Text)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Forward)))
	for _, a := range r.Forward {
		b = putString(b, a)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary made.
func (r *Reply) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	d.version()
	var p Reply
	p.Status = d.string()
	p.DSN = d.string()
	p.Text = d.string()
	if n := d.count(); n > 0 {
		p.Partial = make([]Failure, n)
		for i := range p.Partial {
			p.Partial[i] = Failure{DSN: d.string(), Text: d.string()}
		}
	}
	if n := d.count(); n > 0 {
		p.Forward = make([]string, n)
		for i := range p.Forward {
			p.Forward[i] = d.string()
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	*r = p
	return nil
}

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// putTime writes 0 for the zero time, else 1, the Unix seconds and the
// nanoseconds.
func putTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads fields until the first error, which it keeps.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errCodec, nil }

func (d *decoder) version() {
	if len(d.b) == 0 || d.b[0] != codecVersion {
		d.fail()
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail()
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// count reads a list length: each element takes at least a byte, so a
// count beyond what is left is malformed, whatever it claims.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > maxList || n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}
