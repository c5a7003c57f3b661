"""Command line: ``python -m robseg_lib {sea,train,pretrain,zoo,book} ...`` for long runs and torchrun."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# Subcommand -> (module, one-line help). Each module provides configure_parser(parser) and run_from_args(args).
_COMMANDS = {
    "sea": ("robseg_lib.evaluate", "evaluate a model with SEA (resumable, shardable under torchrun)"),
    "train": ("robseg_lib.train", "train a segmentation model: clean, AT or PIR-AT"),
    "pretrain": (
        "robseg_lib.pretrain",
        "pre-train a tiny backbone on digit classification (clean or robust)",
    ),
    "zoo": ("robseg_lib.zoo", "list or train the models of a profile's zoo"),
    "book": ("robseg_lib.book_build", "execute the notebooks and build the HTML book"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m robseg_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if a in _COMMANDS), None)
    for name, (module, help_text) in _COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the module that runs: start-up stays fast
            importlib.import_module(module).configure_parser(sub_parser)
    args = parser.parse_args(argv)
    return int(importlib.import_module(_COMMANDS[args.command][0]).run_from_args(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
