"""What the command modules share: error output and the decoding flags.

Its own module so that ``engine.cli.main`` (the parser, which imports every command) and the
command modules never import each other.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.errors import TalkError


def decoding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding flags the user gave."""
    names = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty",
             "no_repeat_ngram_size", "do_sample")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def print_error(err: TalkError) -> None:
    """Show an error to a person: message, then the hint."""
    print(f"error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"  {err.hint}", file=sys.stderr)
