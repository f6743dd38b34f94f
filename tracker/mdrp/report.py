"""The replay report: a Markdown table per instance and per family, and PNG plots."""
from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from tracker.mdrp.metrics import Metrics, mean

# Reyes et al. 2018, averages over the per-instance means of all 240 instances.
PUBLISHED = {"undelivered_pct": 0.25, "ctd_mean": 32.74, "ctd_p90": 49.3, "overage_mean": 2.77,
             "r2p_mean": 1.93, "cost_per_order": 11.42, "orders_per_bundle": 1.09}
COLUMNS = [
    ("undelivered_pct", "undelivered %", 2), ("ctd_mean", "CTD mean", 2), ("ctd_p90", "CTD p90", 1),
    ("over_40_pct", ">40 %", 1), ("over_90_pct", ">90 %", 2), ("r2p_mean", "R2P mean", 2),
    ("r2p_p90", "R2P p90", 1), ("overage_mean", "overage", 2), ("orders_per_bundle", "orders/bundle", 2),
    ("utilisation_pct", "util %", 1), ("cost_per_order", "$/order", 2), ("lower_bound_ctd", "CTD bound", 2),
]
NAME = re.compile(r"([0-9]+)(o[0-9]+|r[0-9]+)(t[0-9]+)(s[0-9]+)(p[0-9]+)")


def families(name: str) -> dict[str, str]:
    """The instance's family along each axis (size, travel, schedule, prep)."""
    m = NAME.fullmatch(name)
    if not m:
        return {}
    return {"size": m.group(2), "travel": m.group(3), "schedule": m.group(4), "prep": m.group(5)}


def _row(label: str, values: dict[str, float], extra: str = "") -> str:
    cells = ["–" if math.isnan(values[key]) else f"{values[key]:.{digits}f}" for key, _, digits in COLUMNS]
    return f"| {label}{extra} | " + " | ".join(cells) + " |"


def _header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|"]


def _average(items: list[Metrics]) -> dict[str, float]:
    """Each figure's mean over the instances that have it (NaN: none has)."""
    return {key: mean([v for v in (getattr(m, key) for m in items) if not math.isnan(v)]) for key, _, _ in COLUMNS}


def summary_table(results: list[tuple[str, Metrics]]) -> str:
    """Overall averages beside the published algorithm's, and which instances had no deliveries."""
    overall = _average([m for _, m in results])
    lines = _header("")
    lines.append(_row(f"tracker ({len(results)} instance{'' if len(results) == 1 else 's'})", overall))
    published = {key: PUBLISHED.get(key, float("nan")) for key, _, _ in COLUMNS}
    lines.append(_row("Reyes et al. 2018 (240 instances)", published))
    empty = sorted(name for name, m in results if m.delivered == 0)
    if empty:
        lines += ["", f"{len(empty)} of {len(results)} instances had no deliveries ({', '.join(empty)}): "
                      "the averages of per-delivery figures are over the other instances"]
    return "\n".join(lines)


def write_report(results: list[tuple[str, Metrics]], out_dir: str | Path) -> Path:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = sorted(results)
    md = ["# MDRP replay report", "", "## Overall (mean of per-instance figures)", "", summary_table(results), "",
          "CTD bound: the mean click-to-door of the same delivered orders had a courier already waited at "
          "each restaurant (pickup at the later of ready and placement plus half the service), below "
          "which no plan can go.", ""]
    for axis in ("size", "travel", "schedule", "prep"):
        groups: dict[str, list[Metrics]] = defaultdict(list)
        for name, m in results:
            if families(name):
                groups[families(name)[axis]].append(m)
        if not groups:  # (no instance named as mdrplib's are: no family to group by)
            continue
        md += [f"## By {axis}", "", *_header(axis)]
        md += [_row(key, _average(items), f" ({len(items)})") for key, items in sorted(groups.items())]
        md.append("")
    md += ["## Per instance", "", *_header("instance")]
    md += [_row(name, m.as_dict()) for name, m in results]
    md += ["", "![click-to-door](ctd.png) ![orders per bundle](bundles.png) ![utilisation](utilisation.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    _plots(results, out)
    return path


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _plots(results: list[tuple[str, Metrics]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, _ in results]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.hist(_finite(m.ctd_mean for _, m in results), bins=30, color="#2b6cb0", alpha=0.8, label="mean click-to-door")
    ax.hist(_finite(m.lower_bound_ctd for _, m in results), bins=30, color="#a0aec0", alpha=0.6, label="lower bound")
    ax.axvline(PUBLISHED["ctd_mean"], color="#c53030", linestyle="--", label="Reyes et al. mean")
    ax.set_xlabel("minutes (per instance)")
    ax.set_ylabel("instances")
    ax.set_title("Click-to-door per instance")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ctd.png", dpi=110)
    plt.close(fig)
    for key, title, file in (("orders_per_bundle", "Orders per bundle", "bundles.png"),
                             ("utilisation_pct", "Courier utilisation (%)", "utilisation.png")):
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.bar(range(len(names)), [0.0 if math.isnan(getattr(m, key)) else getattr(m, key) for _, m in results],
               color="#2f855a")
        ax.set_title(f"{title} per instance")
        ax.set_xlabel("instance (sorted by name)")
        fig.tight_layout()
        fig.savefig(out / file, dpi=110)
        plt.close(fig)
