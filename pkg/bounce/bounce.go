// Package bounce builds the non-delivery report sent to a message's sender
// when recipients fail permanently or expire: a multipart/report
// (RFC 6522) with a human-readable part, a message/delivery-status part
// (RFC 3464) and the original message's headers (text/rfc822-headers).
package bounce

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// Failure is one recipient that could not be delivered.
type Failure struct {
	Recipient string
	Orig      string // original recipient (ORCPT), if known
	DSN       string // e.g. 5.1.1
	Reason    string
	Expired   bool // given up after the maximal queue lifetime
}

// Report describes the bounce to build.
type Report struct {
	Hostname string
	QueueID  string // of the original message
	Sender   string // original envelope sender: the bounce goes there
	Arrival  time.Time
	Failures []Failure
	Now      time.Time
}

// maxHeaderBytes bounds how much of the original header is returned.
const maxHeaderBytes = 64 * 1024

// Build writes the bounce message (LF line endings) given the original
// content. The result is small: it never includes the original body.
func Build(r Report, original io.Reader) []byte {
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	boundary := fmt.Sprintf("%s.%d/%s", r.QueueID, now.Unix(), r.Hostname)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\n", r.Hostname)
	fmt.Fprintf(&b, "To: <%s>\n", r.Sender)
	b.WriteString("Subject: Undelivered Mail Returned to Sender\n")
	fmt.Fprintf(&b, "Date: %s\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@%s>\n", r.QueueID, now.UnixNano(), r.Hostname)
	b.WriteString("Auto-Submitted: auto-replied\n")
	b.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary)
	b.WriteString("Content-Transfer-Encoding: 8bit\n\n")
	b.WriteString("This is a MIME-encapsulated message.\n\n")

	fmt.Fprintf(&b, "--%s\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\n\n", boundary)
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", r.Hostname)
	b.WriteString("I'm sorry to have to inform you that your message could not\n")
	b.WriteString("be delivered to one or more recipients. It's attached below.\n\n")
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "<%s>: %s\n", f.Recipient, oneLine(f.Reason))
	}
	b.WriteString("\n")

	fmt.Fprintf(&b, "--%s\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\n", r.Hostname)
	fmt.Fprintf(&b, "X-Posthorn-Queue-ID: %s\n", r.QueueID)
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&b, "Arrival-Date: %s\n", r.Arrival.Format(time.RFC1123Z))
	}
	for _, f := range r.Failures {
		b.WriteString("\n")
		if f.Orig != "" {
			fmt.Fprintf(&b, "Original-Recipient: %s\n", oneLine(f.Orig))
		}
		fmt.Fprintf(&b, "Final-Recipient: rfc822; %s\n", oneLine(f.Recipient))
		b.WriteString("Action: failed\n")
		dsn := f.DSN
		if dsn == "" || dsn[0] != '5' {
			// An expired temporary failure is reported as permanent.
			dsn = "5" + strings.TrimLeft(dsn, "0123456789")
			if dsn == "5" {
				dsn = "5.0.0"
			}
		}
		fmt.Fprintf(&b, "Status: %s\n", dsn)
		fmt.Fprintf(&b, "Diagnostic-Code: X-Posthorn; %s\n", oneLine(f.Reason))
	}
	b.WriteString("\n")

	fmt.Fprintf(&b, "--%s\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n", boundary)
	br := bufio.NewReader(io.LimitReader(original, maxHeaderBytes))
	for {
		line, err := br.ReadString('\n')
		if line == "\n" || line == "" {
			break
		}
		b.WriteString(line)
		if err != nil {
			b.WriteString("\n")
			break
		}
	}
	fmt.Fprintf(&b, "\n--%s--\n", boundary)
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
