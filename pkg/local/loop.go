package local

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
)

// maxDeliveredTo bounds the Delivered-To values remembered from one
// message. A loop shows up within a few hops; a message with more such
// headers than this is a loop whatever they say (Postfix bounces mail with
// more than hopcount_limit, 50, Received: headers).
const maxDeliveredTo = 1000

// errTooManyDeliveredTo is returned when a message holds more than
// maxDeliveredTo Delivered-To headers.
var errTooManyDeliveredTo = errors.New("too many Delivered-To headers")

// headerReaders keep deliveredTo's buffers between deliveries: it runs for
// every one, and a fresh 16 KB each time was most of what a delivery
// allocated.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// deliveredTo reads the header of a message and returns the addresses of
// its Delivered-To lines, lower-cased, as local(8) does to stop
// forwarding loops: "If mail arrives for a recipient that is already
// listed in a Delivered-To: header, the message is bounced."
func deliveredTo(r io.Reader) (map[string]bool, error) {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		headerReaders.Put(br)
	}()
	seen := map[string]bool{}
	var cur []byte // value of the Delivered-To being read, unfolded
	var l []byte   // the line being looked at
	inDT, n := false, 0
	finish := func() error {
		if inDT {
			v := strings.ToLower(strings.TrimSpace(string(cur)))
			v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			if n++; n > maxDeliveredTo {
				return errTooManyDeliveredTo
			}
			seen[v] = true
		}
		inDT, cur = false, cur[:0]
		return nil
	}
	const maxValue = 1024 // longer than any address; the rest is ignored
	for {
		line, err := br.ReadSlice('\n')
		l = append(l[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			// A huge header line: only its start matters.
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		l = bytes.TrimRight(l, "\r\n")
		if len(l) == 0 {
			// The end of the header (or of a message without a body).
			return seen, finish()
		}
		if l[0] == ' ' || l[0] == '\t' {
			if inDT && len(cur) < maxValue {
				cur = append(cur, l...)
			}
		} else {
			if err := finish(); err != nil {
				return nil, err
			}
			name, value, ok := bytes.Cut(l, []byte(":"))
			if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Delivered-To") {
				inDT = true
				cur = append(cur, value[:min(len(value), maxValue)]...)
			}
		}
		if errors.Is(err, io.EOF) {
			return seen, finish()
		}
	}
}
