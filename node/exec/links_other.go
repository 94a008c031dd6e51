//go:build !unix

package exec

import "io/fs"

func hardLinked(fs.FileInfo) bool { return false }
