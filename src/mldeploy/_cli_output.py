"""``-o/--output``: the one meaning it has on every verb — the format of what the verb prints on
stdout (``json`` or ``yaml``; ``text`` where the verb has a human-readable form). Progress and
errors always go to stderr, so stdout is what a script parses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

FORMATS = ("text", "json", "yaml")


def output_option(default: str = "json", *, text: bool = False) -> Callable[[Any], Any]:
    """The ``-o/--output`` option of a verb; ``text`` only where the verb has a text form."""
    choices = FORMATS if text else tuple(f for f in FORMATS if f != "text")
    return click.option("-o", "--output", type=click.Choice(choices), default=default,
                        show_default=True, help="Format of what is printed on stdout.")


def emit(data: Any, output: str, text: Callable[[], str] | None = None) -> None:
    """Print ``data`` (plain JSON-able data) as ``output``; ``text`` renders the text form."""
    if output == "text" and text is not None:
        click.echo(text().rstrip("\n"))
    elif output == "yaml":
        import yaml

        plain = json.loads(json.dumps(data, default=str))  # paths, enums: as in the JSON
        click.echo(yaml.safe_dump(plain, sort_keys=False), nl=False)
    else:
        click.echo(json.dumps(data, indent=2, default=str))


__all__ = ["FORMATS", "emit", "output_option"]
