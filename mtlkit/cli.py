"""The ``mtlkit`` command line: ``mtlkit <command> ...``.

Each command is a module in :mod:`mtlkit.commands` with ``add_parser(subparsers)`` and
``run(args) -> int``. Every failure prints one line and exits with a documented code
(:data:`mtlkit.errors.EXIT_CODES`, also in ``mtlkit --help``); ``--debug`` shows the traceback
instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from mtlkit import __version__
from mtlkit.errors import EXIT_CODES, MtlkitError, OutputError

COMMANDS = ("train", "search", "recon", "plot", "bench", "plugins")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    epilog += ("\n\nOutput folders: a non-empty --out is refused unless --resume (or "
               "--overwrite) is given; one run at a time holds DIR/.lock.")
    parser = _Parser(prog="mtlkit", description="Multi-task learning under gradient conflict.",
                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mtlkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"mtlkit.commands.{name}")
        cmd = module.add_parser(sub)
        cmd.set_defaults(_run=module.run)
    return parser


def _one_line_warnings(default):
    """mtlkit's own warnings (e.g. a clamped mask K) as one ``mtlkit: warning:`` line."""

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith(("mtlkit", "mtlkit_plugins")):
            print(f"mtlkit: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return int(args._run(args) or 0)
    except MtlkitError as exc:
        if args.debug:
            raise
        print(f"mtlkit: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("mtlkit: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system refused a write/read mtlkit did not foresee
        if args.debug:
            raise
        print(f"mtlkit: error: {_one_line(exc)}", file=sys.stderr)
        return OutputError.exit_code
    except Exception as exc:  # a bug: still one line, the traceback is one flag away
        if args.debug:
            raise
        print(f"mtlkit: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "--debug for the traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
