// Package viz replays and follows p2pnode event logs (package events) in a
// browser. It loads one or many JSON-lines logs or directories of *.jsonl,
// merges them by time into an Index (nodes, errors, state snapshots at any
// moment, previous/next event), follows files while they grow (Tail), and
// serves an embedded single-page visualiser over HTTP (Start, Serve).
//
// The page is hand-written HTML, CSS and JavaScript embedded in the binary:
// no CDN and no build step. It fetches the merged events once, paginated by
// index (/api/events), then receives new ones as they are appended
// (/api/stream, Server-Sent Events), and indexes them itself so that jumping
// to any time costs a few binary searches, not a scan.
//
// Only cmd/p2pnode (the viz and demo commands) and tests import this package.
package viz
