"""Running a command: every expected error becomes one line on stderr and an exit code.

The helpers commands share live in :mod:`queue_core.cli.options` (re-exported here for
code written against this module).
"""

from __future__ import annotations

import click

from queue_core.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    database_option,
    echo_json,
    fail,
    open_db,
    parse_json_object,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "database_option",
    "echo_json",
    "fail",
    "open_db",
    "parse_json_object",
    "run_guarded",
]

EXIT_INTERRUPTED = 130


def _exit_code_for(error: Exception) -> int | None:
    """The exit code of an error the queue raises on purpose; None for a bug (traceback).

    A user's mistake is "bad usage" (2); anything the queue refused or could not do is 1.
    The classes are imported here, on the error path, so that start-up stays light.
    """
    from pydantic import ValidationError

    from queue_core.errors import InvalidSchedule, QueueError
    from queue_core.repositories.types import InvalidTaskType
    from queue_core.validation import InvalidPayload, PayloadTooLarge

    if isinstance(
        error, (ValidationError, InvalidPayload, PayloadTooLarge, InvalidSchedule, InvalidTaskType)
    ):
        return EXIT_USAGE
    if isinstance(error, (QueueError, OSError)):
        return EXIT_FAILURE
    return None


def _one_line(error: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "input"
            parts.append(f"{where}: {item['msg']}")
        return "invalid task: " + "; ".join(parts)
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run a click command; turn every expected error into one line on stderr."""
    try:
        # Outside standalone mode Click returns ctx.exit(code)'s code instead of raising Exit
        # (and a command's own return value otherwise: ours return None).
        result = command.main(args=argv, prog_name="prismq-queue", standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            return result
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _exit_code_for(exc)
        if code is None:
            raise
        click.echo(f"error: {_one_line(exc)}", err=True)
        return code
    return EXIT_OK
