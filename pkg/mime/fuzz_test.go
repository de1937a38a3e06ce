package mime

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: parsing never panics; ENVELOPE, BODY and BODYSTRUCTURE always
// follow the RFC 3501 grammar (so parentheses and quotes balance); every
// position reported lies within the message; every section is served with
// the size announced; parsing through io.ReaderAt and from memory agree.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		p := ParseBytes(msg)
		if err := checkResponses(p); err != nil {
			t.Fatalf("%v\n%q", err, msg)
		}
		if err := checkOffsets(p, int64(len(msg))); err != nil {
			t.Fatal(err)
		}
		q, err := Parse(bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		if p.BodyStructure(true) != q.BodyStructure(true) || p.Envelope() != q.Envelope() {
			t.Fatal("Parse and ParseBytes differ")
		}
		r := bytes.NewReader(msg)
		n := 0
		p.Walk(func(part *Part) bool {
			if n++; n > 50 {
				return false
			}
			for _, s := range []*Section{
				{Part: part, Kind: SectionMIME, Offset: part.Offset, Len: part.HeaderLen, Size: part.HeaderSize},
				{Part: part, Kind: SectionAll, Offset: part.BodyOffset, Len: part.BodyLen, Size: part.BodySize},
				{Part: part, Kind: SectionFieldsNot, Fields: []string{"Subject"}, Offset: part.Offset, Len: part.HeaderLen, Size: -1},
			} {
				rd, size, err := s.Open(r)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rd)
				if int64(len(b)) != size {
					t.Fatalf("section of %d octets announced as %d", len(b), size)
				}
			}
			if b, err := part.Binary(r); err == nil {
				io.Copy(io.Discard, b)
			}
			io.Copy(io.Discard, part.Text(r))
			part.Filename()
			return true
		})
		for _, spec := range []string{"1", "1.MIME", "2.HEADER", "1.1.TEXT", "HEADER.FIELDS (From To)"} {
			if s, err := p.Section(spec); err == nil {
				rd, size, err := s.Open(r)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rd)
				if int64(len(b)) != size {
					t.Fatalf("[%s] of %d octets announced as %d", spec, len(b), size)
				}
			}
		}
	})
}

// FuzzAddressList: address parsing never panics, stays within its limit,
// and what ENVELOPE writes of it parses back as address structures.
func FuzzAddressList(f *testing.F) {
	f.Fuzz(func(t *testing.T, v []byte) {
		list := ParseAddressList(v)
		if len(list) > MaxAddresses {
			t.Fatalf("%d addresses", len(list))
		}
		depth := 0
		for _, a := range list {
			switch a.Kind {
			case AddrGroupStart:
				depth++
			case AddrGroupEnd:
				depth--
			default:
				if a.Mailbox == "" && a.Host == "" {
					t.Fatalf("empty address from %q", v)
				}
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("groups unbalanced in %q", v)
			}
		}
		if len(list) > 0 && depth != 0 {
			t.Fatalf("group left open in %q", v)
		}
		e, err := parseSexp(string(appendAddresses(nil, list)))
		if err != nil {
			t.Fatalf("%v from %q", err, v)
		}
		if len(list) > 0 && len(e.list) != len(list) {
			t.Fatalf("%d addresses written as %d", len(list), len(e.list))
		}
		if err := checkEnvelope(sexp{isLst: true, list: []sexp{{isNil: true}, {isNil: true}, e, e, e, e, e, e, {isNil: true}, {isNil: true}}}); err != nil {
			t.Fatalf("%v from %q", err, v)
		}
	})
}

// FuzzParams: RFC 2231 parameter parsing and joining never panics, keeps
// its limit, writes valid IMAP strings, and decodes to UTF-8 for the
// charsets it knows.
func FuzzParams(f *testing.F) {
	f.Fuzz(func(t *testing.T, v []byte) {
		var st stats
		ct := parseContentType(append([]byte("text/plain"), v...), &st)
		if st.params > MaxParams || len(ct.params) > MaxParams {
			t.Fatalf("%d parameters", st.params)
		}
		s, err := parseSexp(string(appendParams(nil, ct.params, true)))
		if err != nil || checkParams(s) != nil {
			t.Fatalf("bad parameter list from %q: %v", v, err)
		}
		for _, pr := range ct.params {
			d := DecodeParam(pr.Value)
			if strings.HasPrefix(strings.ToLower(pr.Value), "utf-8'") && !utf8.ValidString(d) {
				t.Fatalf("DecodeParam(%q) = %q", pr.Value, d)
			}
		}
		p := &Part{Params: ct.params}
		p.Filename()
	})
}

// FuzzDecodeHeader: RFC 2047 decoding never panics, does not grow its
// input more than replacement characters can, and yields UTF-8 unless an
// unknown charset passed octets through.
func FuzzDecodeHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, v []byte) {
		d := DecodeHeader(v)
		if len(d) > 3*len(v) {
			t.Fatalf("%d octets from %d", len(d), len(v))
		}
		if !utf8.ValidString(d) {
			for _, cs := range strings.Split(string(v), "=?")[1:] {
				if i := strings.IndexByte(cs, '?'); i >= 0 && lookupCharset(cs[:i]) == csRaw {
					return
				}
			}
			t.Fatalf("invalid UTF-8 %q from %q", d, v)
		}
	})
}

// FuzzTransferDecoding: base64 and quoted-printable decoding do not
// depend on how the input is split into reads.
func FuzzTransferDecoding(f *testing.F) {
	f.Fuzz(func(t *testing.T, v []byte) {
		for _, enc := range []string{"base64", "quoted-printable"} {
			a, _ := DecodeBinary(enc, bytes.NewReader(v))
			b, _ := DecodeBinary(enc, &oneByteReader{s: string(v)})
			x, _ := io.ReadAll(a)
			y, _ := io.ReadAll(b)
			if !bytes.Equal(x, y) {
				t.Fatalf("%s of %q: %q in one read, %q one octet at a time", enc, v, x, y)
			}
			if len(x) > len(v) {
				t.Fatalf("%s grew %d octets to %d", enc, len(v), len(x))
			}
		}
	})
}
