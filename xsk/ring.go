package xsk

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one of the four single-producer single-consumer rings the kernel
// shares with this process (af_xdp.rst "Rings"): the producer index, the
// consumer index and a power-of-two array of entries, all in memory mapped
// from the socket. Each side writes only its own index; the other's is read
// with an atomic load, which orders the entry accesses around it (the
// kernel side pairs them with smp_load_acquire/smp_store_release).
type ring struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	entries  unsafe.Pointer
	mask     uint32
	size     uint32
	// cached copy of this side's own index and of the other side's, so
	// that most calls read no shared cache line.
	prod, cons uint32
}

func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, size uint32, entrySize uintptr) (ring, error) {
	length := int(off.Desc) + int(size)*int(entrySize)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, err
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r := ring{
		mem:      mem,
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		entries:  unsafe.Add(base, off.Desc),
		mask:     size - 1,
		size:     size,
	}
	r.prod = atomic.LoadUint32(r.producer)
	r.cons = atomic.LoadUint32(r.consumer)
	return r, nil
}

func (r *ring) unmap() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
}

// addr is entry i of a fill or completion ring (UMEM offsets).
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.entries, uintptr(i&r.mask)*8))
}

// desc is entry i of an RX or TX ring.
func (r *ring) desc(i uint32) *Desc {
	return (*Desc)(unsafe.Add(r.entries, uintptr(i&r.mask)*unsafe.Sizeof(Desc{})))
}

// free returns how many entries this process (the producer) may fill.
func (r *ring) free() uint32 {
	if n := r.size - (r.prod - r.cons); n > 0 {
		return n
	}
	r.cons = atomic.LoadUint32(r.consumer)
	return r.size - (r.prod - r.cons)
}

// publish makes the entries filled up to r.prod visible to the kernel.
func (r *ring) publish() { atomic.StoreUint32(r.producer, r.prod) }

// ready returns how many entries this process (the consumer) may read.
func (r *ring) ready() uint32 {
	if n := r.prod - r.cons; n > 0 {
		return n
	}
	r.prod = atomic.LoadUint32(r.producer)
	return r.prod - r.cons
}

// release hands the entries read up to r.cons back to the kernel.
func (r *ring) release() { atomic.StoreUint32(r.consumer, r.cons) }

func atomic32(p *uint32) uint32 { return atomic.LoadUint32(p) }
