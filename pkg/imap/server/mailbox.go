package server

import (
	"errors"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// cmdCreate is CREATE (RFC 3501 §6.3.3) with USE (RFC 6154 §3).
func (s *session) cmdCreate(c *wire.Command) error {
	raw := c.Mailbox
	// A trailing delimiter declares an intent to create children; it is
	// not part of the name (RFC 3501 §6.3.3).
	d := string(s.user.Delimiter())
	if strings.HasSuffix(raw, d) && len(raw) > len(d) {
		raw = strings.TrimSuffix(raw, d)
	}
	name, ok := s.mailboxName(c.Tag, raw)
	if !ok {
		return nil
	}
	var use []string
	for _, u := range c.Use {
		found := false
		for _, su := range imap.SpecialUses {
			if strings.EqualFold(su, u) {
				use = append(use, su)
				found = true
			}
		}
		if !found {
			s.reply(c.Tag, "NO", "[USEATTR] Unsupported special-use attribute "+u+".")
			return nil
		}
	}
	if name == imap.Inbox {
		s.reply(c.Tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
		return nil
	}
	if err := s.user.Create(bg, name, use); err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.done(c, "OK", "Create completed.")
	return nil
}

// cmdDelete is DELETE (RFC 3501 §6.3.4).
func (s *session) cmdDelete(c *wire.Command) error {
	name, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	if name == imap.Inbox {
		s.reply(c.Tag, "NO", "[CANNOT] INBOX can't be deleted.")
		return nil
	}
	if s.sel != nil && s.sel.name == name {
		// As Dovecot: deleting the selected mailbox is refused rather than
		// leaving a session on a mailbox that no longer exists.
		s.reply(c.Tag, "NO", "[CANNOT] Can't delete the selected mailbox.")
		return nil
	}
	if err := s.user.Delete(bg, name); err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.done(c, "OK", "Delete completed.")
	return nil
}

// cmdRename is RENAME (RFC 3501 §6.3.5).
func (s *session) cmdRename(c *wire.Command) error {
	from, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	to, ok := s.mailboxName(c.Tag, c.NewName)
	if !ok {
		return nil
	}
	if to == imap.Inbox {
		s.reply(c.Tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
		return nil
	}
	if from == to {
		s.reply(c.Tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
		return nil
	}
	d := string(s.user.Delimiter())
	if strings.HasPrefix(to, from+d) {
		s.reply(c.Tag, "NO", "[CANNOT] Can't rename a mailbox under itself.")
		return nil
	}
	if err := s.user.Rename(bg, from, to); err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.done(c, "OK", "Rename completed.")
	return nil
}

// cmdSubscribe is SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6-7).
func (s *session) cmdSubscribe(c *wire.Command) error {
	name, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	var err error
	if c.Name == "SUBSCRIBE" {
		err = s.user.Subscribe(bg, name)
	} else {
		err = s.user.Unsubscribe(bg, name)
	}
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	if c.Name == "SUBSCRIBE" {
		s.done(c, "OK", "Subscribe completed.")
	} else {
		s.done(c, "OK", "Unsubscribe completed.")
	}
	return nil
}

var statusNames = map[string]imap.StatusItems{
	"MESSAGES":        imap.StatusMessages,
	"RECENT":          imap.StatusRecent,
	"UIDNEXT":         imap.StatusUIDNext,
	"UIDVALIDITY":     imap.StatusUIDValidity,
	"UNSEEN":          imap.StatusUnseen,
	"HIGHESTMODSEQ":   imap.StatusHighestModSeq,
	"SIZE":            imap.StatusSize,
	"DELETED":         imap.StatusDeleted,
	"DELETED-STORAGE": imap.StatusDeletedStorage,
	"APPENDLIMIT":     0,
}

// parseStatusItems checks STATUS item names; on failure it has answered.
func (s *session) parseStatusItems(tag string, items []string) (imap.StatusItems, bool) {
	var set imap.StatusItems
	for _, it := range items {
		bit, ok := statusNames[it]
		if !ok {
			s.badReply(tag, "Error in IMAP command STATUS: Unknown status item "+it+".")
			return 0, false
		}
		set |= bit
	}
	return set, true
}

// cmdStatus is STATUS (RFC 3501 §6.3.10, RFC 7162, RFC 8438, RFC 7889).
func (s *session) cmdStatus(c *wire.Command) error {
	name, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	items, ok := s.parseStatusItems(c.Tag, c.Status)
	if !ok {
		return s.out.Err()
	}
	if items&imap.StatusHighestModSeq != 0 {
		s.ext |= extCondStore // RFC 7162 §3.1: a CONDSTORE enabling command
	}
	st, err := s.user.Status(bg, name, items)
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.writeStatus(name, c.Status, st)
	s.done(c, "OK", "Status completed.")
	return nil
}

func (s *session) writeStatus(name string, items []string, st *imap.MailboxStatus) {
	s.out.Raw("* STATUS ")
	s.writeName(name)
	s.out.Raw(" (")
	for i, it := range items {
		if i > 0 {
			s.out.Byte(' ')
		}
		s.out.Raw(it)
		s.out.Byte(' ')
		switch it {
		case "MESSAGES":
			s.out.Number(uint64(st.Messages))
		case "RECENT":
			s.out.Number(uint64(st.Recent))
		case "UIDNEXT":
			s.out.Number(uint64(st.UIDNext))
		case "UIDVALIDITY":
			s.out.Number(uint64(st.UIDValidity))
		case "UNSEEN":
			s.out.Number(uint64(st.Unseen))
		case "HIGHESTMODSEQ":
			s.out.Number(st.HighestModSeq)
		case "SIZE":
			s.out.Number(uint64(st.Size))
		case "DELETED":
			s.out.Number(uint64(st.Deleted))
		case "DELETED-STORAGE":
			s.out.Number(uint64(st.DeletedStorage))
		case "APPENDLIMIT":
			s.out.Number(uint64(s.cfg.AppendLimit))
		}
	}
	s.out.Raw(")\r\n")
}

// cmdAppend is APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7889,
// RFC 3516 literal8, RFC 6855 UTF8). Size and mailbox are checked before
// the continuation request, so a refused message is never sent.
func (s *session) cmdAppend(c *wire.Command) error {
	a := c.Append
	reject := func(status, text string) error {
		if err := s.dec.RejectLiteral(); err != nil {
			if we, ok := err.(*wire.Error); ok {
				s.reply(c.Tag, status, text)
				s.bye(we.Text)
			}
			return err
		}
		if status == "BAD" {
			return s.badReply(c.Tag, text)
		}
		s.reply(c.Tag, status, text)
		return nil
	}
	name, err := s.decodeName(c.Mailbox)
	if err == nil {
		err = checkName(name, s.user.Delimiter())
	}
	if err != nil {
		return reject("NO", "[CANNOT] Invalid mailbox name: "+err.Error())
	}
	var flags []string
	for _, f := range a.Flags {
		cf, ok := imap.CanonicalFlag(f)
		if !ok || cf == imap.FlagRecent || cf == `\*` {
			return reject("BAD", "Error in IMAP command APPEND: Invalid system flag "+f+".")
		}
		if !imap.HasFlag(flags, cf) {
			flags = append(flags, cf)
		}
	}
	if a.Size < 0 || a.Size > s.cfg.AppendLimit {
		return reject("NO", "[TOOBIG] Mail size is too large.")
	}
	if a.Size == 0 {
		return reject("NO", "Can't save a zero byte message.")
	}
	if _, err := s.user.Status(bg, name, imap.StatusUIDNext); err != nil {
		if errors.Is(err, imap.ErrNonexistent) {
			return reject("NO", "[TRYCREATE] Mailbox doesn't exist: "+c.Mailbox)
		}
		if e := imap.AsError(err); e != nil {
			return reject("NO", "["+e.Code+"] "+e.Text)
		}
		return reject("NO", "[SERVERBUG] Internal error occurred.")
	}
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.CommandTimeout + time.Duration(a.Size/s.cfg.MinDataRate)*time.Second))
	r, err := s.dec.AppendLiteral()
	if err != nil {
		return err
	}
	res, serr := s.user.Append(bg, name, flags, a.Date, r, a.Size)
	if err := s.dec.EndAppend(); err != nil {
		if we, ok := err.(*wire.Error); ok && !we.Fatal {
			return s.badReply(c.Tag, "Error in IMAP command APPEND: "+we.Text)
		}
		if we, ok := err.(*wire.Error); ok {
			s.bye(we.Text)
		}
		return err
	}
	if serr != nil {
		if errors.Is(serr, imap.ErrNonexistent) {
			s.reply(c.Tag, "NO", "[TRYCREATE] Mailbox doesn't exist: "+c.Mailbox)
			return nil
		}
		s.storeError(c.Tag, serr)
		return nil
	}
	text := "Append completed."
	if res.UID != 0 {
		text = "[APPENDUID " + u32(res.UIDValidity) + " " + u32(res.UID) + "] " + text
	}
	s.done(c, "OK", text)
	return nil
}

// cmdQuota is GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208).
func (s *session) cmdQuota(c *wire.Command) error {
	switch c.Name {
	case "SETQUOTA":
		s.reply(c.Tag, "NO", "[NOPERM] Quota can't be changed.")
		return nil
	case "GETQUOTA":
		res, err := s.user.Quota(bg, c.Mailbox)
		if err != nil {
			s.storeError(c.Tag, err)
			return nil
		}
		s.writeQuota(c.Mailbox, res)
		s.done(c, "OK", "Getquota completed.")
		return nil
	}
	name, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	roots, err := s.user.QuotaRoots(bg, name)
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.out.Raw("* QUOTAROOT ")
	s.writeName(name)
	for _, r := range roots {
		s.out.Byte(' ')
		s.out.String(r)
	}
	s.out.CRLF()
	for _, r := range roots {
		if res, err := s.user.Quota(bg, r); err == nil {
			s.writeQuota(r, res)
		}
	}
	s.done(c, "OK", "Getquotaroot completed.")
	return nil
}

func (s *session) writeQuota(root string, res []imap.QuotaResource) {
	s.out.Raw("* QUOTA ")
	s.out.String(root)
	s.out.Raw(" (")
	for i, r := range res {
		if i > 0 {
			s.out.Byte(' ')
		}
		s.out.Raw(r.Name)
		s.out.Byte(' ')
		s.out.Number(r.Usage)
		s.out.Byte(' ')
		s.out.Number(r.Limit)
	}
	s.out.Raw(")\r\n")
}
