package mime

// Limits on hostile input (HOSTILE-INPUTS §1e item 36). The values are
// Dovecot's where Dovecot has one, so that the same messages keep the same
// structure on both servers.
const (
	// MaxDepth is the deepest level a part may have; the message itself is
	// level 1. A multipart or message part at this level is not parsed
	// further. Dovecot: max nested MIME parts 100; Postfix:
	// mime_nesting_limit 100.
	MaxDepth = 100

	// MaxParts is the number of parts of a message, the message itself
	// included. Dovecot: 10000.
	MaxParts = 10000

	// MaxBoundaryLen is the number of boundary octets compared. RFC 2046
	// §5.1.1 allows 70; longer ones exist and are accepted, but only
	// their first MaxBoundaryLen octets are significant. Postfix:
	// mime_boundary_length_limit 2048.
	MaxBoundaryLen = 2048

	// MaxParams is the number of parameters (RFC 2231 sections counted
	// singly) read from one Content-Type or Content-Disposition field.
	// Dovecot: RFC2231_MAX_PARAMS 128.
	MaxParams = 128

	// MaxHeaderNameLen is the longest header field name recognised; a
	// line whose colon comes later is not a field.
	MaxHeaderNameLen = 1000

	// MaxFieldSize is the largest header field (all its lines) that is
	// interpreted. A header line longer than this ends the header.
	MaxFieldSize = 10 << 20

	// MaxHeaderSize is the largest header of one part. What follows is
	// treated as body (Dovecot CVE-2024-23185).
	MaxHeaderSize = 50 << 20

	// MaxAddresses is the number of addresses kept per ENVELOPE address
	// list. Dovecot keeps them all; a 10 MB To field of short addresses
	// would otherwise become a few hundred MB of structures. Postfix:
	// header_address_token_limit 10240.
	MaxAddresses = 10000
)

// stats counts the work Parse does, so that tests can assert that hostile
// input costs time linear in its size.
type stats struct {
	lines        int64 // lines read one by one (headers, "--" lines)
	boundaryCmp  int64 // octets compared while matching boundaries
	params       int64 // parameters parsed
	fieldsStored int64 // octets of header fields kept for interpretation
}
