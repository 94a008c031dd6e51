// Command hostile is a WASI module that attacks the worker's sandbox
// filesystem; its first argument picks the attack. Build (from this dir):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags='-s -w' -o ../hostile.wasm .
package main

import (
	"fmt"
	"os"
)

func main() {
	switch os.Args[1] {
	case "disk": // fill the disk, ignoring errors, for ever
		buf := make([]byte, 64<<10)
		f, _ := os.Create("fill")
		for {
			if f != nil {
				_, _ = f.Write(buf)
			}
		}
	case "files": // a million small files
		for i := range 1_000_000 {
			if f, err := os.Create(fmt.Sprintf("f%d", i)); err == nil {
				f.Close()
			}
		}
	case "escape": // out of the directory by "..", then by a symlink
		if b, err := os.ReadFile("../../../../etc/passwd"); err == nil {
			os.Stdout.Write(b)
		}
		if err := os.Symlink("/etc", "l"); err == nil {
			if b, err := os.ReadFile("l/passwd"); err == nil {
				os.Stdout.Write(b)
			}
		}
		fmt.Println("contained")
	}
}
