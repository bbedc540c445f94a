"""JSON over HTTP for OpenAI-compatible servers: one POST, retried with backoff (standard library only).

medtune's one HTTP client: every endpoint access (`medtune.llm.endpoint`: an exam's
`EndpointBackend`, a judge's or QA generator's `EndpointGenerator`) posts through it. Connection errors, timeouts, 429 and 5xx answers are retried, waiting
`backoff_s`, then twice as long each time (capped), or what a `Retry-After` asks (capped too, and
said on the console); any other 4xx is final (a bad request or a bad key does not get better).
Keys come from the environment only, and never appear in a message (`medtune.secrets.mask`).

Every attempt has a deadline for the whole exchange (connect, headers and body): a server that
trickles its answer a byte at a time is cut off when `timeout_s` is over, not only when one read
waits that long. An answer body is read in chunks and given up past `max_body_bytes`.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable, Optional, TypeVar

from medtune.llm.http_deadline import Deadline, opener
from medtune.secrets import mask, register

T = TypeVar("T")
DETAIL_CHARS = 300  # how much of an error body a message quotes
QUOTE_CHARS = 200  # how much of a 200 answer that is not OpenAI-shaped a message quotes
MAX_BODY_BYTES = 32 * 2**20  # no answer of an OpenAI-compatible server is this long
MAX_ERROR_BODY_BYTES = 64 * 2**10  # an error body is read only this far (a message quotes its start)
CHUNK_BYTES = 64 * 2**10


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2  # retries after the first attempt
    backoff_s: float = 1.0  # the first wait; doubles after every retry
    max_backoff_s: float = 60.0  # no wait is longer, a server's Retry-After included

    def delay(self, retry: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number `retry` (1, 2, ...)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff_s)
        return min(self.backoff_s * 2.0 ** (retry - 1), self.max_backoff_s)


# What went wrong, for the caller's advice: each kind has its own fix.
TIMEOUT, CONNECTION, TOO_LARGE, NOT_OPENAI, RATE_LIMITED, REFUSED, SERVER_ERROR, CANCELLED = (
    "timeout",
    "connection",
    "too_large",
    "not_openai",
    "rate_limited",
    "refused",
    "server_error",
    "cancelled",
)


class RequestFailed(Exception):
    """The last attempt's problem, once retrying is over (callers turn it into their own message)."""

    def __init__(
        self,
        problem: str,
        attempts: int,
        status: Optional[int] = None,
        cancelled: bool = False,
        kind: str = "",
    ):
        problem = mask(problem)
        super().__init__(problem)
        self.problem, self.attempts, self.status = problem, attempts, status
        self.cancelled = cancelled  # given up because another request failed, not for its own sake
        self.kind = kind or (CANCELLED if cancelled else kind_of_status(status))


def kind_of_status(status: Optional[int]) -> str:
    if status is None:
        return CONNECTION
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return SERVER_ERROR
    if status >= 400:
        return REFUSED
    return NOT_OPENAI


def quote(body: bytes, chars: int = QUOTE_CHARS) -> str:
    """The start of a body as a message quotes it: one line, masked, cut to `chars` characters."""
    text = mask(body[: 64 * chars].decode("utf-8", "replace"))  # masked before the cut below
    text = " ".join(text.split())
    return repr(text[:chars] + ("…" if len(text) > chars else ""))


class BodyTooLarge(Exception):
    pass


def read_body(response, limit: int) -> bytes:
    """The body, read a chunk at a time; BodyTooLarge as soon as it is longer than `limit` bytes."""
    length = response.headers.get("Content-Length") if response.headers else None
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(int(length))
    chunks, size = [], 0
    while True:
        chunk = response.read(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)


def read_error_body(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read(MAX_ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException, ValueError):
        return error.reason or ""
    finally:
        error.close()
    text = mask(body.decode("utf-8", "replace"))  # masked whole, before any cut can split a key
    return text[:DETAIL_CHARS]


def retry_after_seconds(error: urllib.error.HTTPError) -> Optional[float]:
    """A Retry-After header in seconds: a number, or an HTTP date (None when absent or unreadable)."""
    value = error.headers.get("Retry-After") if error.headers else None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def say(message: str) -> None:
    print(f"medtune: {mask(message)}", file=sys.stderr, flush=True)


def post_json(
    url: str,
    body: dict[str, Any],
    read: Callable[[Any], T],
    *,
    key: Optional[str] = None,
    timeout_s: float = 120.0,
    retry: RetryPolicy = RetryPolicy(),
    cancel: Optional[threading.Event] = None,
    what: str = "an OpenAI-style answer",
    max_body_bytes: Optional[int] = None,
    notify: Callable[[str], None] = say,
) -> T:
    """POST `body` as JSON to `url` and return `read(<the JSON answer>)`.

    Each attempt must be over, body and all, within `timeout_s` seconds, and its body within
    `max_body_bytes` (default MAX_BODY_BYTES). `read` raising KeyError, IndexError, TypeError or
    ValueError means the answer has the wrong shape (`what` names the expected one in the message),
    which no retry mends.
    Setting `cancel` stops the retries (a sibling request failed for good). A wait a 429 or a
    Retry-After imposes is said through `notify`. Raises RequestFailed with the last problem."""
    max_body_bytes = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if key:
        register(key)
        headers["Authorization"] = f"Bearer {key}"
    problem, status, wait, kind = "", None, 0.0, ""
    attempts = retry.max_retries + 1
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                raise RequestFailed(
                    f"{problem}; stopped retrying as another request failed", attempt - 1, status, cancelled=True
                )
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        except ValueError as error:  # not a URL at all: no retry mends it
            raise RequestFailed(f"{url} is not an http:// or https:// URL ({error})", 0, kind=REFUSED) from None
        with Deadline(timeout_s) as deadline:
            try:
                with opener(deadline).open(request, timeout=timeout_s) as response:
                    raw = read_body(response, max_body_bytes)
                if deadline.expired:  # the watchdog cut the body short: what was read is not the answer
                    raise TimeoutError
            except urllib.error.HTTPError as error:
                status = error.code
                detail = read_error_body(error)
                kind = kind_of_status(status)
                if deadline.expired:
                    problem, status, kind = no_complete_answer(timeout_s), None, TIMEOUT
                    wait = retry.delay(attempt)
                    continue
                problem = f"HTTP {error.code}" + (" (rate limited)" if status == 429 else "") + f": {detail}"
                if not retryable(error.code):
                    raise RequestFailed(problem, attempt, status, kind=kind) from None
                asked = retry_after_seconds(error)
                wait = retry.delay(attempt, asked)
                if attempt < attempts and (status == 429 or asked is not None):
                    notify(waiting_line(url, status, wait, asked, retry, attempt))
                continue
            except BodyTooLarge:
                raise RequestFailed(
                    f"an answer body over {max_body_bytes} bytes (no OpenAI-compatible answer is that long); "
                    "medtune stopped reading it",
                    attempt,
                    200,
                    kind=TOO_LARGE,
                ) from None
            except Exception as error:  # noqa: BLE001 - connection, TLS and timeouts: retried, named below
                if not deadline.expired and not isinstance(error, (OSError, http.client.HTTPException)):
                    raise
                (problem, kind), status = connection_problem(error, deadline, timeout_s), None
                wait = retry.delay(attempt)
                continue
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise RequestFailed(
                f"HTTP 200 with a body that is not JSON, so not {what} from an OpenAI-compatible server; "
                f"it begins: {quote(raw)}",
                attempt,
                200,
                kind=NOT_OPENAI,
            ) from None
        try:
            return read(answer)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise RequestFailed(
                f"HTTP 200 with JSON that is not {what} from an OpenAI-compatible server ({error}); "
                f"it begins: {quote(raw)}",
                attempt,
                200,
                kind=NOT_OPENAI,
            ) from None
    raise RequestFailed(problem, attempts, status, kind=kind)


def no_complete_answer(timeout_s: float) -> str:
    return f"no complete answer within {timeout_s:g} s (timeout_s={timeout_s:g})"


def connection_problem(error: BaseException, deadline: Deadline, timeout_s: float) -> tuple[str, str]:
    """The problem of an attempt that got no HTTP answer, and its kind (TIMEOUT or CONNECTION)."""
    if deadline.expired:
        return no_complete_answer(timeout_s), TIMEOUT
    reason = getattr(error, "reason", None) or error  # URLError wraps the socket's own error
    cause = reason if isinstance(reason, BaseException) else error
    if isinstance(cause, TimeoutError):
        return no_complete_answer(timeout_s), TIMEOUT
    return f"{cause.__class__.__name__}: {reason}", CONNECTION


def waiting_line(url: str, status: int, wait: float, asked: Optional[float], retry: RetryPolicy, attempt: int) -> str:
    what = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
    if asked is None:
        why = "backing off"
    elif asked > wait:
        why = f"the server's Retry-After asks {asked:g} s; medtune waits at most {retry.max_backoff_s:g} s"
    else:
        why = "as the server's Retry-After asks"
    return f"endpoint {url}: {what}; waiting {wait:g} s ({why}), then retry {attempt} of {retry.max_retries}."
