"""The digest's chart: tasks succeeded and failed per day over the last week, as a PNG.

matplotlib is imported when a chart is drawn, not with this module: importing it
takes a noticeable part of a second and most processes never draw. The figure is a
plain :class:`matplotlib.figure.Figure` on the Agg canvas (headless, no pyplot and no
global figure state), so charts drawn from several threads never share anything.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from memory.digest_facts import DayCount

WIDTH_PX = 800
HEIGHT_PX = 400
DPI = 100
SUCCEEDED_COLOR = "#2e7d32"
FAILED_COLOR = "#c62828"


def week_chart(days: Sequence[DayCount], title: str = "Tasks, last 7 days") -> bytes:
    """A PNG (800x400) of stacked bars: succeeded below, failed on top, one bar a day.

    Args:
        days: one count per day, oldest first (``memory.reports.read_week`` gives 7).
        title: the chart's heading.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [day.day.strftime("%a %d") for day in days]
    succeeded = [day.succeeded for day in days]
    failed = [day.failed for day in days]
    positions = list(range(len(days)))
    axes.bar(positions, succeeded, width=0.6, color=SUCCEEDED_COLOR, label="succeeded")
    axes.bar(positions, failed, width=0.6, bottom=succeeded, color=FAILED_COLOR, label="failed")
    for x, (ok, bad) in enumerate(zip(succeeded, failed, strict=True)):
        if ok + bad:
            axes.annotate(
                f"{ok + bad}" if not bad else f"{ok + bad} ({bad} failed)",
                (x, ok + bad),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=9,
            )
    axes.set_xticks(positions, labels)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max([s + f for s, f in zip(succeeded, failed, strict=True)] + [1]) * 1.12)
    axes.set_title(title, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    # Above the plot, right of the title: never on top of a tall bar.
    axes.legend(loc="lower right", bbox_to_anchor=(1, 1), frameon=False, ncols=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    # Fixed metadata: the same counts always give the same bytes.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
