package mailbox

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/pkg/maildir"
)

// msgRec is what the store knows about one message. Records are never
// modified once published: a change makes a new record, so a session's
// snapshot keeps the state it last reported.
type msgRec struct {
	uid     uint32
	name    string // file name in cur/ or new/
	inNew   bool
	size    int64 // physical size (S=)
	vsize   int64 // size with CRLF line ends (W=), RFC822.SIZE
	mtime   int64 // INTERNALDATE, ns since the epoch; mtimeUnknown until read (folder.mtimeOf)
	modseq  uint64
	extraKw []string // keywords without a dovecot-keywords letter
}

// mtimeUnknown marks a record whose file's mtime has not been read: the
// scan of a large folder leaves it to the first command that needs it.
const mtimeUnknown = math.MinInt64

func (m *msgRec) path() string {
	if m.inNew {
		return "new/" + m.name
	}
	return "cur/" + m.name
}

// parseFileName validates a name from cur/ or new/ (HOSTILE 54) and returns
// its uidlist key (the name up to ":") and the S= and W= sizes (-1 when
// absent).
func parseFileName(name string) (key string, size, vsize int64, flags string, ok bool) {
	_, size, vsize, flags, ok = maildir.ParseName(name)
	if !ok {
		return "", -1, -1, "", false
	}
	key, _, _ = strings.Cut(name, ":")
	return key, size, vsize, flags, true
}

// nameTime returns the delivery time encoded in a Dovecot-style name
// ("<secs>.M<usecs>P..."), for ordering new files as Dovecot does, or
// -1 when the name does not start with one.
func nameTime(name string) (int64, int64) {
	secs, rest, ok := strings.Cut(name, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if !ok || err != nil {
		return -1, -1
	}
	var us int64 = -1
	if i := strings.Index(rest, "M"); i >= 0 {
		j := i + 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if v, err := strconv.ParseInt(rest[i+1:j], 10, 64); err == nil {
			us = v
		}
	}
	return s, us
}

// countSizes returns the physical size and the size with every line ending
// as CRLF, reading r once.
func countSizes(r io.Reader) (size, vsize int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	buf := make([]byte, 64<<10)
	var prevCR bool
	for {
		n, rerr := br.Read(buf)
		chunk := buf[:n]
		size += int64(n)
		vsize += int64(n)
		for {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				break
			}
			if !(i > 0 && chunk[i-1] == '\r' || i == 0 && prevCR) {
				vsize++
			}
			chunk = chunk[i+1:]
		}
		if n > 0 {
			prevCR = buf[n-1] == '\r'
		}
		if rerr == io.EOF {
			return size, vsize, nil
		}
		if rerr != nil {
			return size, vsize, rerr
		}
	}
}
