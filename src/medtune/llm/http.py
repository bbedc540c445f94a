"""JSON over HTTP for OpenAI-compatible servers: one POST, retried with backoff (standard library only).

Both endpoint clients use it: `EndpointGenerator` (judge, QA generation) and the evaluation's
`EndpointBackend`. Connection errors, timeouts, 429 and 5xx answers are retried, waiting
`backoff_s`, then twice as long each time (capped), or what a numeric `Retry-After` asks; any other
4xx is final (a bad request or a bad key does not get better). Keys come from the environment only.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from medtune.errors import ConfigError

T = TypeVar("T")
DETAIL_CHARS = 300  # how much of an error body a message quotes


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


class RequestFailed(Exception):
    """The last attempt's problem, once retrying is over (callers turn it into their own message)."""

    def __init__(self, problem: str, attempts: int, status: Optional[int] = None, cancelled: bool = False):
        super().__init__(problem)
        self.problem, self.attempts, self.status = problem, attempts, status
        self.cancelled = cancelled  # given up because another request failed, not for its own sake


def read_api_key(env_name: Optional[str], key: str) -> Optional[str]:
    """The key in the environment variable `env_name` names (None when none is named); `key` is the
    config key that names it, e.g. eval.endpoint.api_key_env, for the message when it is not set."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            [
                f"{key}={env_name}: that environment variable is not set; "
                f"export {env_name}=<key> (keys never go in configs)."
            ]
        )
    return value


def retry_after_seconds(error: urllib.error.HTTPError) -> Optional[float]:
    """A numeric Retry-After header in seconds (an HTTP date is ignored: the backoff applies)."""
    value = error.headers.get("Retry-After") if error.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def post_json(
    url: str,
    body: dict[str, Any],
    read: Callable[[dict[str, Any]], T],
    *,
    key: Optional[str] = None,
    timeout_s: float = 120.0,
    retry: RetryPolicy = RetryPolicy(),
    cancel: Optional[threading.Event] = None,
    what: str = "an OpenAI-style answer",
) -> T:
    """POST `body` as JSON to `url` and return `read(<the JSON answer>)`.

    `read` raising KeyError, IndexError, TypeError or ValueError means the answer has the wrong
    shape (`what` names the expected one in the message), which no retry mends. Setting `cancel`
    stops the retries (a sibling request failed for good). Raises RequestFailed with the last problem."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    problem, status, wait = "", None, 0.0
    for attempt in range(1, retry.max_retries + 2):
        if attempt > 1:
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                raise RequestFailed(
                    f"{problem}; stopped retrying as another request failed", attempt - 1, status, cancelled=True
                )
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            status = error.code
            try:
                detail = error.read().decode("utf-8", "replace")[:DETAIL_CHARS]
            except (OSError, http.client.HTTPException):
                detail = error.reason or ""
            problem = f"HTTP {error.code}: {detail}"
            if not retryable(error.code):
                raise RequestFailed(problem, attempt, status) from error
            wait = retry.delay(attempt, retry_after_seconds(error))
            continue
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", None) or error  # URLError wraps the socket's own error
            cause = reason if isinstance(reason, BaseException) else error
            timed_out = isinstance(cause, TimeoutError)
            problem = f"no answer within {timeout_s:g} s" if timed_out else f"{cause.__class__.__name__}: {reason}"
            status, wait = None, retry.delay(attempt)
            continue
        except ValueError as error:
            raise RequestFailed(f"an answer that is not JSON ({error})", attempt, 200) from error
        try:
            return read(answer)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise RequestFailed(
                f"an answer that is not {what} ({error.__class__.__name__}: {error})", attempt, 200
            ) from error
    raise RequestFailed(problem, retry.max_retries + 1, status)
