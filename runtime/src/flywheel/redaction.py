"""The one place text is made safe to show: every message Flywheel prints, writes into a
result or puts in a condition passes through `redact`.

- credentials are masked: the user and password of a URI, signed-URL and token query
  parameters, `password=...`-style pairs, bearer tokens, AWS access key ids;
- content read from a source is quoted only as a short, redacted `sample`;
- a condition message fits the API's limit (`condition_message`), keeping its head.

Pure and dependency-free, so that every layer can use it.
"""

from __future__ import annotations

import re

MASK = "***"
# metav1.Condition.message is limited to 32 KiB.
CONDITION_MESSAGE_BYTES = 32 * 1024
SAMPLE_CHARS = 40

_SECRET_WORDS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?"
    r"|secret[_-]?access[_-]?key|private[_-]?key|credentials?|auth|authorization"
    r"|signature|sig|x-amz-signature|x-amz-credential|x-amz-security-token|session[_-]?token"
)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host, scheme://token@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s@'\"<>]+@"), rf"\1{MASK}@"),
    # ?sig=...&token=...
    (
        re.compile(rf"(?i)([?&;](?:{_SECRET_WORDS})=)[^&\s'\"<>#]+"),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # password=..., "secret": "...", api_key: ...
    (
        re.compile(
            rf"(?i)([\"']?\b(?:\w*[_-])?(?:{_SECRET_WORDS})[\"']?\s*[:=]\s*)"
            r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&'\"}]+)"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
)


def redact(text: str) -> str:
    """Mask every credential in `text`.

    >>> redact("cannot read s3://AKIDEXAMPLE:wJalr/XUtnFEMI@bucket/x.csv")
    'cannot read s3://***@bucket/x.csv'
    >>> redact("GET https://h/x.csv?X-Amz-Signature=abc123&part=1")
    'GET https://h/x.csv?X-Amz-Signature=***&part=1'
    >>> redact("row: user=ann,password=hunter2")
    'row: user=ann,password=***'
    """
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def sample(content: str, limit: int = SAMPLE_CHARS) -> str:
    """A bounded, redacted excerpt of source content, quoted.

    >>> sample("C000001,token=abcdef,a very long line that goes on and on", 20)
    "'C000001,token=***,a …'"
    """
    shown = redact(content)
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    return repr(shown)


# Arrow quotes the offending row or value at the end of its reader errors.
_ARROW_QUOTES = (
    re.compile(r"(?s)(Expected \d+ columns?, got \d+: )(.*)$"),
    re.compile(r"(?s)(invalid value )(.*)$"),
    re.compile(r"(?s)(JSON parse error: .*? in row \d+)(.*)$"),
)
ERROR_CHARS = 400


def arrow_error(exc: BaseException) -> str:
    """A reader error as it may be shown: source content cut to a sample, credentials
    masked, the whole bounded.

    >>> arrow_error(ValueError("CSV parse error: Expected 2 columns, got 1: secret-row-1"))
    "CSV parse error: Expected 2 columns, got 1: 'secret-row-1'"
    """
    text = str(exc)
    for pattern in _ARROW_QUOTES:
        match = pattern.search(text)
        if match:
            quoted = match.group(2).strip().strip("'")
            text = text[: match.start(2)] + (sample(quoted) if quoted else "")
            break
    text = redact(text)
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "…"


def condition_message(text: str, limit_bytes: int = CONDITION_MESSAGE_BYTES) -> str:
    """Redacted, and cut to the API's limit keeping the head (where the reason is).

    >>> condition_message("x" * 40, limit_bytes=30)
    'xxxxxx… (34 chars cut)'
    """
    text = redact(text)
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    note_budget = 24
    head = data[: limit_bytes - note_budget].decode(errors="ignore")
    cut = len(text) - len(head)
    return f"{head}… ({cut} chars cut)"
