"""Pure renderers of a Verdict: JUnit XML, Markdown, job outputs."""
