//go:build !p2pnode_testhooks

package main

import "github.com/p2pjobs/p2pnode/node"

// crashOptions: release builds have no crash point (crashpoint.go is
// compiled only with -tags p2pnode_testhooks, into the tests' binary).
func crashOptions() []node.Option { return nil }
