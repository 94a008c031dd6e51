// Package pb holds the protobuf schemas of the p2pjobs protocols and the Go
// code generated from them. Only package protocols and the services that speak
// the protocols import it.
package pb

//go:generate sh -c "protoc --proto_path=. --go_out=. --go_opt=paths=source_relative *.proto"
