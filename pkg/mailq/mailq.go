// Package mailq lists the queue in the format of Postfix's mailq
// (postqueue -p), so scripts that parse it keep working. posthorn's queue
// IDs are 13 characters, so the listing uses Postfix's long-ID layout.
package mailq

import (
	"fmt"
	"io"
	"time"

	"github.com/posthorn/posthorn/pkg/spool"
)

const (
	stringFormat = "%-17s %8s %-19s %s\n"
	senderFormat = "%-17s %8d %19.19s %s\n"
)

// Message is one queued message as listed.
type Message struct {
	Queue  string
	Env    *spool.Envelope
	Size   int64
	Reason map[int]string // deferral reasons by recipient index
}

// Scan reads every message in the queues a listing shows (incoming,
// active, deferred, hold), in queue ID order within each queue. Files that
// cannot be read are skipped: a listing never stops at one bad file.
func Scan(s *spool.Spool) ([]Message, error) {
	var out []Message
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold} {
		entries, err := s.List(q)
		if err != nil {
			return nil, fmt.Errorf("mailq: %w", err)
		}
		for _, e := range entries {
			if !e.Complete {
				continue
			}
			env, size, err := spool.ReadEnvelope(s.Path(q, e.ID))
			if err != nil {
				continue
			}
			env.ID = e.ID
			out = append(out, Message{Queue: q, Env: env, Size: size})
		}
	}
	return out, nil
}

// Write prints msgs as mailq does.
func Write(w io.Writer, msgs []Message) {
	if len(msgs) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	var total int64
	for i, m := range msgs {
		if i == 0 {
			fmt.Fprintf(w, stringFormat, "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
		} else {
			fmt.Fprintln(w)
		}
		id := m.Env.ID
		switch m.Queue {
		case spool.Active:
			id += "*"
		case spool.Hold:
			id += "!"
		}
		sender := m.Env.Sender
		if sender == "" {
			sender = "MAILER-DAEMON"
		}
		fmt.Fprintf(w, senderFormat, id, m.Size, asctime(m.Env.Arrival), sender)
		last := ""
		for _, rc := range m.Env.Rcpts {
			if rc.Status.Final() {
				continue
			}
			// A reason line only when it changes, right-aligned to 76 columns.
			if rc.Reason != last {
				last = rc.Reason
				show := rc.Reason
				if show == "" {
					show = "reason unavailable"
				}
				pad := 76 - len(show)
				if pad < 0 {
					pad = 0
				}
				fmt.Fprintf(w, "%*s(%s)\n", pad, "", show)
			}
			fmt.Fprintf(w, stringFormat, "", "", "", rc.Addr)
		}
		total += m.Size
	}
	s := "s"
	if len(msgs) == 1 {
		s = ""
	}
	fmt.Fprintf(w, "\n-- %d Kbytes in %d Request%s.\n", total/1024, len(msgs), s)
}

// asctime renders t in local time as C's asctime does ("Thu Nov 26 15:07:56 2026").
func asctime(t time.Time) string {
	return t.Local().Format("Mon Jan _2 15:04:05 2006")
}
