package ledger

import "google.golang.org/protobuf/proto"

// EncodeProto is the deterministic protobuf encoding used for stored
// records.
func EncodeProto(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// DecodeProto decodes a stored record.
func DecodeProto(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
