"""cascade_ci.github: $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY, workflow commands and the run context."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cascade_ci import github
from cascade_ci.github import SUMMARY_LIMIT, RunContext, annotate, mask, write_outputs, write_summary


def parse_output_file(text: str) -> dict[str, str]:
    """Parse a `$GITHUB_OUTPUT` file the way the Actions runner does (`key=value` and `key<<DELIM` heredocs)."""

    def read_line(index: int) -> tuple[str | None, int, int]:
        """(line, index after its newline, length of the newline) starting at `index`."""
        if index >= len(text):
            return None, index, 0
        lf = text.find("\n", index)
        if lf < 0:
            return text[index:], len(text), 0
        if lf > index and text[lf - 1] == "\r":
            return text[index : lf - 1], lf + 1, 2
        return text[index:lf], lf + 1, 1

    values: dict[str, str] = {}
    line, index, _ = read_line(0)
    while line is not None:
        if line:
            equals, heredoc = line.find("="), line.find("<<")
            if equals >= 0 and (heredoc < 0 or equals < heredoc):
                key, value = line.split("=", 1)
            elif heredoc >= 0:
                key, delimiter = line.split("<<", 1)
                start = end = index
                inner, index, newline = read_line(index)
                while inner != delimiter:
                    if inner is None:
                        raise AssertionError(f"heredoc for {key!r} is not closed by {delimiter!r}")
                    end = index - newline
                    inner, index, newline = read_line(index)
                value = text[start:end] if end > start else ""
            else:
                raise AssertionError(f"not an output line: {line!r}")
            assert key, f"empty key in {line!r}"
            values[key] = value
        line, index, _ = read_line(index)
    return values


def test_parser_reads_runner_formats() -> None:
    text = "a=1\nb<<EOF\nx\ny\nEOF\nc=\n"
    assert parse_output_file(text) == {"a": "1", "b": "x\ny", "c": ""}


# --- $GITHUB_OUTPUT ----------------------------------------------------------------------------


def test_write_outputs_appends_key_value_lines(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.write_text("earlier=kept\n", encoding="utf-8")
    env = {"GITHUB_OUTPUT": str(out)}
    assert write_outputs({"verdict": "passed", "blocked": "false"}, env=env) is True
    assert out.read_text(encoding="utf-8") == "earlier=kept\nverdict=passed\nblocked=false\n"
    assert write_outputs({"errors": "0"}, env=env) is True
    assert parse_output_file(out.read_text(encoding="utf-8")) == {
        "earlier": "kept",
        "verdict": "passed",
        "blocked": "false",
        "errors": "0",
    }


@pytest.mark.parametrize(
    "value",
    [
        "line one\nline two",
        "trailing newline\n",
        "\nleading newline",
        "blank\n\nlines\n\n",
        "looks=like\nan<<EOF\noutput\nEOF\n",
        "windows\r\nline endings",
        "x" * 10_000 + "\n" + "y",
    ],
)
def test_write_outputs_multiline_value_survives_exactly(tmp_path: Path, value: str) -> None:
    out = tmp_path / "output"
    env = {"GITHUB_OUTPUT": str(out)}
    assert write_outputs({"summary": value, "after": "single"}, env=env) is True
    with out.open(encoding="utf-8", newline="") as f:
        text = f.read()
    first_line = text.split("\n", 1)[0]
    assert first_line.startswith("summary<<")
    delimiter = first_line.removeprefix("summary<<")
    assert delimiter
    assert delimiter not in value
    assert parse_output_file(text) == {"summary": value, "after": "single"}


def test_write_outputs_uses_a_fresh_delimiter_per_value(tmp_path: Path) -> None:
    out = tmp_path / "output"
    write_outputs({"a": "1\n2", "b": "3\n4"}, env={"GITHUB_OUTPUT": str(out)})
    text = out.read_text(encoding="utf-8")
    heads = [line for line in text.splitlines() if "<<" in line]
    assert [head.split("<<")[0] for head in heads] == ["a", "b"]
    delimiters = [head.split("<<")[1] for head in heads]
    assert len(set(delimiters)) == 2
    assert parse_output_file(text) == {"a": "1\n2", "b": "3\n4"}


def test_write_outputs_single_line_values_with_separators(tmp_path: Path) -> None:
    out = tmp_path / "output"
    values = {"gates": "schema:pass,dbt:error", "odd": "a=b<<c", "empty": ""}
    write_outputs(values, env={"GITHUB_OUTPUT": str(out)})
    assert parse_output_file(out.read_text(encoding="utf-8")) == values


def test_write_outputs_without_variable_returns_false_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = tmp_path / "sink"
    sink.mkdir()
    decoy = sink / "decoy"
    monkeypatch.setenv("GITHUB_OUTPUT", str(decoy))
    # An explicit env wins over os.environ, even when it lacks the variable.
    assert write_outputs({"verdict": "passed"}, env={}) is False
    assert write_outputs({"verdict": "passed"}, env={"GITHUB_OUTPUT": ""}) is False
    assert not decoy.exists()
    assert list(sink.iterdir()) == []


def test_write_outputs_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert write_outputs({"k": "v"}) is True
    assert out.read_text(encoding="utf-8") == "k=v\n"
    monkeypatch.delenv("GITHUB_OUTPUT")
    assert write_outputs({"k": "w"}) is False
    assert out.read_text(encoding="utf-8") == "k=v\n"


# --- $GITHUB_STEP_SUMMARY ----------------------------------------------------------------------


def test_write_summary_appends(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert write_summary("## first", env=env) is True
    assert write_summary("## second ✅", env=env) is True
    assert summary.read_text(encoding="utf-8") == "## first\n## second ✅\n"


def test_write_summary_without_variable_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = tmp_path / "sink"
    sink.mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(sink / "decoy"))
    assert write_summary("## x", env={}) is False
    assert list(sink.iterdir()) == []
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert write_summary("## x") is False


def test_write_summary_small_input_is_not_cut(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    text = "x" * (SUMMARY_LIMIT // 2)
    write_summary(text, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text(encoding="utf-8") == text + "\n"


def test_write_summary_cuts_input_over_one_mebibyte_with_a_note(tmp_path: Path) -> None:
    assert SUMMARY_LIMIT == 1024 * 1024
    summary = tmp_path / "summary.md"
    text = "| row |\n" * (SUMMARY_LIMIT // 4)  # 2 MiB
    assert write_summary(text, env={"GITHUB_STEP_SUMMARY": str(summary)}) is True
    data = summary.read_bytes()
    assert len(data) <= SUMMARY_LIMIT
    assert len(data) > SUMMARY_LIMIT - 1024  # cut near the limit, not far below it
    written = data.decode("utf-8")
    assert written.startswith("| row |\n| row |\n")
    note = written.rstrip("\n").splitlines()[-1]
    assert "1 MiB" in note
    assert "cut" in note.lower()


def test_write_summary_cut_keeps_valid_utf8(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    text = "é✅" * SUMMARY_LIMIT  # multi-byte characters straddle every possible cut
    write_summary(text, env={"GITHUB_STEP_SUMMARY": str(summary)})
    data = summary.read_bytes()
    assert len(data) <= SUMMARY_LIMIT
    written = data.decode("utf-8")  # raises if a character was split
    assert "1 MiB" in written


# --- workflow commands -------------------------------------------------------------------------


def test_annotate_plain_message() -> None:
    stream = io.StringIO()
    annotate("warning", "table is stale", stream=stream)
    assert stream.getvalue() == "::warning::table is stale\n"


def test_annotate_escapes_message_data() -> None:
    stream = io.StringIO()
    annotate("error", "100% broken\nsecond line\r\nthird: a, b", stream=stream)
    # Data escapes only %, CR and LF; ':' and ',' are legal in the message.
    assert stream.getvalue() == "::error::100%25 broken%0Asecond line%0D%0Athird: a, b\n"


def test_annotate_escapes_percent_before_other_escapes() -> None:
    stream = io.StringIO()
    annotate("notice", "literal %0A stays literal", title="50%3A", stream=stream)
    assert stream.getvalue() == "::notice title=50%253A::literal %250A stays literal\n"


def test_annotate_escapes_properties() -> None:
    stream = io.StringIO()
    annotate(
        "error",
        "type changed",
        title="schema: analytics.glucose, value\n100%",
        file="models/a:b,c.sql",
        line=12,
        stream=stream,
    )
    assert stream.getvalue() == (
        "::error file=models/a%3Ab%2Cc.sql,line=12,title=schema%3A analytics.glucose%2C value%0A100%25::type changed\n"
    )


def test_annotate_line_needs_a_file() -> None:
    stream = io.StringIO()
    annotate("error", "m", line=4, title="t", stream=stream)
    assert stream.getvalue() == "::error title=t::m\n"


def test_annotate_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    annotate("warning", "a\nb", file="f.py")
    assert capsys.readouterr().out == "::warning file=f.py::a%0Ab\n"


def test_mask_writes_to_stderr_not_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    mask("s3cr%t")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "::add-mask::s3cr%25t\n")


def test_mask_escapes_newlines_and_uses_the_stream() -> None:
    stream = io.StringIO()
    mask("line1\nline2", stream=stream)
    assert stream.getvalue() == "::add-mask::line1%0Aline2\n"


def test_mask_of_empty_secret_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    mask("", stream=stream)
    mask("")
    assert stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")


# --- RunContext --------------------------------------------------------------------------------


def test_run_context_from_actions_env() -> None:
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "octo/lakehouse",
        "GITHUB_RUN_ID": "8123456789",
        "GITHUB_RUN_ATTEMPT": "3",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_ACTIONS": "true",
    }
    ctx = RunContext.from_env(env)
    assert ctx == RunContext(
        run_id="8123456789",
        attempt=3,
        url="https://github.com/octo/lakehouse/actions/runs/8123456789",
        actor="octocat",
        in_actions=True,
    )


def test_run_context_uses_the_server_url_for_enterprise() -> None:
    env = {"GITHUB_SERVER_URL": "https://ghe.example.com", "GITHUB_REPOSITORY": "org/repo", "GITHUB_RUN_ID": "7"}
    assert RunContext.from_env(env).url == "https://ghe.example.com/org/repo/actions/runs/7"


@pytest.mark.parametrize("attempt", [None, ""])
def test_run_context_attempt_defaults_to_one(attempt: str | None) -> None:
    env = {"GITHUB_RUN_ID": "5"}
    if attempt is not None:
        env["GITHUB_RUN_ATTEMPT"] = attempt
    ctx = RunContext.from_env(env)
    assert ctx.attempt == 1
    assert isinstance(ctx.attempt, int)


@pytest.mark.parametrize("missing", ["GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"])
def test_run_context_url_needs_all_three_parts(missing: str) -> None:
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "1"}
    del env[missing]
    assert RunContext.from_env(env).url is None


def test_run_context_outside_actions() -> None:
    ctx = RunContext.from_env({})
    assert ctx == RunContext(run_id=None, attempt=1, url=None, actor=None, in_actions=False)
    assert RunContext.from_env({"GITHUB_ACTIONS": "false"}).in_actions is False


def test_run_context_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "o/r")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    ctx = RunContext.from_env()
    assert ctx.run_id == "42"
    assert ctx.attempt == 2
    assert ctx.url == "https://github.com/o/r/actions/runs/42"
    assert ctx.actor is None
    assert ctx.in_actions is True


def test_limits() -> None:
    assert github.ANNOTATION_LIMIT == 10
