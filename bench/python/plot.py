"""Plot the echo matrix: user-space instructions per request (callgrind) and
server CPU per request (timed rounds) per server and message size, from the
echo.json that bench_echo_matrix --out writes.

    python plot.py echo.json echo.png

Both panels are log-scaled (the cells span three orders of magnitude); a
cell without a figure (not measured in that run) is left out of its panel.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(size):
    size = int(size)
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def panel(ax, cells, sizes, key, title, unit):
    width = 0.8 / max(len(sizes), 1)
    names = [c["cell"] for c in cells]
    for k, size in enumerate(sizes):
        xs, ys = [], []
        for i, c in enumerate(cells):
            v = c["sizes"].get(str(size), {}).get(key)
            if v is not None:
                xs.append(i + (k - (len(sizes) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=label(size))
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py echo.json echo.png")
    with open(sys.argv[1]) as f:
        data = json.load(f)
    sizes = data["sizes"]
    cells = data["cells"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 10))
    panel(
        top,
        cells,
        sizes,
        "instructions_per_req",
        "user-space instructions per request (callgrind, one connection, exact)",
        "instructions / request",
    )
    rounds = data.get("rounds", 0)
    panel(
        bottom,
        cells,
        sizes,
        "cpu_us_per_req",
        f"server CPU per request (median of {rounds} interleaved rounds, "
        f"{data.get('connections')} connections, server and client on their own core)",
        "µs / request",
    )
    fig.suptitle("oneloop echo matrix: floor, oneloop, hosts, uvloop, CPython asyncio")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)
    print(f"plot.py: wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
