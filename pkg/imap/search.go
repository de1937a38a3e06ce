package imap

import "time"

// SearchOp is the kind of one search key (RFC 3501 §6.4.4, RFC 9051
// §6.4.4, RFC 7162 §3.1.5).
type SearchOp uint8

// Search keys after normalisation: NEW becomes RECENT UNSEEN, OLD becomes
// NOT RECENT, FROM/TO/CC/BCC/SUBJECT become SearchHeader with the field
// name, and the UN- keys become SearchNot around the positive key.
const (
	SearchAll        SearchOp = iota
	SearchAnd                 // Children, all must match
	SearchOr                  // Children[0] or Children[1]
	SearchNot                 // not Children[0]
	SearchSeq                 // Set (sequence numbers)
	SearchUID                 // Set (UIDs)
	SearchFlag                // Flag is set (\Seen, \Recent, keywords)
	SearchBefore              // internal date before Date
	SearchOn                  // internal date on Date
	SearchSince               // internal date on or after Date
	SearchSentBefore          // Date: header
	SearchSentOn              //
	SearchSentSince           //
	SearchLarger              // RFC822.SIZE > N
	SearchSmaller             // RFC822.SIZE < N
	SearchHeader              // header Field contains Value ("" matches any field present)
	SearchBody                // body contains Value
	SearchText                // header or body contains Value
	SearchModSeq              // mod-sequence >= N (RFC 7162 §3.1.5)
)

// SearchKey is a node of a parsed search program.
type SearchKey struct {
	Op       SearchOp
	Children []*SearchKey
	Set      SeqSet
	Flag     string
	Field    string // header field name, as given
	Value    string // UTF-8 (the engine converts other charsets it accepts)
	Date     time.Time
	N        uint64
}

// Walk calls fn for k and every key below it, depth first.
func (k *SearchKey) Walk(fn func(*SearchKey)) {
	fn(k)
	for _, c := range k.Children {
		c.Walk(fn)
	}
}
