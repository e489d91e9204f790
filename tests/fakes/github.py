"""What both GitHub clients' tests share: a token that must never show, and GitHub's rate-limit answer."""

from __future__ import annotations

from tests.fakes.http import Response

TOKEN = "ghp_FAKEfakeFAKEfake0123456789abcdefABCD"


def assert_token_hidden(exc: BaseException | None) -> None:
    """TOKEN appears in no message or repr along the exception's chain of causes."""
    while exc is not None:
        assert TOKEN not in str(exc)
        assert TOKEN not in repr(exc)
        exc = exc.__cause__ or exc.__context__


def rate_limited(reset: int, status: int = 403) -> Response:
    """GitHub's answer once a token's primary rate limit is spent, until epoch second `reset`."""
    headers = {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Used": "1000",
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Resource": "core",
    }
    body = {
        "message": "API rate limit exceeded for installation ID 12345678.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        "status": str(status),
    }
    return status, headers, body
