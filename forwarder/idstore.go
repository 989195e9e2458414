package forwarder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/spooky-lb/spooky/bpf"
)

// idStore keeps the planner's VIP ids and backend indexes in a map pinned
// beside the XDP maps, so that a restarted daemon gives every VIP and
// backend the index the pinned flows, server IDs and tables already use,
// even after reloads moved the ids away from config order. XDP never reads
// it.
type idStore struct{ m *ebpf.Map }

// idKind says which allocator an entry belongs to.
const (
	idKindVIP     uint32 = 1
	idKindBackend uint32 = 2
)

type idStoreKey struct {
	Kind uint32
	ID   uint32
}

// idNameLen bounds the stored name; longer names are stored as a digest.
const idNameLen = 128

type idStoreValue [idNameLen]byte

// idStorePin is the store's pin: its map's name.
const idStorePin = "spooky_ids"

// openIDStore opens the store pinned in dir, creating it if absent.
func openIDStore(dir string) (*idStore, error) {
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name:       idStorePin,
		Type:       ebpf.Hash,
		KeySize:    8,
		ValueSize:  idNameLen,
		MaxEntries: bpf.MaxVIPs + bpf.MaxBackends,
		Pinning:    ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, fmt.Errorf("open id store in %s: %w", dir, err)
	}
	return &idStore{m: m}, nil
}

// storedName encodes a key so it fits the value; two keys share an
// encoding only if their SHA-256 digests do.
func storedName(key string) idStoreValue {
	var v idStoreValue
	if len(key) >= idNameLen {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	copy(v[:], key)
	return v
}

// load returns the stored ids by encoded name.
func (s *idStore) load() (vips, backends map[idStoreValue]uint32, err error) {
	vips, backends = map[idStoreValue]uint32{}, map[idStoreValue]uint32{}
	var k idStoreKey
	var v idStoreValue
	it := s.m.Iterate()
	for it.Next(&k, &v) {
		switch k.Kind {
		case idKindVIP:
			vips[v] = k.ID
		case idKindBackend:
			backends[v] = k.ID
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read id store: %w", err)
	}
	return vips, backends, nil
}

// save makes the store hold exactly the given allocations.
func (s *idStore) save(vips, backends *ids) error {
	want := map[idStoreKey]idStoreValue{}
	for name, id := range vips.byKey {
		want[idStoreKey{idKindVIP, id}] = storedName(name)
	}
	for name, id := range backends.byKey {
		want[idStoreKey{idKindBackend, id}] = storedName(name)
	}
	for k, v := range want {
		if err := putIfChanged(s.m, k, v); err != nil {
			return err
		}
	}
	var k idStoreKey
	var v idStoreValue
	var stale []idStoreKey
	for it := s.m.Iterate(); it.Next(&k, &v); {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := deleteKeys(s.m, stale); err != nil {
		return fmt.Errorf("prune id store: %w", err)
	}
	return nil
}

func (s *idStore) close() error { return s.m.Close() }

// seed gives a's keys the stored ids before the first assignment. Stored
// ids that no key claims are kept under a placeholder name, so the next
// assignment reports them freed (their slots, server IDs and flows are then
// cleared) instead of handing them to a new key with stale entries.
func (a *ids) seed(keys []string, stored map[idStoreValue]uint32) error {
	claimed := map[uint32]string{}
	for _, k := range keys {
		id, ok := stored[storedName(k)]
		if !ok {
			continue
		}
		if id >= a.limit {
			return fmt.Errorf("stored id %d of %q is out of range", id, k)
		}
		if other, dup := claimed[id]; dup && other != k {
			return fmt.Errorf("stored id %d names both %q and %q", id, other, k)
		}
		claimed[id] = k
		a.byKey[k] = id
	}
	for name, id := range stored {
		if _, ok := claimed[id]; !ok && id < a.limit {
			a.byKey[fmt.Sprintf("\x00stale %d %s", id, bytesString(name[:]))] = id
		}
	}
	return nil
}

func bytesString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
