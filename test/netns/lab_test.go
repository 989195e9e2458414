package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestLab(t *testing.T) {
	lab := New(t, Config{
		Backends: 2,
		Client:   HostOptions{TxChecksumOff: true, MTU: 1400},
		LB:       HostOptions{PeerXDP: true, Queues: 2, MountNS: true},
	})

	t.Run("hosts follow the address plan", func(t *testing.T) {
		want := map[*Host][2]string{
			lab.Client:      {"198.18.0.1", "2001:db8::1"},
			lab.LB:          {"198.18.0.2", "2001:db8::2"},
			lab.Backends[0]: {"198.18.0.11", "2001:db8::b"},
			lab.Backends[1]: {"198.18.0.12", "2001:db8::c"},
		}
		for h, w := range want {
			if h.IPv4.String() != w[0] || h.IPv6.String() != w[1] {
				t.Errorf("%s: addresses %s %s, want %s %s", h, h.IPv4, h.IPv6, w[0], w[1])
			}
			got := mustAddrs(t, h)
			for _, a := range w {
				if !got[netip.MustParseAddr(a)] {
					t.Errorf("%s: %s not on %s (have %v)", h, a, h.Iface, got)
				}
			}
		}
	})

	t.Run("every host reaches every backend over IPv4 and IPv6", func(t *testing.T) {
		for _, b := range lab.Backends {
			for _, a := range b.Addrs() {
				for _, from := range []*Host{lab.Client, lab.LB} {
					mustEcho(t, from, b, a)
				}
			}
		}
	})

	t.Run("Capture records a host's UDP frames in both directions", func(t *testing.T) {
		c, err := lab.Client.Capture()
		if err != nil {
			t.Fatal(err)
		}
		b := lab.Backends[0]
		mustEcho(t, lab.Client, b, b.IPv4)
		mustEcho(t, lab.Client, b, b.IPv6)
		frames, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range frames {
			d, ok := ParseUDP(f.Data)
			if !ok || !strings.HasPrefix(string(d.Payload), "hello from client") {
				continue
			}
			seen[fmt.Sprintf("%v %v→%v", f.Outgoing, d.Src.Addr(), d.Dst.Addr())] = true
		}
		for _, want := range []string{
			"true 198.18.0.1→198.18.0.11", "false 198.18.0.11→198.18.0.1",
			"true 2001:db8::1→2001:db8::b", "false 2001:db8::b→2001:db8::1",
		} {
			if !seen[want] {
				t.Errorf("no echo frame %q among %d frames (saw %v)", want, len(frames), seen)
			}
		}
	})

	t.Run("Do runs the function in the host's namespace and returns to the caller's", func(t *testing.T) {
		before := mustNetnsInode(t, "/proc/thread-self/ns/net")
		var inside uint64
		if err := lab.Client.Do(func() error {
			inside = mustNetnsInode(t, "/proc/thread-self/ns/net")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := mustNetnsInode(t, lab.Client.Path()); inside != want {
			t.Errorf("inside Do: namespace inode %d, want the client's %d", inside, want)
		}
		if after := mustNetnsInode(t, "/proc/thread-self/ns/net"); after != before {
			t.Errorf("after Do: namespace inode %d, want the original %d", after, before)
		}
	})

	t.Run("Do returns the function's error", func(t *testing.T) {
		sentinel := errors.New("sentinel")
		if err := lab.Client.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("Do returned %v, want the sentinel", err)
		}
	})

	t.Run("Command runs the process in the host's namespace", func(t *testing.T) {
		for _, h := range []*Host{lab.Client, lab.LB} {
			out, err := h.Command("readlink", "/proc/self/ns/net").Output()
			if err != nil {
				t.Fatalf("%s: %v", h, err)
			}
			want := fmt.Sprintf("net:[%d]", mustNetnsInode(t, h.Path()))
			if got := strings.TrimSpace(string(out)); got != want {
				t.Errorf("%s: process in %s, want %s", h, got, want)
			}
		}
	})

	t.Run("commands of a host with a mount namespace share its bpffs", func(t *testing.T) {
		dir := "/sys/fs/bpf/spk-lab-test"
		if out, err := lab.LB.Command("mkdir", dir).CombinedOutput(); err != nil {
			t.Fatalf("mkdir in bpffs: %v: %s", err, out)
		}
		if out, err := lab.LB.Command("test", "-d", dir).CombinedOutput(); err != nil {
			t.Errorf("second command does not see %s: %v: %s", dir, err, out)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s leaked into the root mount namespace", dir)
		}
		out, err := lab.LB.Command("ls", "/sys/class/net").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(out)); !slicesEqual(got, []string{"eth0", "lo"}) {
			t.Errorf("/sys/class/net in the lb's mount namespace lists %v, want its own [eth0 lo]", got)
		}
	})

	t.Run("a host with TxChecksumOff has TX checksum offload off", func(t *testing.T) {
		if on, err := lab.Client.TxChecksum(); err != nil || on {
			t.Errorf("client tx checksum on=%v err=%v, want off", on, err)
		}
		if on, err := lab.Backends[0].TxChecksum(); err != nil || !on {
			t.Errorf("backend tx checksum on=%v err=%v, want the veth default (on)", on, err)
		}
	})

	t.Run("MTU applies to both ends of the veth", func(t *testing.T) {
		for _, get := range []func() (netlink.Link, error){lab.Client.Link, lab.Client.PeerLink} {
			l, err := get()
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().MTU != 1400 {
				t.Errorf("%s: mtu %d, want 1400", l.Attrs().Name, l.Attrs().MTU)
			}
		}
	})

	t.Run("PeerXDP attaches XDP to the bridge side of the host's veth only", func(t *testing.T) {
		peer, err := lab.LB.PeerLink()
		if err != nil {
			t.Fatal(err)
		}
		if x := peer.Attrs().Xdp; x == nil || !x.Attached {
			t.Errorf("%s: no XDP program attached", peer.Attrs().Name)
		}
		own, err := lab.LB.Link()
		if err != nil {
			t.Fatal(err)
		}
		if x := own.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("%s inside the lb has XDP attached; want it free for the test", own.Attrs().Name)
		}
	})

	t.Run("Queues gives the veth that many queues", func(t *testing.T) {
		l, err := lab.LB.Link()
		if err != nil {
			t.Fatal(err)
		}
		if a := l.Attrs(); a.NumTxQueues != 2 || a.NumRxQueues != 2 {
			t.Errorf("lb veth queues tx=%d rx=%d, want 2 and 2", a.NumTxQueues, a.NumRxQueues)
		}
	})

	t.Run("AddVIP puts the VIP on lo and sets the DSR sysctls", func(t *testing.T) {
		b := lab.Backends[1]
		for _, vip := range []netip.Addr{VIPv4, VIPv6} {
			if err := b.AddVIP(vip); err != nil {
				t.Fatal(err)
			}
		}
		var onLo map[netip.Addr]bool
		err := b.Do(func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			onLo, err = linkAddrs(lo)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !onLo[VIPv4] || !onLo[VIPv6] {
			t.Errorf("lo has %v, want both VIPs", onLo)
		}
		for k, want := range map[string]string{
			"net.ipv4.conf.all.rp_filter":     "0",
			"net.ipv4.conf.eth0.rp_filter":    "0",
			"net.ipv4.conf.all.arp_ignore":    "1",
			"net.ipv4.conf.all.arp_announce":  "2",
			"net.ipv4.conf.eth0.arp_announce": "2",
		} {
			if got, err := b.Sysctl(k); err != nil || got != want {
				t.Errorf("%s = %q (%v), want %q", k, got, err, want)
			}
		}
		// A sysctl changed in one host must not show in another.
		if got, _ := lab.Backends[0].Sysctl("net.ipv4.conf.all.arp_ignore"); got != "0" {
			t.Errorf("backend1 arp_ignore = %q, want the default 0", got)
		}
	})

	t.Run("StaticNeighbors installs permanent neighbours and static FDB entries", func(t *testing.T) {
		if err := lab.StaticNeighbors(); err != nil {
			t.Fatal(err)
		}
		var neighs []netlink.Neigh
		err := lab.Client.Do(func() error {
			var err error
			neighs, err = netlink.NeighList(lab.Client.Index, netlink.FAMILY_ALL)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		perm := map[string]string{}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT != 0 {
				perm[n.IP.String()] = n.HardwareAddr.String()
			}
		}
		for _, b := range lab.Backends {
			for _, a := range b.Addrs() {
				if perm[a.String()] != b.MAC.String() {
					t.Errorf("client neighbour %s = %q, want permanent %s", a, perm[a.String()], b.MAC)
				}
			}
		}
		var fdb []netlink.Neigh
		err = lab.Bridge.Do(func() error {
			var err error
			fdb, err = netlink.NeighList(lab.Backends[0].PeerIndex, unix.AF_BRIDGE)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range fdb {
			if bytes.Equal(n.HardwareAddr, lab.Backends[0].MAC) && n.State&netlink.NUD_NOARP != 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("no static fdb entry for %s on %s: %v", lab.Backends[0].MAC, lab.Backends[0].PeerName, fdb)
		}
		mustEcho(t, lab.Client, lab.Backends[0], lab.Backends[0].IPv6)
	})
}

func TestLabTeardownRemovesNamespacesAndProcesses(t *testing.T) {
	SkipUnlessPrivileged(t)
	var names []string
	var pids []int
	t.Run("a lab with running processes", func(t *testing.T) {
		lab := New(t, Config{Backends: 1, LB: HostOptions{MountNS: true}})
		for _, h := range append(lab.Hosts(), lab.Bridge) {
			names = append(names, h.NS)
		}
		cmd := lab.Backends[0].Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid, lab.LB.holderPID)
		// A process started by hand in a lab namespace dies too.
		orphan := exec.Command("nsenter", "--net="+lab.Client.Path(), "sleep", "600")
		if err := orphan.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, orphan.Process.Pid)
		mustEnterSoon(t, orphan.Process.Pid, lab.Client)
		go func() { _ = orphan.Wait(); _ = cmd.Wait() }()
	})
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists after teardown (stat: %v)", n, err)
		}
	}
	for _, pid := range pids {
		mustExitSoon(t, pid)
	}
}

func TestNewRemovesLeftoversOfCrashedRuns(t *testing.T) {
	SkipUnlessPrivileged(t)
	// A PID that surely is gone: a process that has exited and been reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-1-client", NamePrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d-999-client", NamePrefix, os.Getpid())
	for _, n := range []string{stale, live} {
		mustNamedNamespace(t, n)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(live); _ = netns.DeleteNamed(stale) })
	// A process the crashed run left running in its namespace.
	straggler := exec.Command("nsenter", "--net=/run/netns/"+stale, "sleep", "600")
	if err := straggler.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = straggler.Wait() }()
	mustEnterSoon(t, straggler.Process.Pid, &Host{NS: stale})

	New(t, Config{Backends: 1})
	mustExitSoon(t, straggler.Process.Pid)

	if _, err := os.Stat("/run/netns/" + stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s of dead PID %d was not removed (stat: %v)", stale, dead.Process.Pid, err)
	}
	if _, err := os.Stat("/run/netns/" + live); err != nil {
		t.Errorf("namespace %s of this live process was removed: %v", live, err)
	}
}

func TestLabPID(t *testing.T) {
	tests := []struct {
		name   string
		pid    int
		parsed bool
	}{
		{"spk-4242-1-client", 4242, true},
		{"spk-7-12-br", 7, true},
		{"spkdemo-client", 0, false},
		{"spk-x-1-lb", 0, false},
		{"other", 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s is parsed as a lab name: %v", tt.name, tt.parsed), func(t *testing.T) {
			pid, ok := labPID(tt.name)
			if ok != tt.parsed || pid != tt.pid {
				t.Errorf("labPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.parsed)
			}
		})
	}
}

func mustNamedNamespace(tb testing.TB, name string) {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		lockThreadToDie()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
}

func mustExitSoon(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		// Gone, or a zombie waiting to be reaped: either way it has exited.
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			tb.Errorf("process %d still running after lab teardown: %s", pid, b)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustEnterSoon waits until process pid is inside h's network namespace.
func mustEnterSoon(tb testing.TB, pid int, h *Host) {
	tb.Helper()
	want := mustNetnsInode(tb, h.Path())
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) == nil && st.Ino == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("process %d did not enter %s", pid, h.NS)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustNetnsInode(tb testing.TB, path string) uint64 {
	tb.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		tb.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func mustAddrs(tb testing.TB, h *Host) map[netip.Addr]bool {
	tb.Helper()
	var got map[netip.Addr]bool
	err := h.Do(func() error {
		l, err := netlink.LinkByIndex(h.Index)
		if err != nil {
			return err
		}
		got, err = linkAddrs(l)
		return err
	})
	if err != nil {
		tb.Fatalf("%s: list addresses: %v", h, err)
	}
	return got
}

func linkAddrs(l netlink.Link) (map[netip.Addr]bool, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	got := map[netip.Addr]bool{}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		got[ip.Unmap()] = true
	}
	return got, nil
}

// mustEcho sends a UDP datagram from host from to addr on host to and waits
// for it to be echoed back, proving the path both ways.
func mustEcho(tb testing.TB, from, to *Host, addr netip.Addr) {
	tb.Helper()
	var srv *net.UDPConn
	if err := to.Do(func() error {
		var err error
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		tb.Fatalf("listen on %s in %s: %v", addr, to, err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		n, peer, err := srv.ReadFromUDPAddrPort(buf)
		if err == nil {
			_, _ = srv.WriteToUDPAddrPort(buf[:n], peer)
		}
	}()
	var c *net.UDPConn
	if err := from.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		tb.Fatalf("dial %s from %s: %v", srv.LocalAddr(), from, err)
	}
	defer c.Close()
	msg := []byte("hello from " + from.Name)
	if _, err := c.Write(msg); err != nil {
		tb.Fatalf("%s → %s: %v", from, addr, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		tb.Fatalf("%s → %s: echo %q, %v; want %q", from, addr, buf[:n], err, msg)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}
