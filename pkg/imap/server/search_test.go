package server

import (
	"strings"
	"testing"
)

// searchFixture has five messages with known properties.
func searchFixture(t *testing.T) (*testServer, *tconn) {
	ts := newTestServer(t, nil)
	msgs := []string{
		simpleMsg, // 1: from bob, "hello there", 2024-01-01
		multipartMsg,
		"From: \"Zoë\" <zoe@example.org>\r\nTo: team@example.test\r\nCc: bob@example.org\r\nSubject: Weekly report\r\nDate: Wed, 10 Jan 2024 09:00:00 +0000\r\nX-Priority: 1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nDie Zahlen f=FCr M=E4rz sind gut.\r\n",
		"From: eve@example.com\r\nSubject: =?iso-8859-1?q?Caf=E9?=\r\nDate: Thu, 11 Jan 2024 09:00:00 +0000\r\nContent-Type: text/html\r\n\r\n<p>BIG " + strings.Repeat("padding ", 2000) + "NEEDLE at the end</p>\r\n",
		"From: bob@example.org\r\nSubject: small\r\n\r\nx\r\n",
	}
	for i, m := range msgs {
		var flags []string
		switch i {
		case 0:
			flags = []string{`\Seen`}
		case 1:
			flags = []string{`\Seen`, `\Flagged`, "$Work"}
		case 2:
			flags = []string{`\Answered`}
		case 4:
			flags = []string{`\Deleted`, `\Draft`}
		}
		ts.user.Deliver("INBOX", []byte(m), flags...)
	}
	return ts, ts.loginSelect()
}

func searchResult(t *testing.T, c *tconn, cmd string) string {
	t.Helper()
	out := c.ok(cmd)
	for _, l := range out {
		if strings.HasPrefix(l, "* SEARCH") {
			return strings.TrimSpace(strings.TrimPrefix(l, "* SEARCH"))
		}
	}
	t.Fatalf("%s: no SEARCH response in %q", cmd, out)
	return ""
}

func TestSearchKeys(t *testing.T) {
	_, c := searchFixture(t)
	cases := map[string]string{
		"ALL":                               "1 2 3 4 5",
		"SEEN":                              "1 2",
		"UNSEEN":                            "3 4 5",
		"ANSWERED":                          "3",
		"UNANSWERED":                        "1 2 4 5",
		"DELETED":                           "5",
		"UNDELETED":                         "1 2 3 4",
		"DRAFT":                             "5",
		"UNDRAFT":                           "1 2 3 4",
		"FLAGGED":                           "2",
		"UNFLAGGED":                         "1 3 4 5",
		"KEYWORD $Work":                     "2",
		"UNKEYWORD $work":                   "1 3 4 5",
		"RECENT":                            "1 2 3 4 5",
		"NEW":                               "3 4 5",
		"OLD":                               "",
		"FROM bob":                          "1 5",
		"FROM \"BOB@EXAMPLE\"":              "1 5",
		"TO team":                           "3",
		"CC bob":                            "3",
		"BCC bob":                           "",
		"SUBJECT hello":                     "1",
		"SUBJECT grüße":                     "",
		"SUBJECT café":                      "",
		"HEADER X-Priority 1":               "3",
		"HEADER X-Priority \"\"":            "3",
		"HEADER Message-ID example.org":     "1",
		"BODY \"this is the body\"":         "1",
		"BODY käse":                         "",
		"BODY needle":                       "4",
		"TEXT weekly":                       "3",
		"TEXT \"Hi Alice\"":                 "1",
		"LARGER 1000":                       "4",
		"SMALLER 100":                       "5",
		"SENTBEFORE 2-Jan-2024":             "1",
		"SENTON 2-Jan-2024":                 "2",
		"SENTSINCE 10-Jan-2024":             "3 4 5", // 5 has no Date: its internal date counts
		"SINCE 1-Jan-2000":                  "1 2 3 4 5",
		"BEFORE 1-Jan-2000":                 "",
		"UID 2:3":                           "2 3",
		"UID 4:*":                           "4 5",
		"2,4:*":                             "2 4 5",
		"NOT 1:3":                           "4 5",
		"OR SEEN ANSWERED":                  "1 2 3",
		"OR (SEEN FLAGGED) DRAFT":           "2 5",
		"(SEEN) (UNFLAGGED)":                "1",
		"NOT OR SEEN DELETED":               "3 4",
		"CHARSET UTF-8 SUBJECT grüße":       "2",
		"CHARSET UTF-8 BODY {5}\r\nkäse":    "2",
		"CHARSET UTF-8 BODY {5}\r\nmärz":    "3",
		"CHARSET UTF-8 SUBJECT {5}\r\ncafé": "4",
	}
	for k, want := range cases {
		// 8-bit search strings need a literal or UTF-8 mode.
		if strings.ContainsAny(k, "üéä") && !strings.Contains(k, "{") {
			continue
		}
		if got := searchResult(t, c, "s SEARCH "+k); got != want {
			t.Errorf("SEARCH %s = %q, want %q", k, got, want)
		}
	}
	if got := searchResult(t, c, "u UID SEARCH FLAGGED"); got != "2" {
		t.Error(got)
	}
	c.expect("b SEARCH CHARSET KOI8-R ALL", "NO", "[BADCHARSET (UTF-8 US-ASCII)]")
	c.expect("c SEARCH 9", "BAD", "Invalid messageset")
	c.ok("d SEARCH CHARSET US-ASCII ALL")
}

// ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
func TestESearchAndSearchRes(t *testing.T) {
	_, c := searchFixture(t)
	mustHave(t, c.ok("a SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN"), `* ESEARCH (TAG "a") MIN 3 MAX 5 ALL 3:5 COUNT 3`)
	mustHave(t, c.ok("b UID SEARCH RETURN () SEEN"), `* ESEARCH (TAG "b") UID ALL 1:2`)
	mustHave(t, c.ok("c SEARCH RETURN (COUNT) KEYWORD nothing"), `* ESEARCH (TAG "c") COUNT 0`)
	out := c.ok("d SEARCH RETURN (MIN) KEYWORD nothing")
	if len(out) != 1 || out[0] != `* ESEARCH (TAG "d")` {
		t.Fatalf("%q", out)
	}
	// SAVE alone answers nothing; $ then names the result.
	out = c.ok("e SEARCH RETURN (SAVE) OR ANSWERED FLAGGED")
	if len(out) != 0 {
		t.Fatalf("%q", out)
	}
	mustHave(t, c.ok("f FETCH $ (UID)"), "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)")
	if got := searchResult(t, c, "g SEARCH $"); got != "2 3" {
		t.Fatal(got)
	}
	if got := searchResult(t, c, "h SEARCH NOT UID $"); got != "1 4 5" {
		t.Fatal(got)
	}
	c.ok(`i STORE $ +FLAGS (\Seen)`)
	// SAVE with MIN only keeps the minimum (RFC 5182 §2.4).
	c.ok("j SEARCH RETURN (SAVE MIN) UNSEEN")
	if got := searchResult(t, c, "k UID SEARCH $"); got != "4" {
		t.Fatal(got)
	}
	// Expunged messages leave $.
	c.ok(`l STORE 4 +FLAGS.SILENT (\Deleted)`)
	c.ok("m EXPUNGE")
	if got := searchResult(t, c, "n SEARCH $"); got != "" {
		t.Fatal(got)
	}
	// A new SELECT forgets $.
	c.ok("o SEARCH RETURN (SAVE) ALL")
	c.ok("p SELECT INBOX")
	if got := searchResult(t, c, "q SEARCH $"); got != "" {
		t.Fatal(got)
	}
}

// IMAP4rev2 (RFC 9051) once enabled: no \Recent or RECENT, ESEARCH for
// SEARCH, a LIST response in SELECT, UTF-8 names.
func TestIMAP4rev2(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c := ts.login()
	mustHave(t, c.ok("a ENABLE IMAP4rev2"), "* ENABLED IMAP4rev2")
	out := c.ok("b SELECT INBOX")
	mustHave(t, out, "* 1 EXISTS", `* LIST () "." INBOX`)
	mustNotHave(t, out, "RECENT", "[UNSEEN")
	mustHave(t, c.ok("c FETCH 1 FLAGS"), "* 1 FETCH (FLAGS ())")
	mustHave(t, c.ok("d SEARCH ALL"), `* ESEARCH (TAG "d") ALL 1`)
	mustHave(t, c.ok("e UID SEARCH UNSEEN"), `* ESEARCH (TAG "e") UID ALL 1`)
	c.ok(`f CREATE "Brouillons d'été"`)
	mustHave(t, c.ok(`g LIST "" *`), `"." "Brouillons d'été"`, `* LIST (\HasNoChildren) "." INBOX`)
	c.ok(`h SEARCH SUBJECT "héllo"`)
	c.ok(`i LIST (SUBSCRIBED) "" "*"`)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	out = c.ok("j NOOP")
	mustHave(t, out, "* 2 EXISTS")
	mustNotHave(t, out, "RECENT")
	// SELECT of another mailbox: CLOSED marks the switch.
	mustHave(t, c.ok(`k SELECT "Brouillons d'été"`), "* OK [CLOSED]")
}

func TestIDAndNoop(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.ID = map[string]string{"name": "posthorn", "vendor": "x"} })
	c := ts.dial()
	mustHave(t, c.ok(`a ID ("name" "Thunderbird" "version" "128.0")`), `* ID ("name" "posthorn" "vendor" "x")`)
	mustHave(t, c.ok("b ID NIL"), `* ID ("name" "posthorn"`)
}

func TestWithholdRev2AndUTF8(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.NoIMAP4rev2, c.NoUTF8Accept = true, true })
	c := ts.dial()
	mustNotHave(t, c.ok("a CAPABILITY"), "IMAP4rev2")
	c.ok("b LOGIN alice secret")
	out := c.ok("c CAPABILITY")
	mustNotHave(t, out, "IMAP4rev2", "UTF8=ACCEPT")
	mustHave(t, out, "IMAP4rev1", "QRESYNC")
	if out := c.ok("d ENABLE IMAP4rev2 UTF8=ACCEPT CONDSTORE"); out[0] != "* ENABLED CONDSTORE" {
		t.Fatalf("%q", out)
	}
	mustHave(t, c.ok("e SELECT INBOX"), "* 0 RECENT")
}
