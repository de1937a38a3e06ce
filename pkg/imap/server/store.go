package server

import (
	"errors"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// cmdStore is STORE and UID STORE (RFC 3501 §6.4.6, RFC 7162 §3.1.3).
func (s *session) cmdStore(c *wire.Command) error {
	v := s.sel
	a := c.Store
	if v.readOnly {
		s.done(c, "NO", "[CANNOT] Mailbox is read-only.")
		return nil
	}
	var flags []string
	for _, f := range a.Flags {
		cf, ok := imap.CanonicalFlag(f)
		if !ok || cf == imap.FlagRecent || cf == `\*` {
			return s.badReply(c.Tag, "Error in IMAP command STORE: Invalid system flag "+f+".")
		}
		if !imap.HasFlag(flags, cf) {
			flags = append(flags, cf)
		}
	}
	uids, err := v.resolve(c.Seq, c.UID)
	if err != nil {
		return s.badReply(c.Tag, "Error in IMAP command STORE: Invalid messageset.")
	}
	if a.HasUnchanged {
		if v.noModSeq {
			return s.badReply(c.Tag, "Error in IMAP command STORE: Mailbox has no modsequences.")
		}
		s.ext |= extCondStore
	}
	num := func(uid uint32) uint32 {
		if c.UID {
			return uid
		}
		return v.seqOf(uid)
	}
	var modified imap.UIDSet
	found := uint64(0)
	if a.HasUnchanged && a.UnchangedSince == 0 {
		// Every message has a mod-sequence above 0: all fail (RFC 7162 §3.1.3).
		uids.Each(func(uid uint32) bool { modified = modified.Add(num(uid)); return true })
		found = uids.Count()
	} else if len(uids) > 0 {
		failed, err := v.mbox.Store(bg, uids, a.Op, flags, a.UnchangedSince, func(mi *imap.MessageInfo) {
			found++
			changed := mi.ModSeq > v.modseq
			if v.own == nil {
				v.own = map[uint32]uint64{}
			}
			v.own[mi.UID] = mi.ModSeq
			switch {
			case !a.Silent:
				s.writeFlagsFetch(v, v.seqOf(mi.UID), mi.UID, mi.Flags, mi.ModSeq, c.UID || s.qresync())
			case changed && s.condstore():
				// .SILENT still reports the new mod-sequence once
				// CONDSTORE is in use (RFC 7162 §3.1.3).
				seq := v.seqOf(mi.UID)
				if seq > 0 {
					s.out.Raw("* " + u32(seq) + " FETCH (UID " + u32(mi.UID) + " MODSEQ (" + u64(mi.ModSeq) + "))\r\n")
				}
			}
		})
		if err != nil {
			s.storeError(c.Tag, err)
			return nil
		}
		found += failed.Count()
		failed.Each(func(uid uint32) bool { modified = modified.Add(num(uid)); return true })
	}
	switch {
	case len(modified) > 0:
		s.done(c, "OK", "[MODIFIED "+modified.String()+"] Conditional store failed.")
	case found < uids.Count() && !c.UID:
		s.done(c, "NO", "[EXPUNGEISSUED] Some of the messages no longer exist.")
	default:
		s.done(c, "OK", "Store completed.")
	}
	return nil
}

// cmdCopy is COPY, UID COPY (RFC 3501 §6.4.7, RFC 4315 COPYUID), MOVE
// and UID MOVE (RFC 6851).
func (s *session) cmdCopy(c *wire.Command) error {
	v := s.sel
	move := c.Name == "MOVE"
	uids, err := v.resolve(c.Seq, c.UID)
	if err != nil {
		return s.badReply(c.Tag, "Error in IMAP command "+c.Name+": Invalid messageset.")
	}
	dest, ok := s.mailboxName(c.Tag, c.NewName)
	if !ok {
		return nil
	}
	if move && v.readOnly {
		s.done(c, "NO", "[CANNOT] Mailbox is read-only.")
		return nil
	}
	if !c.UID && len(v.pending.Intersect(uids)) > 0 {
		s.done(c, "NO", "[EXPUNGEISSUED] Some of the requested messages no longer exist.")
		return nil
	}
	if len(uids) == 0 {
		s.done(c, "OK", "No messages found.")
		return nil
	}
	var res imap.CopyResult
	if move {
		res, err = v.mbox.Move(bg, uids, dest)
	} else {
		res, err = v.mbox.Copy(bg, uids, dest)
	}
	if err != nil {
		if errors.Is(err, imap.ErrNonexistent) {
			s.done(c, "NO", "[TRYCREATE] Mailbox doesn't exist: "+c.NewName)
			return nil
		}
		s.storeError(c.Tag, err)
		return nil
	}
	code := ""
	if len(res.Source) > 0 && len(res.Source) == len(res.Dest) {
		var src, dst imap.UIDSet
		for i := range res.Source {
			src = src.Add(res.Source[i])
			dst = dst.Add(res.Dest[i])
		}
		code = "[COPYUID " + u32(res.UIDValidity) + " " + src.String() + " " + dst.String() + "] "
	}
	if move {
		// RFC 6851 §4.3: COPYUID goes in an untagged OK before the
		// expunges.
		if code != "" {
			s.out.Raw("* OK " + code + "Moved UIDs.\r\n")
		}
		s.doneExpunged(c, "Move completed.")
		return nil
	}
	s.done(c, "OK", code+"Copy completed.")
	return nil
}
