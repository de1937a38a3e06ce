package wire

import (
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
)

// searchArgs parses SEARCH's RETURN options, CHARSET and program.
func (d *Decoder) searchArgs() (*SearchArgs, error) {
	a := &SearchArgs{}
	if c := d.peek(); c == 'R' || c == 'r' {
		save := d.pos
		kw, err := d.keyword()
		if err != nil {
			return nil, err
		}
		if kw == "RETURN" {
			a.HasReturn = true
			if err := d.sp(); err != nil {
				return nil, err
			}
			err := d.list(true, func() error {
				o, err := d.keyword()
				if err != nil {
					return err
				}
				switch o {
				case "MIN", "MAX", "ALL", "COUNT", "SAVE":
				default:
					return d.fail("Unknown RETURN option.")
				}
				a.Return = append(a.Return, o)
				return nil
			})
			if err != nil {
				return nil, err
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		} else {
			d.pos = save
		}
	}
	if c := d.peek(); c == 'C' || c == 'c' {
		save := d.pos
		kw, err := d.keyword()
		if err != nil {
			return nil, err
		}
		if kw == "CHARSET" {
			if err := d.sp(); err != nil {
				return nil, err
			}
			cs, err := d.astring()
			if err != nil {
				return nil, err
			}
			a.Charset = strings.ToUpper(cs)
			if err := d.sp(); err != nil {
				return nil, err
			}
		} else {
			d.pos = save
		}
	}
	s := searchState{d: d}
	key, err := s.program()
	if err != nil {
		return nil, err
	}
	a.Key = key
	return a, nil
}

type searchState struct {
	d     *Decoder
	depth int
	keys  int
}

// program reads search-key *(SP search-key) up to the end of the command.
func (s *searchState) program() (*imap.SearchKey, error) {
	and := &imap.SearchKey{Op: imap.SearchAnd}
	for {
		k, err := s.key()
		if err != nil {
			return nil, err
		}
		and.Children = append(and.Children, k)
		if s.d.peek() != ' ' {
			break
		}
		s.d.pos++
	}
	if len(and.Children) == 1 {
		return and.Children[0], nil
	}
	return and, nil
}

// nest enters one level of OR, NOT or parentheses (HOSTILE 40).
func (s *searchState) nest() error {
	s.depth++
	if s.depth > s.d.limits.MaxSearchDepth {
		return s.d.fail("Search program nested too deeply.")
	}
	return nil
}

func (s *searchState) key() (*imap.SearchKey, error) {
	d := s.d
	s.keys++
	if s.keys > d.limits.MaxSearchKeys {
		return nil, d.fail("Search program too long.")
	}
	c := d.peek()
	switch {
	case c == '(':
		if err := s.nest(); err != nil {
			return nil, err
		}
		d.pos++
		and := &imap.SearchKey{Op: imap.SearchAnd}
		for {
			k, err := s.key()
			if err != nil {
				return nil, err
			}
			and.Children = append(and.Children, k)
			if d.peek() == ')' {
				d.pos++
				break
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		s.depth--
		if len(and.Children) == 1 {
			return and.Children[0], nil
		}
		return and, nil
	case c >= '0' && c <= '9' || c == '*' || c == '$':
		set, err := d.parseSet()
		if err != nil {
			return nil, err
		}
		return &imap.SearchKey{Op: imap.SearchSeq, Set: set}, nil
	}
	kw, err := d.keyword()
	if err != nil {
		return nil, err
	}
	flag := func(f string) (*imap.SearchKey, error) {
		return &imap.SearchKey{Op: imap.SearchFlag, Flag: f}, nil
	}
	not := func(k *imap.SearchKey) *imap.SearchKey {
		return &imap.SearchKey{Op: imap.SearchNot, Children: []*imap.SearchKey{k}}
	}
	switch kw {
	case "ALL":
		return &imap.SearchKey{Op: imap.SearchAll}, nil
	case "ANSWERED":
		return flag(imap.FlagAnswered)
	case "DELETED":
		return flag(imap.FlagDeleted)
	case "DRAFT":
		return flag(imap.FlagDraft)
	case "FLAGGED":
		return flag(imap.FlagFlagged)
	case "RECENT":
		return flag(imap.FlagRecent)
	case "SEEN":
		return flag(imap.FlagSeen)
	case "UNANSWERED":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagAnswered}), nil
	case "UNDELETED":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagDeleted}), nil
	case "UNDRAFT":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagDraft}), nil
	case "UNFLAGGED":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagFlagged}), nil
	case "UNSEEN":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagSeen}), nil
	case "NEW":
		return &imap.SearchKey{Op: imap.SearchAnd, Children: []*imap.SearchKey{
			{Op: imap.SearchFlag, Flag: imap.FlagRecent},
			not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagSeen}),
		}}, nil
	case "OLD":
		return not(&imap.SearchKey{Op: imap.SearchFlag, Flag: imap.FlagRecent}), nil
	case "KEYWORD", "UNKEYWORD":
		if err := d.sp(); err != nil {
			return nil, err
		}
		k, err := d.atom()
		if err != nil {
			return nil, err
		}
		key := &imap.SearchKey{Op: imap.SearchFlag, Flag: k}
		if kw == "UNKEYWORD" {
			key = not(key)
		}
		return key, nil
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		if err := d.sp(); err != nil {
			return nil, err
		}
		v, err := d.astring()
		if err != nil {
			return nil, err
		}
		return &imap.SearchKey{Op: imap.SearchHeader, Field: kw, Value: v}, nil
	case "BODY", "TEXT":
		if err := d.sp(); err != nil {
			return nil, err
		}
		v, err := d.astring()
		if err != nil {
			return nil, err
		}
		op := imap.SearchBody
		if kw == "TEXT" {
			op = imap.SearchText
		}
		return &imap.SearchKey{Op: op, Value: v}, nil
	case "HEADER":
		if err := d.sp(); err != nil {
			return nil, err
		}
		f, err := d.astring()
		if err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		v, err := d.astring()
		if err != nil {
			return nil, err
		}
		return &imap.SearchKey{Op: imap.SearchHeader, Field: f, Value: v}, nil
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := d.sp(); err != nil {
			return nil, err
		}
		var ds string
		if d.peek() == '"' {
			ds, err = d.quoted()
		} else {
			ds, err = d.word(func(c byte) bool { return isAtomChar(c) }, "a date")
		}
		if err != nil {
			return nil, err
		}
		t, perr := ParseDate(ds)
		if perr != nil {
			return nil, d.fail("Invalid date.")
		}
		op := map[string]imap.SearchOp{
			"BEFORE": imap.SearchBefore, "ON": imap.SearchOn, "SINCE": imap.SearchSince,
			"SENTBEFORE": imap.SearchSentBefore, "SENTON": imap.SearchSentOn, "SENTSINCE": imap.SearchSentSince,
		}[kw]
		return &imap.SearchKey{Op: op, Date: t}, nil
	case "LARGER", "SMALLER":
		if err := d.sp(); err != nil {
			return nil, err
		}
		n, err := d.number(1<<63 - 1)
		if err != nil {
			return nil, err
		}
		op := imap.SearchLarger
		if kw == "SMALLER" {
			op = imap.SearchSmaller
		}
		return &imap.SearchKey{Op: op, N: n}, nil
	case "UID":
		if err := d.sp(); err != nil {
			return nil, err
		}
		set, err := d.parseSet()
		if err != nil {
			return nil, err
		}
		return &imap.SearchKey{Op: imap.SearchUID, Set: set}, nil
	case "NOT":
		if err := d.sp(); err != nil {
			return nil, err
		}
		if err := s.nest(); err != nil {
			return nil, err
		}
		k, err := s.key()
		if err != nil {
			return nil, err
		}
		s.depth--
		return not(k), nil
	case "OR":
		if err := d.sp(); err != nil {
			return nil, err
		}
		if err := s.nest(); err != nil {
			return nil, err
		}
		a, err := s.key()
		if err != nil {
			return nil, err
		}
		if err := d.sp(); err != nil {
			return nil, err
		}
		b, err := s.key()
		if err != nil {
			return nil, err
		}
		s.depth--
		return &imap.SearchKey{Op: imap.SearchOr, Children: []*imap.SearchKey{a, b}}, nil
	case "MODSEQ":
		// MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
		// (RFC 7162 §3.1.5); the entry names only matter for servers
		// with per-flag mod-sequences, which this is not.
		if err := d.sp(); err != nil {
			return nil, err
		}
		if d.peek() == '"' {
			name, err := d.quoted()
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(name, "/flags/") {
				return nil, d.fail("Invalid MODSEQ entry name.")
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
			t, err := d.keyword()
			if err != nil {
				return nil, err
			}
			if t != "PRIV" && t != "SHARED" && t != "ALL" {
				return nil, d.fail("Invalid MODSEQ entry type.")
			}
			if err := d.sp(); err != nil {
				return nil, err
			}
		}
		n, err := d.modSeq(true)
		if err != nil {
			return nil, err
		}
		return &imap.SearchKey{Op: imap.SearchModSeq, N: n}, nil
	}
	return nil, d.fail("Unknown search key.")
}
