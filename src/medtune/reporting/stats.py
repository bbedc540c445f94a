"""Paired comparison of two systems on one exam: a 2x2 correctness contingency and an exact McNemar test.

This is the paper's Table 3 (per-question agreement between two systems) plus the significance test
the paper leaves out. Only the standard library is used, so the module imports instantly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from math import comb

CORRECT = "correct"


@dataclass(frozen=True)
class Contingency:
    """Counts of questions by (A correct?, B correct?); "wrong" means anything but correct."""

    both_correct: int
    a_only: int  # A correct, B not: McNemar's b
    b_only: int  # B correct, A not: McNemar's c
    neither: int

    @property
    def n(self) -> int:
        return self.both_correct + self.a_only + self.b_only + self.neither

    @property
    def discordant(self) -> tuple[int, int]:
        return self.a_only, self.b_only

    def p_value(self) -> float:
        """Exact two-sided McNemar p on the discordant pairs."""
        return mcnemar_exact(self.a_only, self.b_only)

    def to_markdown(self, a_name: str = "A", b_name: str = "B") -> str:
        """Rows are system A, columns system B, laid out like the paper's Table 3."""
        a, b = _md_escape(a_name), _md_escape(b_name)
        return (
            "\n".join(
                [
                    f"| | {b} correct | {b} wrong |",
                    "|---|---:|---:|",
                    f"| **{a} correct** | {self.both_correct} | {self.a_only} |",
                    f"| **{a} wrong** | {self.b_only} | {self.neither} |",
                ]
            )
            + "\n"
        )


def contingency(a_status: Mapping[str, str], b_status: Mapping[str, str]) -> Contingency:
    """Tally question id -> status maps over the ids both systems have; others cannot be paired."""
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for qid in a_status.keys() & b_status.keys():
        counts[(a_status[qid] == CORRECT, b_status[qid] == CORRECT)] += 1
    return Contingency(
        both_correct=counts[(True, True)],
        a_only=counts[(True, False)],
        b_only=counts[(False, True)],
        neither=counts[(False, False)],
    )


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1.

    The tail is summed as an exact fraction because 2 ** (b + c) overflows a float long before
    the exam sizes we see (hundreds of discordant questions); only the final ratio is rounded.
    """
    for value in (b, c):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"McNemar counts must be non-negative integers, got b={b!r}, c={c!r}")
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(comb(n, i) for i in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def format_p(p: float) -> str:
    """Four significant digits: enough to compare with a threshold, short enough for a table."""
    return f"{p:.4g}"


def _md_escape(text: str) -> str:
    # A "|" inside a cell would split the Markdown table row.
    return str(text).replace("|", "\\|")
