"""``token``: keep the Hugging Face token in the OS keyring (never echoed, never printed)."""

from __future__ import annotations

import argparse
import getpass
import os

from engine import secrets
from engine.errors import ConfigError


def run_token(args: argparse.Namespace) -> int:
    """Set, clear or describe the stored token."""
    if args.token_command == "set":
        token = getpass.getpass("Hugging Face token (input hidden): ").strip()
        if not token:
            raise ConfigError("No token given; nothing stored.", code="empty_input")
        secrets.store_hf_token(token)
        print("Token stored in the OS keyring.")
    elif args.token_command == "clear":
        print("Token removed." if secrets.clear_hf_token() else "No token was stored.")
    else:
        if secrets.hf_token() is None:
            print("No token: none in the keyring and HF_TOKEN is not set.")
        elif os.environ.get("HF_TOKEN") and secrets.hf_token() == os.environ["HF_TOKEN"]:
            print("Token comes from the HF_TOKEN environment variable.")
        else:
            print("Token comes from the OS keyring.")
    return 0
