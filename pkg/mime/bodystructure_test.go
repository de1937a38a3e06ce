package mime

import "testing"

func TestBodyStructureFields(t *testing.T) {
	for _, c := range []struct{ msg, ext, basic string }{
		{
			"Content-Type: text/html; charset=UTF-8\r\n" +
				"Content-ID: <id@x>\r\nContent-Description: A\r\n  folded one\r\n" +
				"Content-Transfer-Encoding: Base64\r\nContent-MD5: Q2hlY2s=\r\n" +
				"Content-Disposition: inline; filename=a.html\r\n" +
				"Content-Language: en, de-CH\r\nContent-Location: http://example.com/a.html\r\n" +
				"Content-Type: text/plain\r\n\r\nPGI+\r\n",
			`("text" "html" ("charset" "UTF-8") "<id@x>" "A  folded one" "Base64" 6 1 "Q2hlY2s=" ("inline" ("filename" "a.html")) ("en" "de-CH") "http://example.com/a.html")`,
			`("text" "html" ("charset" "UTF-8") "<id@x>" "A  folded one" "Base64" 6 1)`,
		},
		{
			// RFC 6532 §3.7 / RFC 9051: message/global carries an
			// envelope like message/rfc822.
			"Content-Type: message/global\r\n\r\nSubject: x\r\n\r\nbody\r\n",
			`("message" "global" NIL NIL NIL "7bit" 20 (NIL "x" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)`,
			`("message" "global" NIL NIL NIL "7bit" 20 (NIL "x" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1) 3)`,
		},
		{
			// An empty disposition and an unusable encoding.
			"Content-Type: image/png\r\nContent-Disposition:\r\nContent-Transfer-Encoding: base64 junk\r\n\r\n",
			`("image" "png" NIL NIL NIL "7bit" 0 NIL ("" NIL) NIL NIL)`,
			`("image" "png" NIL NIL NIL "7bit" 0)`,
		},
		{
			// A message/rfc822 part cut short by its parent's
			// boundary still has an (empty) message.
			"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\nX: 1\r\n--d--\r\n",
			`(("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 0 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)`,
			`(("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 0) "digest")`,
		},
	} {
		p := ParseBytes([]byte(c.msg))
		if got := p.BodyStructure(true); got != c.ext {
			t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", got, c.ext)
		}
		if got := p.BodyStructure(false); got != c.basic {
			t.Errorf("BODY\n got %s\nwant %s", got, c.basic)
		}
		if err := checkResponses(p); err != nil {
			t.Error(err)
		}
	}
}
