"""``mldeploy cleanup``: remove what this user's mldeploy made on the local Docker engine and no
endpoint uses any more - never another user's, never anything in use. The work is the local
target's (:meth:`LocalTarget.cleanup`, ``plugins/local/_cleanup.py``); this is its click layer."""

from __future__ import annotations

from dataclasses import asdict

import click

from mldeploy._cli_output import emit, output_option


@click.command("cleanup")
@click.option("-C", "--config", "config", multiple=True, metavar="KEY=VALUE",
              help="Local target config, e.g. -C state_dir=DIR (the state directory whose "
                   "images and containers to clean up).")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@output_option("text", text=True)
def cleanup_command(config: tuple[str, ...], dry_run: bool, output: str) -> None:
    """Remove this user's unused local model images and orphaned containers (never another
    user's, never one an endpoint or container uses)."""
    from mldeploy.config import parse_assignments
    from mldeploy.registry import get_target_class

    target = get_target_class("local")(parse_assignments(config))
    result = target.cleanup(dry_run=dry_run)
    emit(asdict(result), output, text=result.text)


COMMANDS = [cleanup_command]

__all__ = ["COMMANDS", "cleanup_command"]
