"""Finding 2: no credential follows a redirect to another host, and none travels over plain http except to loopback.

Two fake servers on loopback: `origin` at 127.0.0.1 redirects to `elsewhere` named `localhost` (another host
name, so another origin); `elsewhere` records which headers arrive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cascade_ci import github_api
from cascade_ci.errors import ConfigError, safe_url
from tests.fakes.http import FakeServer, Request

SECRET = "n1ghtscout-s3cret-value"
SECRET_SHA1 = hashlib.sha1(SECRET.encode()).hexdigest()
TOKEN = "ghs_" + "t0ken" * 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NIGHTSCOUT_PATH = "/api/v1/entries/sgv.json"
RUN_PATH = "/repos/octo/cascade/actions/runs/42"


@pytest.fixture
def elsewhere() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def other_host(server: FakeServer) -> str:
    """`server`'s URL under the host name `localhost`: the same machine, another origin."""
    return server.url.replace("127.0.0.1", "localhost")


def redirect(status: int, to: str):
    return lambda _req: (status, {"Location": to}, None)


def credentials(requests: list[Request]) -> list[str]:
    return [
        f"{name}: {value}"
        for req in requests
        for name, value in req.headers.items()
        if name in ("authorization", "api-secret") or SECRET_SHA1 in value or TOKEN in value
    ]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_nightscout_secret_does_not_follow_a_redirect_to_another_host(elsewhere: FakeServer, status: int) -> None:
    from glucose_github import nightscout

    elsewhere.reply("GET", NIGHTSCOUT_PATH, [])
    with FakeServer() as origin:
        origin.route("GET", NIGHTSCOUT_PATH, redirect(status, other_host(elsewhere) + NIGHTSCOUT_PATH))
        nightscout.fetch_entries(origin.url, SECRET, T0, T0 + timedelta(days=1), sleep=lambda _s: None)
        assert origin.requests[0].headers["api-secret"] == SECRET_SHA1  # sent where it was configured for
    assert elsewhere.requests, "the redirect was followed"
    assert credentials(elsewhere.requests) == []


def test_nightscout_secret_follows_a_redirect_on_the_same_origin() -> None:
    from glucose_github import nightscout

    with FakeServer() as origin:
        origin.route("GET", NIGHTSCOUT_PATH, redirect(302, origin.url + "/moved"))
        origin.reply("GET", "/moved", [])
        nightscout.fetch_entries(origin.url, SECRET, T0, T0 + timedelta(days=1), sleep=lambda _s: None)
        assert origin.requests_to("/moved")[0].headers["api-secret"] == SECRET_SHA1


def test_example_github_token_does_not_follow_a_redirect(elsewhere: FakeServer) -> None:
    from glucose_github import github_source

    elsewhere.reply("GET", "/users/octocat/events/public", [])
    with FakeServer() as origin:
        origin.route("GET", "/users/octocat/events/public", redirect(302, other_host(elsewhere) + "/users/x"))
        batch = github_source.fetch_user_events(TOKEN, ["octocat"], base_url=origin.url, sleep=lambda _s: None)
    assert batch.failures  # the redirect is reported on the user, not followed
    assert credentials(elsewhere.requests) == []


@pytest.mark.parametrize("status", [301, 302, 307])
def test_toolkit_github_token_does_not_follow_a_redirect(elsewhere: FakeServer, status: int) -> None:
    elsewhere.reply("GET", RUN_PATH, {"id": 42, "status": "completed", "conclusion": "success"})
    with FakeServer() as origin:
        origin.route("GET", RUN_PATH, redirect(status, other_host(elsewhere) + RUN_PATH))
        api = github_api.GitHubApi(TOKEN, "octo/cascade", base_url=origin.url)
        with api, pytest.raises(github_api.GitHubApiError) as caught:
            api.workflow_run("42")
        assert origin.requests[0].headers["authorization"].endswith(TOKEN)
    assert credentials(elsewhere.requests) == []
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("url", ["http://cgm.example.org", "http://10.0.0.5:1337", "ftp://cgm.example.org", "cgm"])
def test_nightscout_secret_is_refused_over_plain_http(url: str) -> None:
    from glucose_github import nightscout

    with pytest.raises(ConfigError, match="https://"):
        nightscout.fetch_entries(url, SECRET, T0, T0 + timedelta(days=1), sleep=lambda _s: None)


def test_github_tokens_are_refused_over_plain_http() -> None:
    from glucose_github import github_source

    with pytest.raises(ConfigError, match="https://"):
        github_source.fetch_user_events(TOKEN, ["octocat"], base_url="http://api.example.org", sleep=lambda _s: None)
    with pytest.raises(ConfigError, match="https://"):
        github_api.make_client(TOKEN, base_url="http://api.example.org")
    with pytest.raises(ConfigError, match="https://"):
        github_api.GitHubApi(TOKEN, "octo/cascade", base_url="http://ghe.example.org/api/v3").workflow_run("42")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.3.4.5", "http://localhost:5000/x", "http://[::1]:80", "https://a.b"]
)
def test_loopback_and_https_are_accepted(url: str) -> None:
    from cascade_ci.http_guard import check_credential_url

    assert check_credential_url(url) == url


def test_refusal_does_not_print_the_url_credentials() -> None:
    from cascade_ci.http_guard import check_credential_url

    with pytest.raises(ConfigError) as caught:
        check_credential_url("http://user:pw@cgm.example.org/x?token=abc")
    assert "pw" not in str(caught.value) and "abc" not in str(caught.value)
    assert safe_url("http://user:pw@cgm.example.org/x") in str(caught.value)


def test_shared_urlopen_drops_authorization_on_another_host(elsewhere: FakeServer) -> None:
    """The opener the Nessie clients use: a bearer token stays on its origin, and follows a same-origin redirect."""
    import urllib.request

    from cascade_ci.http_guard import urlopen

    elsewhere.reply("GET", "/api/v2/config", {})
    with FakeServer() as origin:
        origin.route("GET", "/api/v2/trees", redirect(302, other_host(elsewhere) + "/api/v2/config"))
        origin.route("GET", "/api/v2/old", redirect(307, origin.url + "/api/v2/trees"))
        request = urllib.request.Request(origin.url + "/api/v2/old", headers={"Authorization": f"Bearer {TOKEN}"})
        with urlopen(request, timeout=5) as answer:
            assert answer.status == 200
        assert [r.headers.get("authorization") for r in origin.requests] == [f"Bearer {TOKEN}"] * 2
    assert elsewhere.requests and credentials(elsewhere.requests) == []
