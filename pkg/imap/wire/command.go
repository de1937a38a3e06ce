package wire

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
)

// Command is one parsed client command. Only the fields of its Name are set.
type Command struct {
	Tag  string
	Name string // upper case, without "UID "
	UID  bool   // the UID form (RFC 3501 §6.4.8)

	Mailbox string // raw mailbox argument (still modified UTF-7 for IMAP4rev1), or GETQUOTA root
	NewName string // RENAME's second argument; COPY and MOVE destination

	User, Password  string  // LOGIN
	Mechanism       string  // AUTHENTICATE, upper case
	InitialResponse *string // SASL-IR (RFC 4959), nil when absent

	Caps  []string    // ENABLE, upper case
	ID    [][2]string // ID pairs; nil for "ID NIL"
	IDNil bool

	Seq    imap.SeqSet
	Fetch  *FetchArgs
	Store  *StoreArgs
	Search *SearchArgs
	List   *ListArgs
	Status []string // STATUS items, upper case
	Select *SelectArgs
	Append *AppendArgs
	Use    []string // CREATE (USE (...)) (RFC 6154 §3)
}

// StoreArgs are STORE's arguments (RFC 3501 §6.4.6, RFC 7162 §3.1.3).
type StoreArgs struct {
	Op             imap.StoreOp
	Silent         bool
	Flags          []string
	UnchangedSince uint64
	HasUnchanged   bool
}

// SearchArgs are SEARCH's arguments (RFC 3501 §6.4.4, RFC 4731, RFC 5182).
type SearchArgs struct {
	Charset   string   // upper case, "" when absent
	Return    []string // RETURN options, upper case; nil without RETURN
	HasReturn bool
	Key       *imap.SearchKey
}

// ListArgs are LIST's and LSUB's arguments (RFC 3501 §6.3.8, RFC 5258).
type ListArgs struct {
	Reference    string
	Patterns     []string
	Select       []string // selection options, upper case
	Return       []string // return options other than STATUS, upper case
	ReturnStatus []string // RFC 5819 STATUS items, upper case
	HasStatus    bool
	Extended     bool // the RFC 5258 syntax was used
}

// SelectArgs are SELECT's and EXAMINE's parameters (RFC 7162 §3.1.8, §3.2.5).
type SelectArgs struct {
	CondStore bool
	QResync   *QResyncArgs
}

// QResyncArgs is the QRESYNC select parameter.
type QResyncArgs struct {
	UIDValidity uint32
	ModSeq      uint64
	KnownUIDs   *imap.SeqSet
	SeqMatch    *[2]imap.SeqSet // known sequence numbers, their UIDs
}

// AppendArgs are APPEND's arguments before the message literal. The
// literal is read with Decoder.AppendLiteral or refused with
// Decoder.RejectLiteral.
type AppendArgs struct {
	Flags   []string
	Date    time.Time // zero when absent
	Size    int64
	NonSync bool
	Binary  bool // literal8 (RFC 3516) or UTF8 (RFC 6855)
}

// ReadCommand reads and parses the next command. On a *Error that is not
// Fatal the command has been skipped and the session goes on; on any
// other error the connection must be closed.
func (d *Decoder) ReadCommand() (*Command, error) {
	d.tag, d.cmdBytes, d.literals, d.discard, d.pending = "*", 0, 0, 0, nil
	if err := d.readLine(); err != nil {
		return nil, d.fatal(err)
	}
	if d.eol() {
		return nil, &Error{Tag: "*", Text: "Empty command."}
	}
	tag, err := d.word(func(c byte) bool { return isAStringChar(c) && c != '+' }, "a tag")
	if err != nil {
		return nil, err
	}
	d.tag = tag
	c := &Command{Tag: tag}
	if err := d.sp(); err != nil {
		return nil, err
	}
	name, err := d.keyword()
	if err != nil {
		return nil, err
	}
	if name == "UID" {
		if err := d.sp(); err != nil {
			return nil, err
		}
		if name, err = d.keyword(); err != nil {
			return nil, err
		}
		switch name {
		case "FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE":
		default:
			return nil, d.fail("Unknown UID command.")
		}
		c.UID = true
	}
	c.Name = name
	if err := d.args(c); err != nil {
		return nil, err
	}
	return c, nil
}

// args parses the arguments of c.Name.
func (d *Decoder) args(c *Command) error {
	var err error
	switch c.Name {
	case "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT",
		"IDLE", "NAMESPACE":
		return d.end()
	case "EXPUNGE":
		if c.UID {
			if err = d.sp(); err != nil {
				return err
			}
			if c.Seq, err = d.parseSet(); err != nil {
				return err
			}
		}
		return d.end()
	case "LOGIN":
		if err = d.sp(); err != nil {
			return err
		}
		if c.User, err = d.astring(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.Password, err = d.astring(); err != nil {
			return err
		}
		return d.end()
	case "AUTHENTICATE":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mechanism, err = d.keyword(); err != nil {
			return err
		}
		if d.peek() == ' ' {
			d.pos++
			// SASL-IR: base64 or "=" (RFC 4959 §3).
			ir, err := d.word(func(c byte) bool {
				return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
			}, "an initial response")
			if err != nil {
				return err
			}
			c.InitialResponse = &ir
		}
		return d.end()
	case "ENABLE":
		for d.peek() == ' ' {
			d.pos++
			cap, err := d.keyword()
			if err != nil {
				return err
			}
			c.Caps = append(c.Caps, cap)
		}
		if len(c.Caps) == 0 {
			return d.fail("ENABLE needs capabilities.")
		}
		return d.end()
	case "ID":
		if err = d.sp(); err != nil {
			return err
		}
		return d.idArgs(c)
	case "SELECT", "EXAMINE":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if d.peek() == ' ' {
			d.pos++
			if c.Select, err = d.selectParams(); err != nil {
				return err
			}
		}
		return d.end()
	case "CREATE":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if d.peek() == ' ' {
			d.pos++
			if c.Use, err = d.createParams(); err != nil {
				return err
			}
		}
		return d.end()
	case "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT", "GETQUOTA":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		return d.end()
	case "SETQUOTA":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		err = d.list(true, func() error {
			if _, err := d.atom(); err != nil {
				return err
			}
			if err := d.sp(); err != nil {
				return err
			}
			_, err := d.number(1<<63 - 1)
			return err
		})
		if err != nil {
			return err
		}
		return d.end()
	case "RENAME":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.NewName, err = d.astring(); err != nil {
			return err
		}
		return d.end()
	case "LIST", "LSUB":
		if err = d.sp(); err != nil {
			return err
		}
		if c.List, err = d.listArgs(c.Name == "LSUB"); err != nil {
			return err
		}
		return d.end()
	case "STATUS":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.Status, err = d.statusItems(); err != nil {
			return err
		}
		return d.end()
	case "APPEND":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Mailbox, err = d.astring(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		c.Append, err = d.appendArgs()
		return err
	case "FETCH":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Seq, err = d.parseSet(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.Fetch, err = d.fetchArgs(); err != nil {
			return err
		}
		return d.end()
	case "STORE":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Seq, err = d.parseSet(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.Store, err = d.storeArgs(); err != nil {
			return err
		}
		return d.end()
	case "COPY", "MOVE":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Seq, err = d.parseSet(); err != nil {
			return err
		}
		if err = d.sp(); err != nil {
			return err
		}
		if c.NewName, err = d.astring(); err != nil {
			return err
		}
		return d.end()
	case "SEARCH":
		if err = d.sp(); err != nil {
			return err
		}
		if c.Search, err = d.searchArgs(); err != nil {
			return err
		}
		return d.end()
	}
	return d.fail("Unknown command.")
}

// parseSet reads and validates a sequence set.
func (d *Decoder) parseSet() (imap.SeqSet, error) {
	s, err := d.seqSet()
	if err != nil {
		return imap.SeqSet{}, err
	}
	set, perr := imap.ParseSeqSet(s)
	if perr != nil {
		return imap.SeqSet{}, d.fail("Invalid messageset.")
	}
	return set, nil
}

// idArgs parses ID's argument: NIL or up to 30 field/value pairs
// (RFC 2971 §3.3: fields at most 30 octets, values at most 1024).
func (d *Decoder) idArgs(c *Command) error {
	if d.peek() != '(' {
		a, err := d.atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(a, "NIL") {
			return d.fail("Expected NIL or a list.")
		}
		c.IDNil = true
		return d.end()
	}
	var key string
	n := 0
	err := d.list(true, func() error {
		s, ok, err := d.nstring()
		if err != nil {
			return err
		}
		if n%2 == 0 {
			if !ok || len(s) > 30 {
				return d.fail("Invalid ID field name.")
			}
			key = s
		} else {
			if len(s) > 1024 {
				return d.fail("ID value too long.")
			}
			if len(c.ID) >= 30 {
				return d.fail("Too many ID fields.")
			}
			c.ID = append(c.ID, [2]string{key, s})
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n%2 != 0 {
		return d.fail("ID field without value.")
	}
	return d.end()
}

// selectParams parses "(CONDSTORE)" or "(QRESYNC (...))".
func (d *Decoder) selectParams() (*SelectArgs, error) {
	a := &SelectArgs{}
	err := d.list(false, func() error {
		name, err := d.keyword()
		if err != nil {
			return err
		}
		switch name {
		case "CONDSTORE":
			a.CondStore = true
			return nil
		case "QRESYNC":
			if err := d.sp(); err != nil {
				return err
			}
			q, err := d.qresync()
			a.QResync = q
			return err
		}
		return d.fail("Unknown select parameter.")
	})
	return a, err
}

// qresync parses "(uidvalidity modseq [known-uids [(seqs uids)]])".
func (d *Decoder) qresync() (*QResyncArgs, error) {
	q := &QResyncArgs{}
	if err := d.open(); err != nil {
		return nil, err
	}
	v, err := d.nzNumber()
	if err != nil {
		return nil, err
	}
	q.UIDValidity = v
	if err := d.sp(); err != nil {
		return nil, err
	}
	if q.ModSeq, err = d.modSeq(false); err != nil {
		return nil, err
	}
	if d.peek() == ' ' {
		d.pos++
		if d.peek() != '(' {
			set, err := d.parseSet()
			if err != nil {
				return nil, err
			}
			if set.Saved {
				return nil, d.fail("$ is not allowed in QRESYNC.")
			}
			q.KnownUIDs = &set
			if d.peek() == ' ' {
				d.pos++
			}
		}
		if d.peek() == '(' {
			d.pos++
			seqs, err := d.parseSet()
			if err != nil {
				return nil, err
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
			uids, err := d.parseSet()
			if err != nil {
				return nil, err
			}
			if seqs.Saved || uids.Saved || seqs.HasStar() || uids.HasStar() {
				return nil, d.fail("Invalid sequence match data.")
			}
			if err := d.close(); err != nil {
				return nil, err
			}
			q.SeqMatch = &[2]imap.SeqSet{seqs, uids}
		}
	}
	if err := d.close(); err != nil {
		return nil, err
	}
	return q, nil
}

// createParams parses "(USE (\Sent ...))" (RFC 6154 §3).
func (d *Decoder) createParams() ([]string, error) {
	var use []string
	err := d.list(false, func() error {
		name, err := d.keyword()
		if err != nil {
			return err
		}
		if name != "USE" {
			return d.fail("Unknown CREATE parameter.")
		}
		if err := d.sp(); err != nil {
			return err
		}
		return d.list(true, func() error {
			f, err := d.flag()
			use = append(use, f)
			return err
		})
	})
	return use, err
}

// flag reads "\Name" or a keyword atom.
func (d *Decoder) flag() (string, error) {
	if d.peek() == '\\' {
		d.pos++
		if d.peek() == '*' {
			d.pos++
			return `\*`, nil
		}
		a, err := d.atom()
		return `\` + a, err
	}
	return d.atom()
}

// flagList reads "(" [flag *(SP flag)] ")".
func (d *Decoder) flagList() ([]string, error) {
	flags := []string{}
	err := d.list(true, func() error {
		f, err := d.flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

// listArgs parses LIST's arguments, basic or extended (RFC 5258 §6).
func (d *Decoder) listArgs(lsub bool) (*ListArgs, error) {
	a := &ListArgs{}
	var err error
	if d.peek() == '(' && !lsub {
		a.Extended = true
		err = d.list(true, func() error {
			o, err := d.keyword()
			a.Select = append(a.Select, o)
			return err
		})
		if err != nil {
			return nil, err
		}
		if err = d.sp(); err != nil {
			return nil, err
		}
	}
	if a.Reference, err = d.listMailbox(false); err != nil {
		return nil, err
	}
	if err = d.sp(); err != nil {
		return nil, err
	}
	if d.peek() == '(' && !lsub {
		a.Extended = true
		err = d.list(false, func() error {
			p, err := d.listMailbox(true)
			a.Patterns = append(a.Patterns, p)
			return err
		})
	} else {
		var p string
		p, err = d.listMailbox(true)
		a.Patterns = []string{p}
	}
	if err != nil {
		return nil, err
	}
	if d.peek() == ' ' && !lsub {
		d.pos++
		kw, err := d.keyword()
		if err != nil {
			return nil, err
		}
		if kw != "RETURN" {
			return nil, d.fail("Expected RETURN.")
		}
		a.Extended = true
		if err := d.sp(); err != nil {
			return nil, err
		}
		err = d.list(true, func() error {
			o, err := d.keyword()
			if err != nil {
				return err
			}
			if o == "STATUS" {
				if err := d.sp(); err != nil {
					return err
				}
				a.HasStatus = true
				a.ReturnStatus, err = d.statusItems()
				return err
			}
			a.Return = append(a.Return, o)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// listMailbox reads a list-mailbox (wildcards allowed) or, for the
// reference, an astring-like token that may be empty when quoted.
func (d *Decoder) listMailbox(wild bool) (string, error) {
	switch d.peek() {
	case '"', '{':
		return d.str()
	}
	if wild {
		return d.word(isListChar, "a mailbox pattern")
	}
	return d.word(isListChar, "a mailbox name")
}

// statusItems reads "(" item *(SP item) ")".
func (d *Decoder) statusItems() ([]string, error) {
	var items []string
	err := d.list(false, func() error {
		s, err := d.keyword()
		items = append(items, s)
		return err
	})
	return items, err
}

// appendArgs parses APPEND's flags, date and literal specification.
func (d *Decoder) appendArgs() (*AppendArgs, error) {
	a := &AppendArgs{}
	var err error
	if d.peek() == '(' {
		if a.Flags, err = d.flagList(); err != nil {
			return nil, err
		}
		if err = d.sp(); err != nil {
			return nil, err
		}
	}
	if d.peek() == '"' {
		s, err := d.quoted()
		if err != nil {
			return nil, err
		}
		t, perr := ParseDateTime(s)
		if perr != nil {
			return nil, d.fail("Invalid date-time.")
		}
		a.Date = t
		if err = d.sp(); err != nil {
			return nil, err
		}
	}
	wrapped := false
	if c := d.peek(); c == 'U' || c == 'u' {
		kw, err := d.keyword()
		if err != nil {
			return nil, err
		}
		if kw != "UTF8" {
			return nil, d.fail("Expected a literal.")
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		if err := d.open(); err != nil {
			return nil, err
		}
		if d.peek() != '~' {
			return nil, d.fail("UTF8 needs a literal8.")
		}
		wrapped = true
	}
	n, nonSync, binary, err := d.literalSpec(true)
	if err != nil {
		return nil, err
	}
	a.Size, a.NonSync, a.Binary = n, nonSync, binary || wrapped
	d.pending = &pendingLiteral{size: n, nonSync: nonSync, wrapped: wrapped, left: n}
	if nonSync && d.limits.NonSyncMax > 0 && (n < 0 || n > d.limits.NonSyncMax) {
		return nil, d.tooBig("Non-synchronizing literal too large.")
	}
	return a, nil
}

// ErrNoLiteral is returned when no APPEND literal is pending.
var ErrNoLiteral = errors.New("wire: no literal pending")

// AppendLiteral accepts the pending APPEND message: it sends the
// continuation request for a synchronising literal and returns a reader of
// exactly Size octets. Call EndAppend after the message was read.
func (d *Decoder) AppendLiteral() (io.Reader, error) {
	p := d.pending
	if p == nil {
		return nil, ErrNoLiteral
	}
	if !p.nonSync && d.Continue != nil {
		if err := d.Continue(); err != nil {
			return nil, err
		}
	}
	return &literalReader{d: d, p: p}, nil
}

type literalReader struct {
	d *Decoder
	p *pendingLiteral
}

func (r *literalReader) Read(b []byte) (int, error) {
	if r.p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.p.left {
		b = b[:r.p.left]
	}
	n, err := r.d.in.Read(b)
	r.p.left -= int64(n)
	if err == io.EOF && r.p.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// EndAppend drains what the store did not read of the message and reads
// the end of the APPEND command.
func (d *Decoder) EndAppend() error {
	p := d.pending
	if p == nil {
		return ErrNoLiteral
	}
	d.pending = nil
	if err := d.in.Discard(p.left); err != nil {
		return err
	}
	p.left = 0
	if err := d.readLine(); err != nil {
		return d.fatal(err)
	}
	if p.wrapped {
		if err := d.close(); err != nil {
			return err
		}
	}
	if !d.eol() {
		// MULTIAPPEND (RFC 3502) is not offered.
		return d.fail("Unexpected text after the message.")
	}
	return nil
}

// RejectLiteral refuses the pending APPEND message without sending a
// continuation request. A non-synchronising literal is read and dropped,
// with the rest of the command; if it is too large for that, the error is
// Fatal and the connection must be closed (RFC 7888 §4, HOSTILE 39).
func (d *Decoder) RejectLiteral() error {
	if d.pending == nil {
		return ErrNoLiteral
	}
	if err := d.skipRest(); err != nil {
		return d.fatal(err)
	}
	return nil
}

// ParseDateTime parses an RFC 3501 date-time without its quotes:
// "dd-Mon-yyyy hh:mm:ss +zzzz" where the day may be space-padded.
func ParseDateTime(s string) (time.Time, error) {
	if len(s) == 26 && s[0] == ' ' {
		s = "0" + s[1:]
	}
	return time.Parse("02-Jan-2006 15:04:05 -0700", s)
}

// ParseDate parses an RFC 3501 date: "d-Mon-yyyy" or "dd-Mon-yyyy".
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// storeArgs parses [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags.
func (d *Decoder) storeArgs() (*StoreArgs, error) {
	a := &StoreArgs{}
	if d.peek() == '(' {
		err := d.list(false, func() error {
			kw, err := d.keyword()
			if err != nil {
				return err
			}
			if kw != "UNCHANGEDSINCE" {
				return d.fail("Unknown STORE modifier.")
			}
			if err := d.sp(); err != nil {
				return err
			}
			a.HasUnchanged = true
			a.UnchangedSince, err = d.modSeq(true)
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
	}
	switch d.peek() {
	case '+':
		a.Op = imap.StoreAdd
		d.pos++
	case '-':
		a.Op = imap.StoreRemove
		d.pos++
	default:
		a.Op = imap.StoreReplace
	}
	kw := d.fetchName()
	switch kw {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.Silent = true
	default:
		return nil, d.fail("Invalid STORE data item.")
	}
	if err := d.sp(); err != nil {
		return nil, err
	}
	var err error
	if d.peek() == '(' {
		a.Flags, err = d.flagList()
		return a, err
	}
	a.Flags = []string{}
	for {
		f, err := d.flag()
		if err != nil {
			return nil, err
		}
		a.Flags = append(a.Flags, f)
		if d.peek() != ' ' {
			return a, nil
		}
		d.pos++
	}
}
