"""The GitHub Actions runtime: run identity, `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, workflow commands.

One sink per file; outside Actions (variables unset) writing is a no-op, so local runs rely on reports/.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SUMMARY_LIMIT = 1024 * 1024  # GitHub rejects a step summary over 1 MiB
ANNOTATION_LIMIT = 10  # GitHub shows at most 10 error and 10 warning annotations per step


@dataclass(frozen=True)
class RunContext:
    """Who is running: the workflow run id and attempt, and a link to the run when known."""

    run_id: str | None
    attempt: int
    url: str | None
    actor: str | None
    in_actions: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunContext:
        env = os.environ if env is None else env
        run_id = env.get("GITHUB_RUN_ID")
        server, repo = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
        url = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else None
        return cls(
            run_id=run_id,
            attempt=int(env.get("GITHUB_RUN_ATTEMPT", "1") or 1),
            url=url,
            actor=env.get("GITHUB_ACTOR"),
            in_actions=env.get("GITHUB_ACTIONS") == "true",
        )


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def write_outputs(values: Mapping[str, str], env: Mapping[str, str] | None = None) -> bool:
    """Append `key=value` lines to `$GITHUB_OUTPUT` (multi-line values with a random delimiter)."""
    target = (os.environ if env is None else env).get("GITHUB_OUTPUT")
    if not target:
        return False
    with Path(target).open("a", encoding="utf-8") as out:
        for key, value in values.items():
            if "\n" in value or "\r" in value:
                delimiter = f"cascade_{secrets.token_hex(8)}"
                out.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{key}={value}\n")
    return True


def write_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Append Markdown to `$GITHUB_STEP_SUMMARY`, cut to GitHub's 1 MiB limit with a note."""
    target = (os.environ if env is None else env).get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    data = markdown.encode("utf-8")
    if len(data) > SUMMARY_LIMIT - 200:
        data = data[: SUMMARY_LIMIT - 200].decode("utf-8", "ignore").encode("utf-8")
        data += b"\n\n_Summary cut at GitHub's 1 MiB limit; the full text is in reports/summary.md._\n"
    with Path(target).open("ab") as out:
        out.write(data + b"\n")
    return True


def annotate(
    level: str,
    message: str,
    *,
    title: str | None = None,
    file: str | None = None,
    line: int | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print an `::error`/`::warning`/`::notice` workflow command, escaped as the runner expects."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
        if line:
            props.append(f"line={line}")
    if title:
        props.append(f"title={_escape_property(neutralize(title))}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    print(f"{head}::{_escape_data(neutralize(message))}", file=stream or sys.stdout)


def mask(secret: str, stream: TextIO | None = None) -> None:
    """Ask the runner to hide `secret` in every later log line; written on stderr, never on stdout.

    Only for secrets GitHub does not mask already (one derived at run time, e.g. a secret's hash): values
    from `secrets.*`, GITHUB_TOKEN among them, are masked by the runner itself. stdout may be `--json`
    output, and the runner reads workflow commands from stderr as well: actions/runner
    src/Runner.Worker/Handlers/ScriptHandler.cs hands both streams to the same ActionCommandManager
    (`StepHost.OutputDataReceived += stdoutManager.OnDataReceived;`
    `StepHost.ErrorDataReceived += stderrManager.OnDataReceived;`).
    """
    if secret:
        print(f"::add-mask::{_escape_data(secret)}", file=stream or sys.stderr, flush=True)


# A runner line ends at CR, LF or CRLF (ProcessInvoker's ReadLine); splitlines() cuts at those and more.
_COMMAND_START = re.compile(r"^(\s*)::", re.MULTILINE)


def neutralize(text: str) -> str:
    """`text` from a foreign source (a service's error, a data value) made inert as workflow commands.

    The runner runs a line as a command when, leading whitespace trimmed, it starts with `::`
    (actions/runner src/Runner.Common/ActionCommand.cs, TryParseV2), and the legacy `##[` form anywhere
    in a line (TryParse). Both are broken up; the text stays readable. `%0A` in the text is no risk: the
    runner decodes it only inside a command, and `annotate` escapes `%` itself.
    """
    lines = str(text).splitlines(keepends=True) or [""]
    safe = [_COMMAND_START.sub(r"\1: :", line) for line in lines]
    return "".join(safe).replace("##[", "# #[")
