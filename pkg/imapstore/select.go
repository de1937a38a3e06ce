package imapstore

import (
	"context"
	"slices"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
)

// Snapshot implements imap.Snapshotter: SELECT takes the UIDs the folder
// shares among its sessions instead of one callback per message.
func (v *view) Snapshot(ctx context.Context) (*imap.Snapshot, error) {
	hi := v.m.HighestModSeq()
	if _, err := v.m.Sync(); err != nil {
		return nil, err
	}
	uids, first := v.m.SharedUIDs()
	sn := &imap.Snapshot{UIDs: uids, FirstUnseen: first,
		Changes: imap.Changes{UIDNext: v.m.UIDNext(), HighestModSeq: max(hi, v.m.HighestModSeq())}}
	for _, u := range v.m.RecentUIDs() {
		sn.Recent = sn.Recent.Add(u)
	}
	if kw := v.m.Keywords(); strings.Join(kw, " ") != v.keywords {
		v.keywords = strings.Join(kw, " ")
		sn.Changes.Keywords = slices.Clone(kw)
	}
	return sn, nil
}
