"""An in-memory OS keyring for tests: secrets go somewhere real, never the user's keyring."""

from __future__ import annotations

import keyring
from keyring.backend import KeyringBackend


class MemoryKeyring(KeyringBackend):
    """An in-memory OS keyring."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        if (service, username) not in self.store:
            raise keyring.errors.PasswordDeleteError(username)
        del self.store[(service, username)]


class EnvKeyring(MemoryKeyring):
    """The OS keyring of a child process: starts with the JSON in ``TEST_KEYRING`` (never a file).

    Selected with ``PYTHON_KEYRING_BACKEND=tests.keyrings.EnvKeyring``, so a subprocess finds
    a secret "in its keyring" the way an installed app would.
    """

    def __init__(self) -> None:
        import json
        import os

        super().__init__()
        for key, value in json.loads(os.environ.get("TEST_KEYRING", "{}")).items():
            service, _, username = key.partition("/")
            self.store[(service, username)] = value
