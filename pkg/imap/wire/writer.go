package wire

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"
)

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

// Writer writes responses through a buffer that it takes from a pool on
// the first write and gives back on Release, so an idle session holds no
// write buffer.
type Writer struct {
	w   io.Writer
	bw  *bufio.Writer
	err error
	// UTF8 allows raw UTF-8 in quoted strings (IMAP4rev2, UTF8=ACCEPT);
	// otherwise strings with 8-bit octets go out as literals.
	UTF8    bool
	scratch [24]byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Reset points the writer at a new destination (after STARTTLS).
func (w *Writer) Reset(dst io.Writer) {
	w.Release()
	w.w = dst
}

func (w *Writer) buf() *bufio.Writer {
	if w.bw == nil {
		w.bw = writerPool.Get().(*bufio.Writer)
		w.bw.Reset(w.w)
	}
	return w.bw
}

// Err returns the first write error.
func (w *Writer) Err() error { return w.err }

func (w *Writer) note(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// Flush sends what is buffered.
func (w *Writer) Flush() error {
	if w.bw != nil && w.err == nil {
		w.note(w.bw.Flush())
	}
	return w.err
}

// Release flushes and returns the buffer to the pool.
func (w *Writer) Release() error {
	err := w.Flush()
	if w.bw != nil {
		w.bw.Reset(nil)
		writerPool.Put(w.bw)
		w.bw = nil
	}
	return err
}

// Raw writes s unchanged.
func (w *Writer) Raw(s string) {
	if w.err == nil {
		_, err := w.buf().WriteString(s)
		w.note(err)
	}
}

// RawBytes writes b unchanged.
func (w *Writer) RawBytes(b []byte) {
	if w.err == nil {
		_, err := w.buf().Write(b)
		w.note(err)
	}
}

// Byte writes one octet.
func (w *Writer) Byte(c byte) {
	if w.err == nil {
		w.note(w.buf().WriteByte(c))
	}
}

// Number writes a decimal number.
func (w *Writer) Number(n uint64) {
	w.RawBytes(strconv.AppendUint(w.scratch[:0], n, 10))
}

// CRLF ends a response line.
func (w *Writer) CRLF() { w.Raw("\r\n") }

// quotable reports whether s can be sent as a quoted string.
func (w *Writer) quotable(s string) bool {
	if len(s) > 1024 {
		return false
	}
	eight := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' {
			return false
		}
		if c >= 0x80 {
			eight = true
		}
	}
	return !eight || (w.UTF8 && utf8.ValidString(s))
}

// String writes s as a quoted string, or as a literal when it holds
// octets a quoted string cannot carry (RFC 9051 §4.3).
func (w *Writer) String(s string) {
	if !w.quotable(s) {
		w.Byte('{')
		w.Number(uint64(len(s)))
		w.Raw("}\r\n")
		w.Raw(s)
		return
	}
	w.Byte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			w.Raw(s[start:i])
			w.Byte('\\')
			start = i
		}
	}
	w.Raw(s[start:])
	w.Byte('"')
}

// NString writes a string or NIL.
func (w *Writer) NString(s *string) {
	if s == nil {
		w.Raw("NIL")
		return
	}
	w.String(*s)
}

// AString writes s as an atom when it is one and not "NIL", else as a
// string.
func (w *Writer) AString(s string) {
	if s != "" && !(len(s) == 3 && (s[0]|0x20) == 'n' && (s[1]|0x20) == 'i' && (s[2]|0x20) == 'l') {
		atom := true
		for i := 0; i < len(s); i++ {
			if !isAStringChar(s[i]) {
				atom = false
				break
			}
		}
		if atom {
			w.Raw(s)
			return
		}
	}
	w.String(s)
}

// LiteralHeader writes "{n}\r\n", or "~{n}\r\n" for binary content.
func (w *Writer) LiteralHeader(n int64, binary bool) {
	if binary {
		w.Byte('~')
	}
	w.Byte('{')
	w.Number(uint64(n))
	w.Raw("}\r\n")
}

// Copy streams n octets from r into the response; it fails when r ends
// early, since the literal length is already on the wire.
func (w *Writer) Copy(r io.Reader, n int64) error {
	if w.err != nil {
		return w.err
	}
	m, err := io.CopyN(w.buf(), r, n)
	if err != nil {
		if m < n && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		w.note(err)
	}
	return w.err
}

// Write implements io.Writer for streamed content.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.buf().Write(p)
	w.note(err)
	return n, err
}
