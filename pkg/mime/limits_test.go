package mime

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// HOSTILE-INPUTS §36: every limit is exceeded here. The tests assert on
// counts of work done, which must stay linear in the input, not on time.

func mustParse(t testing.TB, msg []byte) (*Part, *stats) {
	t.Helper()
	p, st, err := parse(bytes.NewReader(msg), int64(len(msg)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkResponses(p); err != nil {
		t.Fatal(err)
	}
	if err := checkOffsets(p, int64(len(msg))); err != nil {
		t.Fatal(err)
	}
	return p, st
}

func countParts(p *Part) (n, depth int) {
	var walk func(p *Part, d int)
	walk = func(p *Part, d int) {
		n++
		if d > depth {
			depth = d
		}
		if p.Message != nil {
			walk(p.Message, d+1)
		}
		for _, c := range p.Children {
			walk(c, d+1)
		}
	}
	walk(p, 1)
	return n, depth
}

func manyParts(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

func TestManyParts(t *testing.T) {
	for _, n := range []int{MaxParts - 1, MaxParts, 10 * MaxParts} {
		msg := manyParts(n)
		p, st := mustParse(t, msg)
		parts, _ := countParts(p)
		want := n + 1
		if want > MaxParts {
			want = MaxParts
		}
		if parts != want {
			t.Errorf("%d parts: parsed %d, want %d", n, parts, want)
		}
		if p.Opaque != (n+1 > MaxParts) {
			t.Errorf("%d parts: Opaque = %v", n, p.Opaque)
		}
		// The last part still ends at its boundary, and the body
		// parts not made are still served in the multipart's body.
		last := p.Children[len(p.Children)-1]
		if got := string(msg[last.BodyOffset : last.BodyOffset+last.BodyLen]); got != fmt.Sprintf("part %d", len(p.Children)-1) {
			t.Errorf("%d parts: last body %q", n, got)
		}
		lines := int64(bytes.Count(msg, []byte("\n")))
		if st.lines > lines || st.boundaryCmp > lines {
			t.Errorf("%d parts: %d lines read, %d octets compared for %d lines", n, st.lines, st.boundaryCmp, lines)
		}
	}
}

func nestedMultiparts(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%04d\"\r\n\r\n--b%04d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%04d--\r\n", i)
	}
	return b.Bytes()
}

func nestedMessages(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i+1)
	}
	b.WriteString("Subject: innermost\r\n\r\ntext\r\n")
	return b.Bytes()
}

func TestNesting(t *testing.T) {
	for _, n := range []int{MaxDepth - 2, MaxDepth - 1, MaxDepth, 1000} {
		for kind, msg := range map[string][]byte{"multipart": nestedMultiparts(n), "message": nestedMessages(n)} {
			p, st := mustParse(t, msg)
			parts, depth := countParts(p)
			wantDepth := n + 1 + map[string]int{"multipart": 0, "message": 0}[kind]
			if wantDepth > MaxDepth {
				wantDepth = MaxDepth
			}
			if depth != wantDepth || parts != depth {
				t.Errorf("%s nested %d deep: depth %d parts %d, want depth %d", kind, n, depth, parts, wantDepth)
			}
			opaque := false
			p.Walk(func(q *Part) bool { opaque = opaque || q.Opaque; return true })
			if opaque != (n+1 > MaxDepth) {
				t.Errorf("%s nested %d deep: opaque %v", kind, n, opaque)
			}
			lines := int64(bytes.Count(msg, []byte("\n")))
			if st.lines > 2*lines || st.boundaryCmp > lines*MaxDepth*8 {
				t.Errorf("%s nested %d deep: %d lines, %d octets compared for %d lines", kind, n, st.lines, st.boundaryCmp, lines)
			}
			if n > MaxDepth && kind == "message" {
				// The innermost parsed part cannot be served as a
				// message without its envelope: it says so.
				if bs := p.BodyStructure(false); !strings.Contains(bs, `"application" "octet-stream"`) {
					t.Errorf("message nested %d deep: %.200s", n, bs)
				}
			}
		}
	}
}

func TestLongBoundary(t *testing.T) {
	for _, n := range []int{70, MaxBoundaryLen, MaxBoundaryLen + 1, 1 << 20} {
		b := strings.Repeat("x", n)
		var m bytes.Buffer
		fmt.Fprintf(&m, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", b)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(&m, "--%s\r\n\r\npart\r\n", b)
		}
		// Longer than the boundary, but the significant octets match.
		fmt.Fprintf(&m, "--%sy\r\n\r\npart\r\n--%s--\r\n", b, b)
		msg := m.Bytes()
		p, st := mustParse(t, msg)
		if len(p.Children) != 4 || p.Children[3].BodyLen != 4 {
			t.Errorf("boundary of %d: %d parts", n, len(p.Children))
		}
		if st.boundaryCmp > 5*MaxBoundaryLen {
			t.Errorf("boundary of %d: %d octets compared", n, st.boundaryCmp)
		}
		if v, _ := p.Param("boundary"); len(v) != n {
			t.Errorf("boundary parameter cut to %d", len(v))
		}
	}
}

func TestManyParams(t *testing.T) {
	for _, n := range []int{MaxParams, 10000} {
		var h bytes.Buffer
		h.WriteString("Content-Type: text/plain")
		h.WriteString(";\r\n x*0*=us-ascii''%41")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&h, ";\r\n x*%d*=%%41", i)
		}
		h.WriteString("\r\nContent-Disposition: attachment")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&h, "; p%d=v", i)
		}
		h.WriteString("\r\n\r\n")
		p, st := mustParse(t, h.Bytes())
		if st.params != 2*MaxParams {
			t.Errorf("%d parameters: %d parsed", n, st.params)
		}
		if v, _ := p.Param("x"); v != strings.Repeat("A", MaxParams) {
			t.Errorf("%d parameters: x = %q", n, v)
		}
		if len(p.DispositionParams) != MaxParams {
			t.Errorf("%d parameters: %d disposition parameters", n, len(p.DispositionParams))
		}
	}
}

// genReader serves a message made of repeated units without holding it.
type genReader struct {
	units  [][]byte
	counts []int64
	size   int64
}

func newGen(pairs ...any) *genReader {
	g := &genReader{}
	for i := 0; i < len(pairs); i += 2 {
		u := []byte(pairs[i].(string))
		c := int64(pairs[i+1].(int))
		g.units = append(g.units, u)
		g.counts = append(g.counts, c)
		g.size += int64(len(u)) * c
	}
	return g
}

func (g *genReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	base := int64(0)
	for i, u := range g.units {
		segLen := int64(len(u)) * g.counts[i]
		for n < len(p) && off+int64(n) < base+segLen {
			pos := off + int64(n) - base
			n += copy(p[n:], u[pos%int64(len(u)):])
		}
		base += segLen
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// 100 MB of header, generated on the fly: the header stops at
// MaxHeaderSize, the rest is body, and memory stays small.
func TestHugeHeader(t *testing.T) {
	junk := "X-Junk: " + strings.Repeat("j", 1014) + "\r\n" // 1 KiB
	subj := "Subject: " + strings.Repeat("s", 1013) + "\r\n"
	for name, line := range map[string]string{"junk": junk, "subject": subj} {
		g := newGen("From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n", 1, line, 100<<10, "\r\n--b\r\n\r\nbody\r\n--b--\r\n", 1)
		var p *Part
		var st *stats
		alloc := allocated(func() {
			var err error
			p, st, err = parse(g, g.size, nil)
			if err != nil {
				t.Fatal(err)
			}
		})
		if p.HeaderLen > MaxHeaderSize || p.HeaderLen < MaxHeaderSize-2048 || !p.Opaque || p.IsMultipart() || p.blank {
			t.Errorf("%s: header %d octets, opaque %v, multipart %v", name, p.HeaderLen, p.Opaque, p.IsMultipart())
		}
		if p.Size() != g.size {
			t.Errorf("%s: size %d, want %d", name, p.Size(), g.size)
		}
		if alloc > 16<<20 {
			t.Errorf("%s: %d MiB allocated", name, alloc>>20)
		}
		if st.lines > 100<<10+10 {
			t.Errorf("%s: %d lines read", name, st.lines)
		}
		if name == "subject" && (p.Env.Subject == nil || len(*p.Env.Subject) != 1013) {
			t.Errorf("subject lost")
		}
		if err := checkResponses(p); err != nil {
			t.Error(err)
		}
	}
}

func TestLongFields(t *testing.T) {
	// One line over MaxFieldSize ends the header before it.
	long := "Content-Type: text/html\r\nX-Long: " + strings.Repeat("l", MaxFieldSize) + "\r\nSubject: after\r\n\r\nbody"
	p, _ := mustParse(t, []byte(long))
	if !p.Opaque || p.HeaderLen != int64(len("Content-Type: text/html\r\n")) || p.Env.Subject != nil || p.Subtype != "html" {
		t.Errorf("long line: header %d, opaque %v", p.HeaderLen, p.Opaque)
	}
	// A folded field over MaxFieldSize is dropped, the header goes on.
	fold := "Content-Type: multipart/mixed; boundary=b" + strings.Repeat("\r\n x", MaxFieldSize/3) + "\r\nSubject: kept\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
	p, _ = mustParse(t, []byte(fold))
	if !p.Opaque || p.IsMultipart() || p.declared || p.Env.Subject == nil || *p.Env.Subject != "kept" {
		t.Errorf("long field: opaque %v multipart %v", p.Opaque, p.IsMultipart())
	}
	// A name longer than MaxHeaderNameLen is no name.
	name := "Content-Type" + strings.Repeat(" ", MaxHeaderNameLen) + ": multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
	p, _ = mustParse(t, []byte(name))
	if p.declared || p.IsMultipart() {
		t.Errorf("overlong name was read")
	}
	name = "Content-Type" + strings.Repeat(" ", MaxHeaderNameLen-len("Content-Type")) + ": multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"
	if p, _ = mustParse(t, []byte(name)); !p.IsMultipart() {
		t.Errorf("name of %d octets was not read", MaxHeaderNameLen)
	}
}

func TestReaderErrors(t *testing.T) {
	msg := manyParts(100)
	if _, err := Parse(bytes.NewReader(msg), int64(len(msg))+10); err == nil {
		t.Error("short reader: no error")
	}
}
