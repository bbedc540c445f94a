"""Read the two scores out of a judge's free text; what cannot be read is a reason, never an exception.

Tried in order; the first rule that reads a pair decides:

1. the first line is just the pair: `8 6`, `8, 6`, `8/10 6/10`, `Scores: 7.5 9`;
2. each assistant labelled: `Assistant 1: 8/10 ... Assistant 2: 6/10`, `Trợ lý 1 được 8 điểm`,
   `アシスタント1：8点`;
3. a named pair anywhere: `Score: 7 and 9`, `Điểm: 7 và 9`, `スコア：7、9`;
4. the first line holds exactly two numbers once labels and "/10" are set aside: `Tôi cho 8 và 6`.

A judgment longer than any generator writes within its tokens (`medtune.llm.response_limit`) is
read up to that length only: `cut_chars` says how much was left unread. Every rule reads in time
linear in the text's length.

Text is NFKC-normalised first, so full-width digits and colons read as ASCII. A comma separates
two scores ("8,6" is 8 and 6); decimals use a point. A pair with a score outside the scale is
rejected (unparsable), and the reason says which score.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from medtune.llm.response_limit import DEFAULT_MAX_CHARS, cut_to

MAX_SCORE = 10.0

NUMBER = r"(\d{1,3}(?:\.\d+)?)"
OUT_OF = r"(?:\s*/\s*10(?:\.0+)?(?!\d)|\s*(?:out of|trên|trong)\s*10(?!\d)|\s*(?:điểm|点|points?|pts)\b)?"
SCORE = NUMBER + OUT_OF
SEPARATOR = r"(?:\s*(?:,|;|、|/|&|\||-|–|and|và|vs\.?|と)\s*|\s+)"
LABEL = r"(?:assistant|trợ\s*l[ýí]|tro\s*ly|アシスタント|助手)\s*(?:#\s*)?"
SCORE_WORD = r"(?:scores?|điểm(?:\s*số)?|diem|スコア|得点|点数|評価)"
SCALE = r"/\s*10(?!\d)|(?:out of|trên)\s*10(?!\d)|(?:scale of|thang)\s*1\s*(?:-|–|to|đến)\s*10"
CI = re.IGNORECASE

# No two runs of whitespace meet without a mark between them: a regular expression would try every
# way of splitting a long run between the two, which takes time quadratic in its length.
FIRST_LINE_PAIR = re.compile(rf"^\s*(?:{SCORE_WORD}\s*(?:[:=]\s*)?)?{SCORE}{SEPARATOR}{SCORE}\s*(?:[.。]\s*)?$", CI)
LABELLED = re.compile(rf"{LABEL}([12])(?!\d)(?P<gap>[^\d\n]{{0,40}}?){SCORE}", CI)
NAMED_PAIR = re.compile(rf"{SCORE_WORD}\s*(?:(?:là|are|is|were|は)\s*)?(?:[:=]\s*)?{SCORE}{SEPARATOR}{SCORE}", CI)
LABEL_TOKEN = re.compile(rf"{LABEL}[12](?!\d)", CI)
SCALE_TOKEN = re.compile(SCALE, CI)
ANY_NUMBER = re.compile(NUMBER)
CONJUNCTION_GAP = re.compile(r"^\s*(?:and|và|&|,|、|と|or|hoặc|vs\.?)\s*$", CI)
LABEL_WORD = re.compile(LABEL, CI)


@dataclass(frozen=True)
class ParsedScores:
    """Assistant 1's and Assistant 2's scores, or the reason there are none."""

    score_1: float | None = None
    score_2: float | None = None
    how: str = ""  # which rule read them: first_line, labelled, named_pair, two_numbers
    reason: str = ""  # why nothing was read (empty when scores were read)
    cut_chars: int = 0  # characters past the read limit, left unread (0: the whole judgment was read)

    @property
    def ok(self) -> bool:
        return self.score_1 is not None and self.score_2 is not None


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    return re.sub(r"[*_`#>]+", "", text)  # markdown emphasis and headings around the scores


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def labelled_pair(text: str) -> tuple[str, str] | None:
    found: dict[str, str] = {}
    for match in LABELLED.finditer(text):
        gap = match.group("gap")
        # "Assistant 1 and 2: ..." lists labels; "Assistant 1's answer ... Assistant 2" reaches the next label.
        if CONJUNCTION_GAP.match(gap) or LABEL_WORD.search(gap):
            continue
        found.setdefault(match.group(1), match.group(3))
    return (found["1"], found["2"]) if "1" in found and "2" in found else None


def two_numbers_on_first_line(text: str) -> tuple[str, str] | None:
    line = SCALE_TOKEN.sub(" ", LABEL_TOKEN.sub(" ", first_line(text)))
    numbers = ANY_NUMBER.findall(line)
    return (numbers[0], numbers[1]) if len(numbers) == 2 else None


def candidates(text: str):
    match = FIRST_LINE_PAIR.match(first_line(text))
    if match:
        yield "first_line", (match.group(1), match.group(2))
    pair = labelled_pair(text)
    if pair:
        yield "labelled", pair
    match = NAMED_PAIR.search(text)
    if match:
        yield "named_pair", (match.group(1), match.group(2))
    pair = two_numbers_on_first_line(text)
    if pair:
        yield "two_numbers", pair


def parse_scores(
    text: str, min_score: float = 1.0, max_score: float = MAX_SCORE, max_chars: int = DEFAULT_MAX_CHARS
) -> ParsedScores:
    """The pair the first matching rule reads in `text` (its first `max_chars` characters); else a
    ParsedScores whose `reason` says why not."""
    read, cut = cut_to(text or "", max_chars)
    cut_chars = cut.chars - cut.kept if cut else 0
    unread = f" (in its first {max_chars:,} of {cut.chars:,} characters; the rest was not read)" if cut else ""
    clean = normalise(read)
    if not clean.strip():
        return ParsedScores(reason="empty judgment", cut_chars=cut_chars)
    for how, (first, second) in candidates(clean):
        values = (float(first), float(second))
        outside = [v for v in values if not min_score <= v <= max_score]
        if outside:  # the judge did answer, off the scale: a later, vaguer rule must not overrule it
            return ParsedScores(
                reason=f"score {outside[0]:g} is outside the scale {min_score:g}-{max_score:g} (read by rule {how})",
                cut_chars=cut_chars,
            )
        return ParsedScores(values[0], values[1], how=how, cut_chars=cut_chars)
    return ParsedScores(reason=f"no pair of scores found{unread}", cut_chars=cut_chars)
