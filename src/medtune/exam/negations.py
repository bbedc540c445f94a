"""What an answer statement rules out ("c, not a", "a is incorrect", "aではない"), read in linear time.

Three forms, dropped from the statement in this order (each leaves a space where it stood):

1. a subject and its verdict: "<target> is not correct / is wrong / are ruled out ...";
2. "not <target>", up to "but" / "rather" or the end of its clause: "not a, but c";
3. a Japanese subject and its verdict: "<target>ではない / は誤り / は不正解 ...".

A target never crosses a clause mark (`,`, `、`, `;`, `.`, `。`, a line break; `.` does not end a
Japanese clause). Written as lazy regular expressions these forms are tried from every position of a
clause and each try runs to the clause's end, so a long clause without its verdict costs time
quadratic in its length (a 32k-character looping answer took 56 s). Here every form finds its
anchor (the verdict, or the word "not") with one forward search and takes the target from the clause
boundaries around it, which reads the same pieces as the regular expressions did: tests compare the
two on many short statements.
"""

from __future__ import annotations

import re

_EN_CLAUSE_MARKS = ",、;.。\n"
_JA_CLAUSE_MARKS = ",、;。\n"
_EN_VERDICT = (
    r"\s+(?:is|are)\s+(?:not\s+(?:the\s+)?(?:correct|right|answer|true|likely)"
    r"|incorrect|wrong|false|unlikely|excluded|ruled\s+out)\b"
)
_JA_VERDICT = r"(?:ではない|ではありません|じゃない|ではなく|でない|は誤り|は間違い|は不正解|は違う|は正しくない)"
# "not", then the optional words the target may not start with; each part is kept apart so that a
# clause left empty can give back a space or a word, as a regular expression backtracks.
_NOT_RE = re.compile(r"\bnot(\s+)(?:(the)(\s+))?(?:(option|choice)(\s+))?", re.I)
_BUT_RE = re.compile(r"\b(?:but|rather)\b", re.I)
# After the target, spaces (line breaks too) and one comma may stand before "but": "not a,\nbut c".
_THEN_BUT_RE = re.compile(r"\s*(?:,\s*)?\b(?:but|rather)\b", re.I)


class _Clauses:
    """Where the clauses of a text end. Positions are asked for in (mostly) increasing order, so the
    end last found answers every later position before it: a clause is searched through once."""

    def __init__(self, text: str, marks: str):
        escaped = re.escape(marks)
        self.text, self.marks, self.not_marks = text, re.compile(f"[{escaped}]"), re.compile(f"[^{escaped}]")
        self.asked, self.found = len(text) + 1, len(text)  # text[asked:found] holds no clause mark

    def start_from(self, position: int) -> int:
        """The first position at or after `position` that is no clause mark (len(text) if none)."""
        found = self.not_marks.search(self.text, position)
        return found.start() if found else len(self.text)

    def end_from(self, position: int) -> int:
        """The first clause mark at or after `position` (len(text) if none)."""
        if not self.asked <= position <= self.found:
            found = self.marks.search(self.text, position)
            self.asked, self.found = position, found.start() if found else len(self.text)
        return self.found


def _drop_subject_form(text: str, verdict: str, marks: str) -> tuple[str, list[str]]:
    """Forms 1 and 3: every "<target><verdict>" with its target inside one clause, leftmost first."""
    anywhere = re.compile(verdict, re.I)
    # A verdict that opens with whitespace is searched from the start of a run of whitespace only:
    # a search from every position inside a long run would read the run again each time.
    opens_with_space = verdict.startswith(r"\s+")
    at_run_start = re.compile(rf"(?<!\s){verdict}", re.I) if opens_with_space else anywhere
    clauses = _Clauses(text, marks)
    kept: list[str] = []
    targets: list[str] = []
    done = 0  # text[:done] is settled
    position = 0
    cached: re.Match | None = None  # the leftmost run-start verdict at or after some earlier position
    while True:
        start = clauses.start_from(position)
        if start >= len(text):
            break
        end = clauses.end_from(start)
        inside_run = opens_with_space and start + 1 < len(text) and text[start + 1].isspace()
        found = anywhere.match(text, start + 1) if inside_run else None
        if found is None:
            if cached is None or cached.start() < start + 1:
                cached = at_run_start.search(text, start + 1)
            found = cached
        if found is None:
            break
        if found.start() > end:  # no verdict in this clause: on to the next one
            position = end + 1
            continue
        kept.append(text[done:start] + " ")
        targets.append(text[start : found.start()].strip())
        done = position = found.end()
        cached = None
    kept.append(text[done:])
    return "".join(kept), targets


def _not_form_end(text: str, target_start: int, clause_end: int) -> tuple[int, int]:
    """(end of the target, end of the match) of "not <target>" whose target starts at `target_start`."""
    but = _BUT_RE.search(text, target_start + 1, clause_end)
    if but is not None:  # "not a but c": the target ends where the space before "but" starts
        before = text[target_start + 1 : but.start()]
        return but.start() - (len(before) - len(before.rstrip())), but.end()
    target_end = target_start + 1 + len(text[target_start + 1 : clause_end].rstrip())
    then_but = _THEN_BUT_RE.match(text, target_end)
    return target_end, then_but.end() if then_but else target_end


def _not_target_start(text: str, found: re.Match, clause_end: int) -> int | None:
    """Where the target after "not ..." starts: after the words `_NOT_RE` took, or, when they leave
    the clause empty, where a regular expression would backtrack to (the last space of the last run
    that is no line break, or the last optional word); None when nothing is left for a target."""
    if found.end() < clause_end:
        return found.end()
    for word, spaces in ((4, 5), (2, 3), (None, 1)):
        if found.group(spaces) is None:
            continue
        run_start, run_end = found.span(spaces)
        for position in range(run_end - 1, run_start, -1):
            if text[position] not in _EN_CLAUSE_MARKS:
                return position
        return found.start(word) if word is not None else None
    return None


def _drop_not_form(text: str) -> tuple[str, list[str]]:
    """Form 2: every "not <target>" (to "but" / "rather" or the clause's end), leftmost first."""
    clauses = _Clauses(text, _EN_CLAUSE_MARKS)
    kept: list[str] = []
    targets: list[str] = []
    done = 0
    position = 0
    while True:
        found = _NOT_RE.search(text, position)
        if found is None:
            break
        clause_end = clauses.end_from(found.end())
        target_start = _not_target_start(text, found, clause_end)
        if target_start is None:
            position = found.start() + 1
            continue
        clause_end = clauses.end_from(target_start)
        target_end, match_end = _not_form_end(text, target_start, clause_end)
        kept.append(text[done : found.start()] + " ")
        targets.append(text[target_start:target_end].strip())
        done = position = match_end
    kept.append(text[done:])
    return "".join(kept), targets


def drop_negations(text: str) -> tuple[str, list[str]]:
    """`text` without what it rules out ("c, not a" -> "c,  "), and the ruled-out pieces, in the order read."""
    text, subjects = _drop_subject_form(text, _EN_VERDICT, _EN_CLAUSE_MARKS)
    text, nots = _drop_not_form(text)
    text, japanese = _drop_subject_form(text, _JA_VERDICT, _JA_CLAUSE_MARKS)
    return text, subjects + nots + japanese
