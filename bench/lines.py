"""What every bench shares: the one line it prints per target, and the text its prompts are cut from.

Each target prints exactly ``bench <name>: <value> (target <op> <threshold>) PASS`` (or ``FAIL``), the value
a ratio (or a count) measured in the same run as its baseline."""

from __future__ import annotations

TEXT = (
    "In the beginning the universe was created. This has made a lot of people very angry and been widely "
    "regarded as a bad move. Many were increasingly of the opinion that they'd all made a big mistake in "
    "coming down from the trees in the first place, and some said that even the trees had been a bad move."
)


def passes(value: float, op: str, threshold: float) -> bool:
    if op not in (">=", "<="):
        raise ValueError(f"a bench target is >= or <=, not {op!r}")
    return value >= threshold if op == ">=" else value <= threshold


def line(name: str, value: float, op: str, threshold: float, digits: int = 3) -> str:
    verdict = "PASS" if passes(value, op, threshold) else "FAIL"
    return f"bench {name}: {value:.{digits}f} (target {op} {threshold:g}) {verdict}"


def report(name: str, value: float, op: str, threshold: float, digits: int = 3) -> bool:
    """Prints the target's line (flushed: benches run for minutes) and says whether it passed."""
    print(line(name, value, op, threshold, digits), flush=True)
    return passes(value, op, threshold)
