// Package bounce builds the delivery status notifications sent to a
// message's sender: non-delivery reports when recipients fail permanently
// or expire, and success notifications for recipients that asked for them
// (RFC 3461 NOTIFY=SUCCESS). Each is a multipart/report (RFC 6522) with a
// human-readable part, a message/delivery-status part (RFC 3464) and the
// original message: its headers (text/rfc822-headers), or the whole of it
// (message/rfc822) when the sender asked with RET=FULL and it is small
// enough.
package bounce

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// Actions of a recipient in a report (RFC 3464 §2.3.3).
const (
	ActionFailed    = "failed"
	ActionDelivered = "delivered"
	// ActionDelayed is a delay warning (Postfix's delay_warning_time):
	// the message is still being retried.
	ActionDelayed = "delayed"
)

// Failure is one recipient in a report: one that could not be delivered
// or, with Action ActionDelivered, one whose delivery is confirmed.
type Failure struct {
	Recipient string
	Orig      string // original recipient as "addr-type;address" (ORCPT), if known
	DSN       string // e.g. 5.1.1
	Reason    string
	Expired   bool   // given up after the maximal queue lifetime
	Action    string // ActionFailed when empty
}

// Report describes the notification to build.
type Report struct {
	Hostname string
	QueueID  string // of the original message
	Sender   string // original envelope sender: the report goes there
	Arrival  time.Time
	Failures []Failure
	Now      time.Time
	// EnvID is the sender's envelope identifier (ENVID, RFC 3461 §4.4),
	// returned as Original-Envelope-Id.
	EnvID string
	// Ret is "FULL" when the sender asked for the whole message back
	// (RET, RFC 3461 §4.3); anything else returns the headers only.
	Ret string
	// FullLimit caps the message returned for RET=FULL; a larger one is
	// returned as headers only. Zero means DefaultFullLimit.
	FullLimit int64
}

// DefaultFullLimit is Postfix's bounce_size_limit: the most of the
// original message a notification carries.
const DefaultFullLimit = 50000

// maxHeaderBytes bounds how much of the original header is returned.
const maxHeaderBytes = 64 * 1024

// Wants reports whether a recipient's NOTIFY value (as smtpd stores it:
// "", "NEVER", or SUCCESS, FAILURE and DELAY joined by commas) asks for a
// notification of kind "SUCCESS", "FAILURE" or "DELAY". Without NOTIFY,
// failures and delays are reported and successes are not (RFC 3461 §4.1).
func Wants(notify, kind string) bool {
	if notify == "" {
		return kind != "SUCCESS"
	}
	for _, k := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(k), kind) {
			return true
		}
	}
	return false
}

// Build writes the report (LF line endings) given the original content,
// which it reads up to the header's end, or for RET=FULL up to the limit.
func Build(r Report, original io.Reader) []byte {
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	success, delayed := len(r.Failures) > 0, len(r.Failures) > 0
	for _, f := range r.Failures {
		if f.Action != ActionDelivered {
			success = false
		}
		if f.Action != ActionDelayed {
			delayed = false
		}
	}
	limit := r.FullLimit
	if limit <= 0 {
		limit = DefaultFullLimit
	}
	full := strings.EqualFold(r.Ret, "FULL")
	var head []byte
	if full {
		// Read one octet past the limit to learn whether it fits.
		head, _ = io.ReadAll(io.LimitReader(original, limit+1))
		original = io.MultiReader(bytes.NewReader(head), original)
	}
	fits := full && int64(len(head)) <= limit

	boundary := fmt.Sprintf("%s.%d/%s", r.QueueID, now.Unix(), r.Hostname)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\n", r.Hostname)
	fmt.Fprintf(&b, "To: <%s>\n", oneLine(r.Sender))
	if success {
		b.WriteString("Subject: Successful Mail Delivery Report\n")
	} else if delayed {
		b.WriteString("Subject: Delayed Mail (still being retried)\n")
	} else {
		b.WriteString("Subject: Undelivered Mail Returned to Sender\n")
	}
	fmt.Fprintf(&b, "Date: %s\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@%s>\n", r.QueueID, now.UnixNano(), r.Hostname)
	b.WriteString("Auto-Submitted: auto-replied\n")
	b.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary)
	b.WriteString("Content-Transfer-Encoding: 8bit\n\n")
	b.WriteString("This is a MIME-encapsulated message.\n\n")

	fmt.Fprintf(&b, "--%s\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\n\n", boundary)
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", r.Hostname)
	if success {
		b.WriteString("Your message was successfully delivered to the destination(s)\n")
		b.WriteString("listed below. If the message was delivered to mailbox you will\n")
		b.WriteString("receive no further notifications.\n\n")
	} else if delayed {
		b.WriteString("Your message could not be delivered for more than a while.\n")
		b.WriteString("It will be retried until it is too old; you need not send it again.\n\n")
	} else {
		b.WriteString("I'm sorry to have to inform you that your message could not\n")
		b.WriteString("be delivered to one or more recipients. It's attached below.\n\n")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "<%s>: %s\n", oneLine(f.Recipient), oneLine(f.Reason))
	}
	b.WriteString("\n")
	if full && !fits {
		// The sender asked for more than a notification should carry.
		fmt.Fprintf(&b, "The message is larger than %d bytes: only its headers are attached.\n\n", limit)
	}

	fmt.Fprintf(&b, "--%s\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n", boundary)
	// RFC 3464 §2.2: Original-Envelope-Id comes first.
	if r.EnvID != "" {
		fmt.Fprintf(&b, "Original-Envelope-Id: %s\n", oneLine(r.EnvID))
	}
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
		if f.Action == ActionDelivered {
			b.WriteString("Action: delivered\n")
			dsn := f.DSN
			if dsn == "" || dsn[0] != '2' {
				dsn = "2.0.0"
			}
			fmt.Fprintf(&b, "Status: %s\n", dsn)
		} else if f.Action == ActionDelayed {
			b.WriteString("Action: delayed\n")
			dsn := f.DSN
			if dsn == "" || dsn[0] != '4' {
				dsn = "4.0.0"
			}
			fmt.Fprintf(&b, "Status: %s\n", dsn)
		} else {
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
		}
		if f.Reason != "" {
			fmt.Fprintf(&b, "Diagnostic-Code: X-Posthorn; %s\n", oneLine(f.Reason))
		}
	}
	b.WriteString("\n")

	what := "Undelivered"
	if success {
		what = "Delivered"
	} else if delayed {
		what = "Delayed"
	}
	if fits {
		fmt.Fprintf(&b, "--%s\nContent-Description: %s Message\nContent-Type: message/rfc822\n\n", boundary, what)
		b.Write(head)
		if len(head) > 0 && head[len(head)-1] != '\n' {
			b.WriteString("\n")
		}
	} else {
		fmt.Fprintf(&b, "--%s\nContent-Description: %s Message Headers\nContent-Type: text/rfc822-headers\n\n", boundary, what)
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
