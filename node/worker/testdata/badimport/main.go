// Command badimport imports a host function no worker provides. Build
// (from this dir):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags='-s -w' -o ../badimport.wasm .
package main

//go:wasmimport env escape_sandbox
func escapeSandbox() int32

func main() { _ = escapeSandbox() }
