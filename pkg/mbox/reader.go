package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Message is one message read from an mbox.
type Message struct {
	// Sender is the first word after "From " on the separator line.
	Sender string
	// FromLine is the whole separator line, without its newline.
	FromLine string
	// Offset is where the separator line starts in the file.
	Offset int64
	// Content is the message as it was delivered: header lines and body,
	// with the mboxrd quoting undone and the blank line that ends it in the
	// mbox removed.
	Content []byte
}

// ErrNotMbox is returned when the data does not start with a From_ line.
var ErrNotMbox = errors.New("mbox: does not start with a From_ line")

// ErrTooLarge is returned for a message larger than Reader.MaxSize.
var ErrTooLarge = errors.New("mbox: message too large")

// Reader splits an mbox into messages. Every line that starts with
// "From " separates messages: writers quote such lines inside messages
// (mboxrd and the older mboxo alike), so an unquoted one is always a
// separator.
type Reader struct {
	r   *bufio.Reader
	off int64 // offset of the next unread byte
	// next is the separator line already read for the next message.
	next    []byte
	nextOff int64
	started bool
	err     error

	// MaxSize bounds the content of one message; 0 means no limit. A
	// larger message makes Next fail with ErrTooLarge.
	MaxSize int64
}

// NewReader returns a Reader for r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// readLine returns the next line with its newline (the last line of the
// file may have none), or io.EOF.
func (r *Reader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.r.ReadSlice('\n')
		if len(chunk) > 0 {
			line = append(line, chunk...)
		}
		switch {
		case err == nil:
			r.off += int64(len(line))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			r.off += int64(len(line))
			return line, nil
		default:
			return nil, err
		}
	}
}

// Next returns the next message, or io.EOF after the last one.
func (r *Reader) Next() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.started {
		r.started = true
		start := r.off
		line, err := r.readLine()
		if errors.Is(err, io.EOF) {
			r.err = io.EOF
			return nil, io.EOF
		}
		if err != nil {
			r.err = err
			return nil, err
		}
		if !bytes.HasPrefix(line, fromWord) {
			r.err = ErrNotMbox
			return nil, ErrNotMbox
		}
		r.next, r.nextOff = line, start
	}
	if r.next == nil {
		r.err = io.EOF
		return nil, io.EOF
	}
	from := strings.TrimRight(string(r.next), "\r\n")
	m := &Message{FromLine: from, Offset: r.nextOff}
	m.Sender, _, _ = strings.Cut(strings.TrimPrefix(from, "From "), " ")
	r.next = nil
	var content []byte
	for {
		start := r.off
		line, err := r.readLine()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.err = err
			return nil, err
		}
		if bytes.HasPrefix(line, fromWord) {
			r.next, r.nextOff = line, start
			break
		}
		if unquote(line) {
			line = line[1:]
		}
		if r.MaxSize > 0 && int64(len(content)+len(line)) > r.MaxSize+1 {
			// One byte of slack: the blank line that ends the message in
			// the file is not part of it.
			r.err = fmt.Errorf("%w: more than %d bytes at offset %d", ErrTooLarge, r.MaxSize, m.Offset)
			return nil, r.err
		}
		content = append(content, line...)
	}
	// The blank line before the next separator (or at the end of the file)
	// belongs to the mbox, not to the message.
	if bytes.HasSuffix(content, []byte("\n\n")) || bytes.Equal(content, []byte("\n")) {
		content = content[:len(content)-1]
	}
	if r.MaxSize > 0 && int64(len(content)) > r.MaxSize {
		r.err = fmt.Errorf("%w: more than %d bytes at offset %d", ErrTooLarge, r.MaxSize, m.Offset)
		return nil, r.err
	}
	if content == nil {
		content = []byte{}
	}
	m.Content = content
	return m, nil
}

// unquote reports whether line matches ^>+From : mboxrd quoted it with
// one ">" that the reader removes.
func unquote(line []byte) bool {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(line[i:], fromWord)
}

// ReadAll reads every message of an mbox.
func ReadAll(r io.Reader) ([]*Message, error) {
	mr := NewReader(r)
	var out []*Message
	for {
		m, err := mr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}
