// Package pickup takes mail from local users into the queue: sendmail hands
// a message over the public/pickup socket, or, while the daemons are down,
// leaves it in maildrop/ (DESIGN §1, §2).
//
// The submitter's identity is never taken from what they send: on the
// socket it is the peer's uid from SO_PEERCRED, in maildrop/ the owner of
// the file. The message itself travels as an open descriptor (a memfd),
// so pickup never opens a path a user chose.
//
// # maildrop/ and why it is safe without a set-gid helper
//
// maildrop/ is mode 1733: anyone may create a file, nobody but its owner
// may remove it (sticky), and no user may list the folder. sendmail writes
// its file under a random 128-bit name with mode 0604, so pickup (running
// as the mail owner) can read it while other users, unable to list the
// folder, cannot find it to read it. pickup opens each file with
// O_NOFOLLOW, requires a regular file with exactly one link (a user cannot
// link someone else's file in: the link count would be two), and takes the
// file's owner as the submitter. Postfix reaches the same ends with a
// set-gid postdrop program; this needs no privileged binary at all.
package pickup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/posthorn/posthorn/pkg/spool"
)

// Request is what sendmail sends over the socket, with the content attached.
type Request struct {
	Sender     string   `json:"sender"`
	Recipients []string `json:"rcpts"`
	Notify     string   `json:"notify,omitempty"`
	Ret        string   `json:"ret,omitempty"`
	EnvID      string   `json:"envid,omitempty"`
}

// Reply is pickup's answer.
type Reply struct {
	QueueID string `json:"id,omitempty"`
	Error   string `json:"error,omitempty"`
	// Temp tells sendmail the failure is temporary (exit EX_TEMPFAIL).
	Temp bool `json:"temp,omitempty"`
}

// maildrop file format, version 1: a few records, a blank line, the
// message (LF line endings).
//
//	posthorn-maildrop 1
//	sender <escaped>
//	rcpt <escaped>
//	notify|ret|envid <escaped>
//	<blank line>
//	<message>
const dropMagic = "posthorn-maildrop 1"

// Limits for maildrop files, which any local user can write.
const (
	maxDropRecord = 4096
	maxDropRcpts  = 10000
)

// EncodeDrop writes a maildrop file's records.
func EncodeDrop(w io.Writer, r *Request) error {
	var b strings.Builder
	b.WriteString(dropMagic + "\n")
	fmt.Fprintf(&b, "sender %s\n", spool.Escape(r.Sender))
	for _, rc := range r.Recipients {
		fmt.Fprintf(&b, "rcpt %s\n", spool.Escape(rc))
	}
	for k, v := range map[string]string{"notify": r.Notify, "ret": r.Ret, "envid": r.EnvID} {
		if v != "" {
			fmt.Fprintf(&b, "%s %s\n", k, spool.Escape(v))
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// ErrBadDrop marks a maildrop file that cannot be parsed.
var ErrBadDrop = errors.New("malformed maildrop file")

// DecodeDrop reads a maildrop file's records and leaves br at the message.
func DecodeDrop(br *bufio.Reader) (*Request, error) {
	line := func() (string, error) {
		s, err := br.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("%w: truncated or overlong record", ErrBadDrop)
		}
		if len(s) > maxDropRecord {
			return "", fmt.Errorf("%w: overlong record", ErrBadDrop)
		}
		return string(bytes.TrimSuffix(s, []byte("\n"))), nil
	}
	first, err := line()
	if err != nil || first != dropMagic {
		return nil, fmt.Errorf("%w: not a maildrop file", ErrBadDrop)
	}
	r := &Request{}
	seenSender := false
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			return nil, fmt.Errorf("%w: record %q", ErrBadDrop, k)
		}
		v, err = spool.Unescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: bad escape", ErrBadDrop)
		}
		switch k {
		case "sender":
			r.Sender, seenSender = v, true
		case "rcpt":
			if len(r.Recipients) >= maxDropRcpts {
				return nil, fmt.Errorf("%w: more than %d recipients", ErrBadDrop, maxDropRcpts)
			}
			r.Recipients = append(r.Recipients, v)
		case "notify":
			r.Notify = v
		case "ret":
			r.Ret = v
		case "envid":
			r.EnvID = v
		default:
			return nil, fmt.Errorf("%w: unknown record %q", ErrBadDrop, k)
		}
	}
	if !seenSender || len(r.Recipients) == 0 {
		return nil, fmt.Errorf("%w: no sender or no recipients", ErrBadDrop)
	}
	return r, nil
}
