#!/usr/bin/python3
"""Draw docs/peers.png from BenchmarkPeers' figures.

    SPOOKY_PEER_OUT=/tmp/peers.json go test ./l7/ -run '^$' -bench BenchmarkPeers -benchtime 1x
    /usr/bin/python3 scripts/plot-peers.py /tmp/peers.json docs/peers.png

Needs python3-matplotlib (apt-get install python3-matplotlib; Debian's
python3, hence /usr/bin/python3). Left: requests/s against concurrent
streams; right: p99 latency. One line per server: spooky, Caddy and the
plain quic-go HTTP/3 server (the floor: it answers without proxying).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
with open(src) as f:
    data = json.load(f)

style = {
    "spooky": ("#d35400", "o", "spooky → HTTP/1.1 upstream"),
    "caddy": ("#2471a3", "s", "Caddy reverse_proxy → HTTP/1.1 upstream"),
    "plain": ("#7f8c8d", "^", "plain quic-go HTTP/3 server (no proxy)"),
}
series = {}
for fig in data["figures"]:
    s = series.setdefault(fig["Server"], {"x": [], "rps": [], "p99": []})
    s["x"].append(fig["Conns"] * fig["Streams"])
    s["rps"].append(fig["RPS"])
    s["p99"].append(fig["P99us"] / 1000)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
for name, s in series.items():
    color, marker, label = style.get(name, ("black", "x", name))
    order = sorted(range(len(s["x"])), key=lambda i: s["x"][i])
    xs = [s["x"][i] for i in order]
    ax1.plot(xs, [s["rps"][i] for i in order], marker=marker, color=color, label=label)
    ax2.plot(xs, [s["p99"][i] for i in order], marker=marker, color=color, label=label)
for ax in (ax1, ax2):
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 4, 16, 64])
    ax.set_xticklabels(["1", "4", "16", "64\n(4 conn × 16)"])
    ax.set_xlabel("concurrent streams")
    ax.grid(True, which="both", alpha=0.3)
ax1.set_ylabel("requests/s")
ax1.set_ylim(bottom=0)
ax1.set_title("Throughput (higher is better)")
ax2.set_ylabel("p99 latency (ms)")
ax2.set_ylim(bottom=0)
ax2.set_title("p99 latency (lower is better)")
ax2.legend(loc="upper left", fontsize=8)
fig.suptitle(
    "HTTP/3 clients, 1 KiB responses; server + upstream pinned to one core, load generator on the other "
    f"(medians of {data['rounds']} rounds × {data['duration']})",
    fontsize=9,
)
fig.tight_layout()
fig.savefig(dst, dpi=110)
