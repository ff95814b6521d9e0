"""Reddit API credentials: the OS keyring first, then environment variables, then praw.ini.

A Reddit "script" app (https://www.reddit.com/prefs/apps) gives a client id and a client secret;
reading public subreddits needs nothing more. The secret is never logged, printed, put in an
error message or written to a run folder: :class:`RedditCredentials` hides it from ``repr``.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field

from engine.secrets import SERVICE, usable_keyring
from training.errors import TrainingError

# Keyring entries (service "talk-to-transformers"), one per field.
KEYRING_KEYS = {
    "client_id": "reddit_client_id",
    "client_secret": "reddit_client_secret",
    "user_agent": "reddit_user_agent",
    "username": "reddit_username",
    "password": "reddit_password",
}
# Environment variables, same fields.
ENV_VARS = {
    "client_id": "REDDIT_CLIENT_ID",
    "client_secret": "REDDIT_CLIENT_SECRET",
    "user_agent": "REDDIT_USER_AGENT",
    "username": "REDDIT_USERNAME",
    "password": "REDDIT_PASSWORD",
}
# praw.ini sections tried after an explicit one and praw's own ``praw_site`` variable.
PRAW_SITES = ("talk-to-transformers", "DEFAULT")
# Reddit asks every client for a descriptive User-Agent; this one is used when none is set.
DEFAULT_USER_AGENT = "python:talk-to-transformers:v0.1 (persona training)"

CREDENTIALS_HINT = (
    "Create a 'script' app at https://www.reddit.com/prefs/apps, then either set the "
    "environment variables REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET (optionally "
    "REDDIT_USER_AGENT), or add client_id and client_secret to a [talk-to-transformers] "
    "section of ~/.config/praw.ini, or store them in the OS keyring with training.credentials."
    "store_reddit_credentials()."
)


@dataclass(frozen=True)
class RedditCredentials:
    """What praw needs to sign in; ``source`` says where they came from (keyring, env, praw.ini)."""

    client_id: str
    client_secret: str = field(repr=False)
    user_agent: str = DEFAULT_USER_AGENT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = "given"


def find_reddit_credentials(site_name: str | None = None) -> RedditCredentials | None:
    """The first complete set (client id and secret) from keyring, env or praw.ini; else None."""
    for values, source in (
        (_from_keyring(), "keyring"),
        (_from_env(), "environment"),
        *(_from_praw_ini(site) for site in _praw_sites(site_name)),
    ):
        if values.get("client_id") and values.get("client_secret"):
            return RedditCredentials(
                client_id=values["client_id"],
                client_secret=values["client_secret"],
                user_agent=values.get("user_agent") or DEFAULT_USER_AGENT,
                username=values.get("username") or None,
                password=values.get("password") or None,
                source=source,
            )
    return None


def reddit_credentials(site_name: str | None = None) -> RedditCredentials:
    """Like :func:`find_reddit_credentials`, but raises when none are set.

    Raises:
        TrainingError: code ``reddit_credentials_missing``, whose hint says how to set them.

    """
    found = find_reddit_credentials(site_name)
    if found is None:
        raise TrainingError(
            "No Reddit API credentials were found (keyring, environment or praw.ini).",
            hint=CREDENTIALS_HINT,
            code="reddit_credentials_missing",
        )
    return found


def store_reddit_credentials(
    client_id: str,
    client_secret: str,
    user_agent: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Save the credentials in the OS keyring; fields left out are removed from it.

    Raises:
        TrainingError: code ``keyring_unavailable`` when there is no keyring backend.

    """
    kr = usable_keyring()
    if kr is None:
        raise TrainingError(
            "No OS keyring is available to store the Reddit credentials.",
            hint="Set REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET in the environment instead.",
            code="keyring_unavailable",
        )
    values = {"client_id": client_id, "client_secret": client_secret, "user_agent": user_agent,
              "username": username, "password": password}
    for name, value in values.items():
        if value:
            kr.set_password(SERVICE, KEYRING_KEYS[name], value)
        else:
            _delete(kr, KEYRING_KEYS[name])  # no stale half from an older set


def clear_reddit_credentials() -> bool:
    """Remove the Reddit credentials from the keyring; True if any were there."""
    kr = usable_keyring()
    if kr is None:
        return False
    removed = [_delete(kr, key) for key in KEYRING_KEYS.values()]
    return any(removed)


def _delete(kr, key: str) -> bool:
    try:
        kr.delete_password(SERVICE, key)
    except Exception:  # keyring raises PasswordDeleteError when absent
        return False
    return True


def _from_keyring() -> dict[str, str]:
    kr = usable_keyring()
    if kr is None:
        return {}
    values = {}
    for name, key in KEYRING_KEYS.items():
        try:
            value = kr.get_password(SERVICE, key)
        except Exception:  # a locked or broken keyring must not stop the other sources
            return {}
        if value:
            values[name] = value
    return values


def _from_env() -> dict[str, str]:
    return {name: os.environ[var] for name, var in ENV_VARS.items() if os.environ.get(var)}


def _praw_sites(site_name: str | None) -> list[str]:
    sites = [site_name, os.environ.get("praw_site"), *PRAW_SITES]
    return list(dict.fromkeys(s for s in sites if s))


def _from_praw_ini(site: str) -> tuple[dict[str, str], str]:
    """Values of one praw.ini section, read by praw itself (so its search path applies)."""
    from praw.config import Config

    try:
        config = Config(site)
    except (configparser.Error, KeyError, ValueError):
        return {}, f"praw.ini [{site}]"
    values = {}
    for name in KEYRING_KEYS:
        value = getattr(config, name, None)
        if isinstance(value, str) and value:
            values[name] = value
    return values, f"praw.ini [{site}]"
