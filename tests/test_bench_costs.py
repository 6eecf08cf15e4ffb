"""The cost-per-job benchmark's own arithmetic (benchmarks/bench_costs.py), without a server."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.bench_costs import Cost, render, server_cpu_us


def test_server_cpu_counts_a_process_tree_and_its_reaped_children() -> None:
    """The server's CPU is read as a process tree: the parent, its live children and, once reaped,
    their CPU folded into the parent's cutime/cstime. A child that burns CPU and exits must show up."""
    before = server_cpu_us(os.getpid())
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    after = server_cpu_us(os.getpid())
    assert after - before >= 50_000  # the child's ~0.1 s or more, at the kernel's tick resolution


def test_render_prints_one_row_per_phase() -> None:
    costs = [Cost("enqueue", 2000, 1.0, 1.0, 1.0, 115.4, 107.0, 421.0),
             Cost("drain", 10000, 2.0, 0.006, 0.006, 23.0, 46.0, 988.0)]
    lines = render(costs).splitlines()
    assert lines[1].split(" | ")[0].strip() == "phase"
    assert [line.split(" | ")[0].strip() for line in lines[3:]] == ["enqueue", "drain"]
    assert lines[3].split(" | ")[4].strip() == "115"
    assert lines[4].split(" | ")[2].strip() == "0.006"
