"""Discovery commands: ``mldeploy targets`` (the installed targets, their extras and what they can
do) and ``mldeploy config -t TARGET`` (every ``-C`` key of the target with its type, default and
help, read from the target's typed config)."""

from __future__ import annotations

from typing import Any

import click

from mldeploy._cli_output import emit, output_option


@click.command("targets")
@output_option("text", text=True)
def targets_command(output: str) -> None:
    """List the deployment targets: installed or not, their extra and their capabilities."""
    from mldeploy.registry import describe_targets

    infos = describe_targets()

    def text() -> str:
        lines = []
        for info in infos:
            state = "installed" if info.installed else f"not installed ({info.install})"
            caps = ", ".join(info.capabilities) or "-"
            lines.append(f"{info.name:<12} {state}; extra: {info.extra or '-'}; "
                         f"capabilities: {caps}")
            if info.summary:
                lines.append(f"{'':<12} {info.summary}")
        return "\n".join(lines) or "no targets installed"

    emit([info.to_dict() for info in infos], output, text=text)


@click.command("config")
@click.option("-t", "--target", required=True, metavar="TARGET",
              help="The target whose config keys to list, e.g. sagemaker.")
@output_option("text", text=True)
def config_command(target: str, output: str) -> None:
    """List every -C key of TARGET: type, default and help."""
    from mldeploy.config import describe_config
    from mldeploy.registry import get_target_class, parse_target_spec

    spec = parse_target_spec(target)
    keys = describe_config(get_target_class(spec.name).config_class)

    def text() -> str:
        lines = [f"-C keys of the {spec.name} target (-C KEY=VALUE, or a --config-file):"]
        for key in keys:
            lines.append(f"  {key['key']}  ({key['type']}, default {_shown(key)})")
            detail = [key["help"]] if key["help"] else []
            if "choices" in key:
                detail.append("one of " + ", ".join(map(str, key["choices"])))
            bounds = [f"{n} {key[n]}" for n in ("min", "max", "step") if n in key]
            detail.extend(bounds)
            if detail:
                lines.append(f"      {'; '.join(detail)}")
        return "\n".join(lines)

    emit(keys, output, text=text)


def _shown(key: dict[str, Any]) -> str:
    if key.get("required"):
        return "required"
    default = key["default"]
    return "none" if default is None else repr(default) if isinstance(default, str) else str(
        default).lower() if isinstance(default, bool) else str(default)


COMMANDS = [targets_command, config_command]

__all__ = ["COMMANDS", "config_command", "targets_command"]
