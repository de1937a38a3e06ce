// Package mailbox is a user's mail store for the IMAP and POP3 servers: a
// Maildir++ directory laid out exactly as Dovecot lays it out (DESIGN §3,
// COMPAT §2), so a mailbox moves between Dovecot and posthorn with UIDs,
// UIDVALIDITY, flags and keywords intact.
//
// Files shared with Dovecot, read and written in its formats:
//
//	dovecot-uidlist       UIDs (v3; v1 read), under dovecot-uidlist.lock
//	dovecot-keywords      keyword letters a..z
//	dovecot-uidvalidity   next UIDVALIDITY, at the root, with its marker
//	subscriptions         v2 (v1 kept), at the root
//	maildirsize           Maildir++ quota, at the root
//	maildirfolder         marker in every child folder
//	..DOVECOT-TRASHED     where a deleted folder goes on its way out
//
// Files of posthorn's own, all optional and rebuilt when missing or bad:
//
//	posthorn.index        per folder: modseqs, sizes, INTERNALDATEs, names,
//	                      keywords beyond 26, recent expunges, the first
//	                      UID no session has taken as \Recent (index.go)
//	posthorn.cache        per folder: opaque per-UID data for FETCH/SEARCH
//	                      (cache.go)
//	posthorn-special-use  at the root: CREATE-SPECIAL-USE attributes
//	                      (specialuse.go)
//
// Dovecot ignores all three, and Maildir++ listing ignores them because
// their names do not start with ".".
//
// Concurrency follows Dovecot: readers take no lock; anything that assigns
// UIDs, renames for flags, expunges, or writes the files above holds
// dovecot-uidlist.lock. Sessions of one Store share a folder's state;
// other Stores and other programs are seen through the files (stat of
// new/, cur/, dovecot-uidlist, dovecot-keywords and posthorn.index).
//
// MODSEQ values are the larger of the previous value plus one and the
// current time in microseconds: they only grow for a UIDVALIDITY even when
// posthorn.index is lost and rebuilt, and a mailbox coming from Dovecot
// (whose modseqs are small counters) starts above anything a client saw
// there.
package mailbox
