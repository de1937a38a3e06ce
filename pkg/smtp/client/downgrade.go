package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// Limits of the MIME walk, Postfix's defaults: past them the rest of the
// message is copied unchanged rather than guessed at.
const (
	maxMIMENesting  = 100     // mime_nesting_limit
	maxBoundaryLen  = 2048    // mime_boundary_length_limit
	maxHeaderOctets = 1 << 20 // header block of one entity
	downgradeBuffer = 64 << 10
)

// Downgrade copies a message with 8-bit content to dst as 7-bit MIME, for
// a server that does not offer 8BITMIME (RFC 6152 §3: the client must not
// send 8-bit data to it). Every body part declared 8bit or binary is
// re-encoded as quoted-printable (RFC 2045 §6.7) and its
// Content-Transfer-Encoding header replaced; multiparts and message/rfc822
// parts declared 8bit become 7bit. This is what Postfix does by default
// (disable_mime_output_conversion = no). A message without a MIME-Version
// header is not MIME and is copied as it is, as are 8-bit octets in
// headers, which no transfer encoding can fix.
func Downgrade(dst io.Writer, src io.Reader) error {
	d := &downgrader{br: bufio.NewReaderSize(src, downgradeBuffer), w: bufio.NewWriter(dst)}
	_, err := d.entity(0, true)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return d.w.Flush()
}

type downgrader struct {
	br     *bufio.Reader
	w      *bufio.Writer
	bounds []string // boundaries of the enclosing multiparts, innermost last
	mid    bool     // the last chunk read ended inside a line
	giveUp bool     // a limit was hit: copy the rest unchanged
}

// readLine returns the next line with its ending, or a chunk of a line too
// long for the buffer (full false; the rest follows). The returned slice
// is only valid until the next read.
func (d *downgrader) readLine() (line []byte, atStart, full bool, err error) {
	atStart = !d.mid
	line, err = d.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		d.mid = true
		return line, atStart, false, nil
	}
	d.mid = false
	return line, atStart, true, err
}

// boundary reports whether line is a delimiter of an enclosing multipart
// (RFC 2046 §5.1.1: "--" boundary, "--" after it for the last, then
// optional white space), and which: the index in d.bounds and whether it
// is the closing one.
func (d *downgrader) boundary(line []byte) (idx int, closing bool) {
	if !bytes.HasPrefix(line, []byte("--")) || len(d.bounds) == 0 {
		return -1, false
	}
	l := bytes.TrimRight(line[2:], " \t\r\n")
	for i := len(d.bounds) - 1; i >= 0; i-- {
		b := d.bounds[i]
		if string(l) == b {
			return i, false
		}
		if len(l) == len(b)+2 && string(l[:len(b)]) == b && string(l[len(b):]) == "--" {
			return i, true
		}
	}
	return -1, false
}

// copyBody copies lines to out until a delimiter of an enclosing multipart,
// which it returns (a copy) without writing it.
func (d *downgrader) copyBody(out io.Writer) ([]byte, error) {
	for {
		line, atStart, full, err := d.readLine()
		if atStart && full && len(line) > 0 {
			if i, _ := d.boundary(line); i >= 0 {
				return bytes.Clone(line), nil
			}
		}
		if _, werr := out.Write(line); werr != nil {
			return nil, werr
		}
		if err != nil {
			return nil, err
		}
	}
}

func (d *downgrader) passThrough() error {
	d.giveUp = true
	_, err := io.Copy(d.w, d.br)
	if err == nil {
		err = io.EOF
	}
	return err
}

// header reads an entity's header block up to and including the empty
// line. It stops early at a delimiter line (returned as end) or when the
// block is beyond the limits (giveUp).
func (d *downgrader) header() (lines [][]byte, end []byte, err error) {
	size := 0
	for {
		line, atStart, full, err := d.readLine()
		if !full || size+len(line) > maxHeaderOctets {
			d.writeLines(lines)
			d.w.Write(line)
			return nil, nil, d.passThrough()
		}
		if atStart {
			if i, _ := d.boundary(line); i >= 0 {
				return lines, bytes.Clone(line), nil
			}
		}
		if len(line) > 0 {
			lines = append(lines, bytes.Clone(line))
			size += len(line)
		}
		if err != nil {
			return lines, nil, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return lines, nil, nil
		}
	}
}

func (d *downgrader) writeLines(lines [][]byte) {
	for _, l := range lines {
		d.w.Write(l)
	}
}

// field is one header field, made of lines[start:end].
type field struct {
	name       string // lower case
	value      string // unfolded
	start, end int
}

func fields(lines [][]byte) []field {
	var out []field
	for i, l := range lines {
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') && len(out) > 0 {
			f := &out[len(out)-1]
			f.value += " " + strings.TrimSpace(string(l))
			f.end = i + 1
			continue
		}
		name, value, ok := strings.Cut(string(l), ":")
		if !ok {
			continue
		}
		out = append(out, field{name: strings.ToLower(strings.TrimSpace(name)),
			value: strings.TrimSpace(value), start: i, end: i + 1})
	}
	return out
}

// entity converts one MIME entity: its header, then its body up to a
// delimiter of an enclosing multipart, which it returns.
func (d *downgrader) entity(depth int, top bool) ([]byte, error) {
	lines, end, err := d.header()
	if d.giveUp {
		return nil, err
	}
	if end != nil || err != nil {
		d.writeLines(lines)
		return end, err
	}
	var ctype, cte string
	mimeVersion := false
	fs := fields(lines)
	isCTE := make([]bool, len(lines))
	for _, f := range fs {
		switch f.name {
		case "content-type":
			ctype = f.value
		case "content-transfer-encoding":
			cte = strings.ToLower(f.value)
			for i := f.start; i < f.end; i++ {
				isCTE[i] = true
			}
		case "mime-version":
			mimeVersion = true
		}
	}
	if top && !mimeVersion {
		d.writeLines(lines)
		return nil, d.passThrough()
	}
	mt, params, perr := mime.ParseMediaType(ctype)
	if ctype == "" || perr != nil {
		mt = "text/plain"
	}
	eightBit := cte == "8bit" || cte == "binary"
	// writeHeader writes the header with the transfer encoding replaced;
	// the last line is the empty one that ends the header.
	writeHeader := func(enc string) {
		if !eightBit {
			d.writeLines(lines)
			return
		}
		for i, l := range lines[:len(lines)-1] {
			if !isCTE[i] {
				d.w.Write(l)
			}
		}
		d.w.WriteString("Content-Transfer-Encoding: " + enc + "\n")
		d.w.Write(lines[len(lines)-1])
	}
	switch {
	case depth >= maxMIMENesting:
		d.writeLines(lines)
		return nil, d.passThrough()
	case strings.HasPrefix(mt, "multipart/"):
		b := params["boundary"]
		if b == "" || len(b) > maxBoundaryLen {
			break // not a usable multipart: its body is a leaf
		}
		writeHeader("7bit")
		return d.multipart(b, depth)
	case mt == "message/rfc822" || mt == "message/global":
		writeHeader("7bit")
		return d.entity(depth+1, false)
	}
	if !eightBit {
		d.writeLines(lines)
		return d.copyBody(d.w)
	}
	writeHeader("quoted-printable")
	qp := quotedprintable.NewWriter(d.w)
	end, err = d.copyBody(qp)
	if cerr := qp.Close(); cerr != nil && (err == nil || errors.Is(err, io.EOF)) {
		err = cerr
	}
	return end, err
}

// multipart converts the body of a multipart with boundary b: preamble,
// parts, closing delimiter, epilogue.
func (d *downgrader) multipart(b string, depth int) ([]byte, error) {
	d.bounds = append(d.bounds, b)
	own := len(d.bounds) - 1
	pop := func() { d.bounds = d.bounds[:own] }
	line, err := d.copyBody(d.w) // preamble
	for {
		if err != nil || d.giveUp {
			pop()
			return nil, err
		}
		i, closing := d.boundary(line)
		if i != own {
			// An outer delimiter: this multipart was not closed.
			pop()
			return line, nil
		}
		d.w.Write(line)
		if closing {
			pop()
			return d.copyBody(d.w) // epilogue
		}
		line, err = d.entity(depth+1, false)
	}
}
