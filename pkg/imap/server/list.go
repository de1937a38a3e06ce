package server

import (
	"sort"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

const maxPatternLen = 1024

// listEntry is one name LIST may return.
type listEntry struct {
	name          string
	exists        bool // a mailbox (possibly \Noselect), not just a parent of one
	attrs         []string
	use           []string
	subscribed    bool
	hasChildren   bool
	childSubMatch bool // RECURSIVEMATCH: a subscribed descendant matched
}

// cmdList is LIST (RFC 3501 §6.3.8 with RFC 5258, RFC 5819, RFC 6154,
// RFC 3348) and LSUB (RFC 3501 §6.3.9).
func (s *session) cmdList(c *wire.Command) error {
	a := c.List
	lsub := c.Name == "LSUB"
	var selSubscribed, selSpecial, recursive bool
	for _, o := range a.Select {
		switch o {
		case "SUBSCRIBED":
			selSubscribed = true
		case "SPECIAL-USE":
			selSpecial = true
		case "RECURSIVEMATCH":
			recursive = true
		case "REMOTE":
		default:
			return s.badReply(c.Tag, "Error in IMAP command LIST: Unknown selection option "+o+".")
		}
	}
	if recursive && !selSubscribed && !selSpecial {
		return s.badReply(c.Tag, "Error in IMAP command LIST: RECURSIVEMATCH needs another selection option.")
	}
	var retSubscribed bool
	for _, o := range a.Return {
		switch o {
		case "SUBSCRIBED":
			retSubscribed = true
		case "CHILDREN", "SPECIAL-USE":
			// Always returned, as Dovecot does (RFC 5258 §4 allows it).
		default:
			return s.badReply(c.Tag, "Error in IMAP command LIST: Unknown return option "+o+".")
		}
	}
	var statusItems imap.StatusItems
	if a.HasStatus {
		var ok bool
		if statusItems, ok = s.parseStatusItems(c.Tag, a.ReturnStatus); !ok {
			return s.out.Err()
		}
	}
	delim := string(s.user.Delimiter())

	// LIST "" "" asks for the delimiter (RFC 3501 §6.3.8).
	if len(a.Patterns) == 1 && a.Patterns[0] == "" && !lsub {
		s.out.Raw(`* LIST (\Noselect) `)
		s.out.String(delim)
		s.out.Raw(" \"\"\r\n")
		s.done(c, "OK", "List completed.")
		return nil
	}
	ref, err := s.decodeName(a.Reference)
	if err != nil {
		ref = a.Reference
	}
	var patterns []string
	for _, p := range a.Patterns {
		if p == "" {
			continue
		}
		dp, err := s.decodeName(p)
		if err != nil {
			s.reply(c.Tag, "NO", "[CANNOT] Invalid mailbox pattern: "+err.Error())
			return nil
		}
		full := s.canonInbox(ref + dp)
		if len(full) > maxPatternLen {
			return s.badReply(c.Tag, "Error in IMAP command LIST: Pattern too long.")
		}
		patterns = append(patterns, full)
	}

	entries, err := s.listEntries(lsub || selSubscribed || retSubscribed || recursive)
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	match := func(name string) bool {
		for _, p := range patterns {
			if matchPattern(p, name, s.user.Delimiter()) {
				return true
			}
		}
		return false
	}
	extended := a.Extended || s.rev2()
	for _, e := range entries {
		if !match(e.name) {
			// LSUB and LIST with "%": a level whose children match is
			// returned \Noselect (RFC 3501 §6.3.8-9).
			if lsub && e.childSubMatch {
				if !e.subscribed && hasPercentParentMatch(patterns, e.name, s.user.Delimiter()) {
					s.writeList("LSUB", []string{imap.AttrNoselect}, e.name, "")
				}
			}
			continue
		}
		if lsub {
			if !e.subscribed {
				if e.childSubMatch && hasPercentParentMatch(patterns, e.name, s.user.Delimiter()) {
					s.writeList("LSUB", []string{imap.AttrNoselect}, e.name, "")
				}
				continue
			}
			var attrs []string
			if !e.exists || imap.HasFlag(e.attrs, imap.AttrNoselect) {
				attrs = []string{imap.AttrNoselect}
			}
			s.writeList("LSUB", attrs, e.name, "")
			continue
		}
		childInfo := ""
		switch {
		case selSubscribed && !e.subscribed:
			if !(recursive && e.childSubMatch) {
				continue
			}
			childInfo = ` ("CHILDINFO" ("SUBSCRIBED"))`
		case selSubscribed && recursive && e.childSubMatch:
			childInfo = ` ("CHILDINFO" ("SUBSCRIBED"))`
		case !selSubscribed && !e.exists && !e.hasChildren:
			continue // a subscription to nothing: only SUBSCRIBED lists it
		}
		if selSpecial && len(e.use) == 0 {
			continue
		}
		var attrs []string
		if !e.exists {
			if extended {
				attrs = append(attrs, imap.AttrNonExistent)
			} else {
				attrs = append(attrs, imap.AttrNoselect)
			}
		} else {
			attrs = append(attrs, e.attrs...)
		}
		if !imap.HasFlag(attrs, imap.AttrNoinferiors) {
			if e.hasChildren {
				attrs = append(attrs, imap.AttrHasChildren)
			} else {
				attrs = append(attrs, imap.AttrHasNoChildren)
			}
		}
		if e.subscribed && (selSubscribed || retSubscribed) {
			attrs = append(attrs, imap.AttrSubscribed)
		}
		attrs = append(attrs, e.use...)
		s.writeList("LIST", attrs, e.name, childInfo)
		if a.HasStatus && e.exists && !imap.HasFlag(e.attrs, imap.AttrNoselect) {
			if st, err := s.user.Status(bg, e.name, statusItems); err == nil {
				s.writeStatus(e.name, a.ReturnStatus, st)
			}
		}
	}
	s.done(c, "OK", "List completed.")
	return nil
}

func (s *session) writeList(kind string, attrs []string, name, extra string) {
	s.out.Raw("* " + kind + " (")
	s.out.Raw(strings.Join(attrs, " "))
	s.out.Raw(") ")
	s.out.String(string(s.user.Delimiter()))
	s.out.Byte(' ')
	s.writeName(name)
	s.out.Raw(extra)
	s.out.CRLF()
}

// listEntries builds every name LIST could return: mailboxes, their
// missing parents and, when subs is set, subscriptions.
func (s *session) listEntries(subs bool) ([]*listEntry, error) {
	boxes, err := s.user.Mailboxes(bg)
	if err != nil {
		return nil, err
	}
	delim := string(s.user.Delimiter())
	byName := make(map[string]*listEntry, len(boxes))
	get := func(name string) *listEntry {
		e := byName[name]
		if e == nil {
			e = &listEntry{name: name}
			byName[name] = e
		}
		return e
	}
	for _, b := range boxes {
		e := get(s.canonInbox(b.Name))
		e.exists, e.attrs, e.use = true, b.Attrs, b.SpecialUse
	}
	// Parents, existing or not, have children.
	for _, b := range boxes {
		name := s.canonInbox(b.Name)
		for i := strings.LastIndex(name, delim); i > 0; i = strings.LastIndex(name[:i], delim) {
			get(name[:i]).hasChildren = true
		}
	}
	if subs {
		names, err := s.user.Subscriptions(bg)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			n = s.canonInbox(n)
			get(n).subscribed = true
			for i := strings.LastIndex(n, delim); i > 0; i = strings.LastIndex(n[:i], delim) {
				p := get(n[:i])
				p.childSubMatch = true
			}
		}
	}
	out := make([]*listEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].name, out[j].name
		if (a == imap.Inbox) != (b == imap.Inbox) {
			return a == imap.Inbox
		}
		return a < b
	})
	return out, nil
}

// hasPercentParentMatch reports whether some pattern ends in "%" at the
// level of name, so the level is listed for its subscribed children.
func hasPercentParentMatch(patterns []string, name string, delim rune) bool {
	for _, p := range patterns {
		if strings.HasSuffix(p, "%") && matchPattern(p, name, delim) {
			return true
		}
	}
	return false
}

// matchPattern matches a LIST pattern: "*" matches anything, "%" anything
// but the delimiter (RFC 3501 §6.3.8). It simulates the pattern as an NFA,
// so hostile patterns cost O(len(pattern) × len(name)), never more.
func matchPattern(pattern, name string, delim rune) bool {
	d := byte(delim)
	// states[i]: pattern[:i] matches the name read so far.
	states := make([]bool, len(pattern)+1)
	next := make([]bool, len(pattern)+1)
	closure := func(st []bool) {
		for i := 0; i < len(pattern); i++ {
			if st[i] && (pattern[i] == '*' || pattern[i] == '%') {
				st[i+1] = true
			}
		}
	}
	states[0] = true
	closure(states)
	for k := 0; k < len(name); k++ {
		c := name[k]
		clear(next)
		any := false
		for i := 0; i < len(pattern); i++ {
			if !states[i] {
				continue
			}
			switch p := pattern[i]; {
			case p == '*':
				next[i] = true
			case p == '%':
				if c != d {
					next[i] = true
				}
			case p == c:
				next[i+1] = true
			}
		}
		closure(next)
		for _, v := range next {
			any = any || v
		}
		if !any {
			return false
		}
		states, next = next, states
	}
	return states[len(pattern)]
}
