"""Export the JSON objects in $PIPELINE_ENV and $PIPELINE_SECRETS as environment variables of the job's later steps.

PIPELINE_ENV holds plain settings (a caller passes toJSON(vars)); each PIPELINE_SECRETS value is
masked first (`::add-mask::` on stdout, which the runner reads), then appended to
$GITHUB_ENV with a random heredoc delimiter, so no value can end the entry early and set another
variable. Names are checked: only NAME-like keys, never the runner's own or the loader's variables.
Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys

NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
# The runner's own names, and every name that changes how a later step's programs start (shells, loaders,
# git, pip/uv, the JVM, Perl, Ruby) or where their connections go (proxies, CA bundles).
RESERVED = re.compile(
    r"(GITHUB|RUNNER|ACTIONS|INPUT|STATE)_.*|CI|HOME|PATH|SHELL|PYTHON.*|LD_.*|BASH_.*|ENV|IFS|NODE_.*|UV_.*"
    r"|SHELLOPTS|BASHOPTS|PS[0-4]|PROMPT_COMMAND|CDPATH|GIT_.*|PIP_.*|(_?JAVA|JDK_JAVA)_.*|PERL5.*|RUBY.*"
    r"|GCONV_PATH|LOCPATH|TMPDIR|.*_PROXY|SSL_CERT_.*|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE"
)


def problems(data: object) -> list[str]:
    """Why `data` cannot be exported (empty: it can)."""
    if not isinstance(data, dict):
        return ["pipeline-secrets must be a JSON object of NAME: value"]
    found = []
    for name, value in data.items():
        if not NAME.fullmatch(name):
            found.append(f"{name[:40]!r} is not an environment variable name (A-Z, 0-9, _)")
        elif RESERVED.fullmatch(name):
            found.append(f"{name} is reserved for the runner; choose another name")
        elif not isinstance(value, str):
            found.append(f"{name}: the value must be a string")
    return found


def load(variable: str, label: str) -> dict[str, str] | None:
    """The object in environment variable `variable` (empty: none), or None after saying why not."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:  # never echo the text: it may be a secret
        print(f"{label} is not valid JSON (line {e.lineno}, column {e.colno})", file=sys.stderr)
        return None
    found = problems(data)
    if found:
        print(f"{label}: " + "; ".join(found), file=sys.stderr)
        return None
    return data


def main() -> int:
    plain, hidden = load("PIPELINE_ENV", "pipeline-env"), load("PIPELINE_SECRETS", "pipeline-secrets")
    if plain is None or hidden is None:
        return 2
    for value in hidden.values():
        for line in value.splitlines():
            if line.strip():
                print(f"::add-mask::{line}", flush=True)
    with open(os.environ["GITHUB_ENV"], "a", encoding="utf-8") as env:
        for name, value in {**plain, **hidden}.items():
            delimiter = f"cascade_{secrets.token_hex(16)}"
            env.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    for label, data in (("setting", plain), ("secret", hidden)):
        if data:
            print(f"exported {len(data)} {label}(s): {', '.join(sorted(data))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
