package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the node's private key inside the data directory.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity reads the Ed25519 key at path, or creates one with
// mode 0600 when the file does not exist. A key file readable by others is
// refused: it is the node's identity and its ledger account.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("node: identity %s has mode %v: must be 0600 (chmod 600 %s)", path, st.Mode().Perm(), path)
		}
		k, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("node: identity %s: %w", path, err)
		}
		return k, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	data, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	// Write to a temporary file and rename, so a crash never leaves a
	// truncated key behind.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	return k, nil
}
