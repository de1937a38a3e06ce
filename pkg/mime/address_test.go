package mime

import (
	"strings"
	"testing"
)

func TestParseAddressList(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "NIL"},
		{"  ", "NIL"},
		{"a@b.example", `((NIL NIL "a" "b.example"))`},
		{"John Doe <jd@example.com>", `(("John Doe" NIL "jd" "example.com"))`},
		{`"Doe, John" <jd@example.com>, x@y`, `(("Doe, John" NIL "jd" "example.com")(NIL NIL "x" "y"))`},
		{"jd@example.com (John Doe)", `(("John Doe" NIL "jd" "example.com"))`},
		{"<jd@example.com>", `((NIL NIL "jd" "example.com"))`},
		{`"" <jd@example.com>`, `((NIL NIL "jd" "example.com"))`},
		// Encoded words are kept: ENVELOPE carries raw header text.
		{"=?utf-8?q?Ren=C3=A9e?= <r@x>", `(("=?utf-8?q?Ren=C3=A9e?=" NIL "r" "x"))`},
		// A display name needing escapes goes as a literal.
		{`"a \"b\"" <c@d>`, "((" + "{5}\r\na \"b\"" + ` NIL "c" "d"))`},
		{"Barry A. Warsaw <b@x>", `(("Barry A. Warsaw" NIL "b" "x"))`},
		// Comments inside a display name are not part of it (Go
		// CVE-2024-24784 misread these).
		{"Joe (not@evil.example) Bloggs <joe@x>", `(("Joe Bloggs" NIL "joe" "x"))`},
		{"(comment) <a@b> (other)", `((NIL NIL "a" "b"))`},
		// Groups (RFC 5322 §3.4): start and end markers.
		{"Team: a@x, B <b@y>;, c@z", `((NIL NIL "Team" NIL)(NIL NIL "a" "x")("B" NIL "b" "y")(NIL NIL NIL NIL)(NIL NIL "c" "z"))`},
		{"undisclosed-recipients:;", `((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))`},
		{"Empty: ;", `((NIL NIL "Empty" NIL)(NIL NIL NIL NIL))`},
		{"Broken: a@x", `((NIL NIL "Broken" NIL)(NIL NIL "a" "x")(NIL NIL NIL NIL))`},
		// Obsolete route (RFC 5322 §4.4).
		{"<@r1,@r2:a@b>", `((NIL "@r1,@r2" "a" "b"))`},
		{"<@r1 a@b>", `((NIL "INVALID_ROUTE" "a" "b"))`},
		{"<@r1:>", `((NIL "@r1" "MISSING_MAILBOX" "MISSING_DOMAIN"))`},
		// Missing parts are filled in, as clients expect both.
		{"foo", `((NIL NIL "foo" "MISSING_DOMAIN"))`},
		{"John Doe", `(("John Doe" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))`},
		{"MAILER DAEMON <>", `(("MAILER DAEMON" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))`},
		{"Joe <joe@x", `(("Joe" NIL "joe" "SYNTAX_ERROR"))`},
		{"@x", `((NIL NIL "MISSING_MAILBOX" "x"))`},
		{`"quoted local"@x`, `((NIL NIL "quoted local" "x"))`},
		{`"only quoted"`, `((NIL NIL "only quoted" "MISSING_DOMAIN"))`},
		{"a@[192.0.2.1]", `((NIL NIL "a" "[192.0.2.1]"))`},
		{"a . b @ c . d", `((NIL NIL "a.b" "c.d"))`},
		// Separators: a trailing comma is nothing; garbage stops.
		{"a@b,", `((NIL NIL "a" "b"))`},
		{"a@b c@d", `((NIL NIL "a" "b"))`},
		{"a@b,\r\n\tc@d", `((NIL NIL "a" "b")(NIL NIL "c" "d"))`},
		// Unterminated things.
		{`"open`, `((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))`},
		{"a@b (open", `((NIL NIL "a" "MISSING_DOMAIN"))`},
		// UTF-8 (RFC 6532) goes as a literal.
		{"Zoë <z@x>", "((" + "{4}\r\nZoë" + ` NIL "z" "x"))`},
	} {
		got := string(appendAddresses(nil, ParseAddressList([]byte(c.in))))
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

// HOSTILE-INPUTS §36: a huge address field stays bounded.
func TestAddressLimit(t *testing.T) {
	in := strings.Repeat("a@b, ", 3*MaxAddresses)
	if n := len(ParseAddressList([]byte(in))); n != MaxAddresses {
		t.Errorf("%d addresses, want %d", n, MaxAddresses)
	}
	msg := "To: " + strings.Repeat("a@b, ", MaxAddresses-1) + "\r\nTo: x@y, z@w\r\nCc: " +
		strings.Repeat("(", 100000) + "\r\n\r\n"
	p := ParseBytes([]byte(msg))
	if n := len(p.Env.To); n != MaxAddresses {
		t.Errorf("%d To addresses, want %d", n, MaxAddresses)
	}
	if p.Env.To[MaxAddresses-1].Mailbox != "x" {
		t.Errorf("second To field not merged: %+v", p.Env.To[MaxAddresses-1])
	}
	if p.Env.Cc != nil {
		t.Errorf("Cc = %+v", p.Env.Cc)
	}
}

func TestEnvelopeFields(t *testing.T) {
	msg := "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
		"Subject: first\r\n" +
		"Subject:   \"quoted\"  \r\n\tline\r\n" +
		"From: a@x\r\n" +
		"From: b@y\r\n" +
		"Sender:\r\n" +
		"Reply-To: r@z\r\n" +
		"Message-ID:\r\n <id@x>\r\n" +
		"In-Reply-To: <p@x>\r\n" +
		"Bcc: Hidden: ;\r\n" +
		"\r\n"
	got := ParseBytes([]byte(msg)).Envelope()
	want := `("Mon, 1 Jan 2024 00:00:00 +0000" {13}` + "\r\n" + `"quoted" line ((NIL NIL "a" "x")(NIL NIL "b" "y")) ((NIL NIL "a" "x")(NIL NIL "b" "y")) ((NIL NIL "r" "z")) NIL NIL ((NIL NIL "Hidden" NIL)(NIL NIL NIL NIL)) "<p@x>" " <id@x>")`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// A part that is no message has no envelope.
	p := ParseBytes([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nSubject: x\r\n\r\n--b--\r\n"))
	if got := p.Children[0].Envelope(); got != "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)" {
		t.Errorf("body part envelope = %s", got)
	}
}

func TestIMAPStrings(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{`a"b\c`, `"a\"b\\c"`},
		{`"""""`, "{5}\r\n\"\"\"\"\""},
		{"a\nb", "{3}\r\na\nb"},
		{"\xc3\xa9", "{2}\r\n\xc3\xa9"},
	} {
		if got := string(appendString(nil, c.in)); got != c.want {
			t.Errorf("appendString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"plain words", `"plain words"`},
		{"  lead", "{4}\r\nlead"},
		{"trail ", "{5}\r\ntrail"},
		{"a  b\t\tc", "{5}\r\na b c"},
		{"   ", `""`},
		{"", `""`},
		{"say \"hi\"", "{8}\r\nsay \"hi\""},
	} {
		if got := string(appendHuman(nil, c.in)); got != c.want {
			t.Errorf("appendHuman(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	s := "a\n b\nc\n"
	if got := string(appendNStringNoLF(nil, &s)); got != `"a b c"` {
		t.Errorf("nolf = %q", got)
	}
}
