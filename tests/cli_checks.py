"""Shared assertions for command-line outcomes (test helper)."""


def one_line_error(outcome, *fragments) -> str:
    """The single ``Error: …`` line of a click ``outcome`` that exited 2 without a traceback,
    checked to contain each of ``fragments``."""
    assert outcome.exit_code == 2, (outcome.exit_code, outcome.output, outcome.exception)
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in outcome.output, outcome.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
