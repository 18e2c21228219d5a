"""Hang guards shared by the tests: how long a test waits for something to happen before it
calls it a hang. They are guards, never verdicts on speed (a verdict depends on behaviour, not
on the machine's load: issue #13), so they are far beyond what a loaded machine needs; a test
that only passes under them when idle is a bug in the test."""

HANG_S = 1200.0
"""A subprocess (a CLI command, a training, a search) or a wait on one."""

UI_HANG_S = 180.0
"""A state of a page, a server or a short-lived helper process (a server line, a page element,
a process that was signalled)."""
