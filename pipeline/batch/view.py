"""Batch progress: a live rich bar on a terminal (done, cached, failed, running, ETA), plain lines in CI logs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BatchProgress:
    """Receives batch events and shows them."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.counts = {"done": 0, "cached": 0, "failed": 0}
        self.running: set[str] = set()
        self.total = 0
        self.live = console.is_terminal and not quiet
        self.bar = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
            )
            if self.live
            else None
        )

    def __enter__(self):
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("batch", total=None)
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()

    def event(self, kind: str, info: dict) -> None:
        """'planned' {jobs, to_run}, 'start' and 'done' (a job's entry of batch.json)."""
        if kind == "planned":
            self.total = info["jobs"]
        elif kind == "start":
            self.running.add(info["job"])
        elif kind == "done":
            self.running.discard(info["job"])
            self.counts[info["status"]] = self.counts.get(info["status"], 0) + 1
            if not self.live and not self.quiet:
                finished = sum(self.counts.values())
                reason = f": {info['error']}" if info["status"] == "failed" else ""
                self.console.print(
                    f"[{finished}/{self.total or '?'}] {info['job']} {info['status']}"
                    f" in {info.get('seconds', 0):.1f} s{reason}",
                    highlight=False,
                )
        if self.bar:
            c = self.counts
            self.bar.update(
                self.task,
                total=self.total or None,
                completed=sum(c.values()),
                description=f"done {c['done']}, cached {c['cached']}, failed {c['failed']}, "
                f"running {len(self.running)}",
            )

    def finish(self, result) -> None:
        """The closing lines: counts, failures with reasons, where the summaries are."""
        c = self.counts
        self.console.print(
            f"{len(result.outcomes)} jobs: {c['done']} run, {c['cached']} cached, {c['failed']} failed; "
            f"summary: {result.out / 'summary.md'}",
            highlight=False,
        )
        for o in result.failed:
            self.console.print(f"failed: {o['job']} ({o['model']}): {o['error']}", highlight=False)
        for w in result.workers:
            self.console.print(
                f"worker {w['pid']}: {w['jobs']} jobs, peak RSS {w['peak_rss_mb']:.0f} MB", highlight=False
            )
