"""Run records, their HTML report, the leaderboard and the terminal table.

``kdbench.report.load_runs(dir)`` reads every run record under a reports folder into a pandas
DataFrame, one row per (run, task, role, metric), with comparability flags.
"""


def __getattr__(name):
    # pandas is imported only when the loader is used
    if name in ("load_runs", "ComparabilityWarning"):
        from kdbench.report import runs

        return getattr(runs, name)
    raise AttributeError(name)


__all__ = ["ComparabilityWarning", "load_runs"]
