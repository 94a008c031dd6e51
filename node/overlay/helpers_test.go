package overlay_test

import "google.golang.org/protobuf/proto"

func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
func protoMarshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}
