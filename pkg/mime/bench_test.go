package mime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleMessage builds a typical message of about size octets: text and
// HTML alternatives, and a base64 attachment making up the rest.
func sampleMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <alice@example.com>\r\n" +
		"Received: from mx.example.com (mx.example.com [192.0.2.1])\r\n\tby mail.example.org with ESMTPS id 4F2A; Mon, 1 Jan 2024 10:00:00 +0000\r\n" +
		"From: =?utf-8?q?Al=C3=AFce?= Example <alice@example.com>\r\n" +
		"To: Bob <bob@example.org>, carol@example.org\r\n" +
		"Cc: \"Dave, D.\" <dave@example.net>\r\n" +
		"Subject: Quarterly report\r\n" +
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n" +
		"Message-ID: <report.1@example.com>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"==outer==\"\r\n\r\n" +
		"--==outer==\r\nContent-Type: multipart/alternative; boundary=\"==alt==\"\r\n\r\n" +
		"--==alt==\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	para := "The figures for the quarter are attached; the summary is below.\r\n"
	for i := 0; i < 40; i++ {
		b.WriteString(para)
	}
	b.WriteString("\r\n--==alt==\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 40; i++ {
		b.WriteString("<p style=3D\"margin:0\">" + strings.TrimSpace(para) + "</p>\r\n")
	}
	b.WriteString("\r\n--==alt==--\r\n\r\n--==outer==\r\n" +
		"Content-Type: application/pdf; name=\"report.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"report.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	raw := make([]byte, (size-b.Len())*3/4)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--==outer==--\r\n")
	return b.Bytes()
}

func benchParse(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, err := Parse(bytes.NewReader(msg), int64(len(msg)))
		if err != nil || len(p.Children) != 2 {
			b.Fatal("bad parse")
		}
	}
}

func BenchmarkParse50KB(b *testing.B)  { benchParse(b, sampleMessage(50<<10)) }
func BenchmarkParse5MB(b *testing.B)   { benchParse(b, sampleMessage(5<<20)) }
func BenchmarkParse5MBLF(b *testing.B) { benchParse(b, toLF(sampleMessage(5<<20))) }
func BenchmarkParseBytes5MB(b *testing.B) {
	msg := sampleMessage(5 << 20)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ParseBytes(msg)
	}
}

// BenchmarkGoldenResponses writes ENVELOPE and BODYSTRUCTURE of every
// golden message (one op is all 108).
func BenchmarkGoldenResponses(b *testing.B) {
	var parts []*Part
	for _, g := range loadGolden(b) {
		raw, err := os.ReadFile(filepath.Join(goldenDir, "messages", g.Message))
		if err != nil {
			b.Fatal(err)
		}
		parts = append(parts, ParseBytes(raw))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range parts {
			_ = p.Envelope()
			_ = p.BodyStructure(true)
		}
	}
}

// BenchmarkGoldenParseAndRespond parses every golden message and writes
// its ENVELOPE and BODYSTRUCTURE (one op is all 108).
func BenchmarkGoldenParseAndRespond(b *testing.B) {
	var msgs [][]byte
	total := 0
	for _, g := range loadGolden(b) {
		raw, err := os.ReadFile(filepath.Join(goldenDir, "messages", g.Message))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		total += len(raw)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range msgs {
			p := ParseBytes(m)
			_ = p.Envelope()
			_ = p.BodyStructure(true)
		}
	}
}

// Hostile inputs (HOSTILE-INPUTS §36): time should follow size.
func BenchmarkHostile(b *testing.B) {
	long := strings.Repeat("x", 1<<20)
	cases := map[string][]byte{
		"parts-100000":   manyParts(100000),
		"nesting-1000":   nestedMultiparts(1000),
		"messages-1000":  nestedMessages(1000),
		"boundary-1MB":   []byte("Content-Type: multipart/mixed; boundary=\"" + long + "\"\r\n\r\n" + strings.Repeat("--"+long+"\r\n\r\nx\r\n", 8) + "--" + long + "--\r\n"),
		"params-10000":   []byte("Content-Type: text/plain" + strings.Repeat("; a*1*=%41", 10000) + "\r\n\r\n"),
		"addresses-100k": []byte("To: " + strings.Repeat("a@b, ", 100000) + "\r\n\r\n"),
		"dashes-5MB":     bytes.Repeat([]byte("--not-a-boundary\r\n"), 5<<20/18),
	}
	cases["dashes-5MB"] = append([]byte("Content-Type: multipart/mixed; boundary=not-a-boundary-but-close\r\n\r\n"), cases["dashes-5MB"]...)
	for _, name := range []string{"parts-100000", "nesting-1000", "messages-1000", "boundary-1MB", "params-10000", "addresses-100k", "dashes-5MB"} {
		msg := cases[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p := ParseBytes(msg)
				_ = p.BodyStructure(true)
				_ = p.Envelope()
			}
		})
	}
}

// BenchmarkHugeHeader parses 100 MB of header served by a ReaderAt that
// holds none of it.
func BenchmarkHugeHeader(b *testing.B) {
	g := newGen("Content-Type: text/plain\r\n", 1, "X-Junk: "+strings.Repeat("j", 1014)+"\r\n", 100<<10, "\r\nbody\r\n", 1)
	b.SetBytes(g.size)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(g, g.size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSectionBody5MB(b *testing.B) {
	msg := toLF(sampleMessage(5 << 20))
	p := ParseBytes(msg)
	s, err := p.Section("2")
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(msg)
	buf := make([]byte, 64<<10)
	b.SetBytes(s.Size)
	for i := 0; i < b.N; i++ {
		rd, _, _ := s.Open(r)
		n := 0
		for {
			m, err := rd.Read(buf)
			n += m
			if err != nil {
				break
			}
		}
		if int64(n) != s.Size {
			b.Fatal(fmt.Sprint(n, s.Size))
		}
	}
}
