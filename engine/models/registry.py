"""Which personas exist: the bundled ones in ``resources/personas`` and the user's own."""

from __future__ import annotations

from pathlib import Path

from engine import paths
from engine.errors import PersonaError
from engine.models.persona import PERSONA_FILE, Persona, load_persona

DEFAULT_PERSONA = "starter"


def persona_folders() -> list[Path]:
    """Folders that hold a persona.json; the user's shadow bundled ones of the same name."""
    found: dict[str, Path] = {}
    for root in (paths.resources_dir() / "personas", paths.personas_dir()):
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / PERSONA_FILE).is_file() and not folder.name.startswith("."):
                    found[folder.name] = folder
    return list(found.values())


def list_personas() -> tuple[list[Persona], list[PersonaError]]:
    """All valid personas, and the errors of the invalid ones (so one bad folder hides none)."""
    personas: list[Persona] = []
    errors: list[PersonaError] = []
    for folder in persona_folders():
        try:
            personas.append(load_persona(folder))
        except PersonaError as err:
            errors.append(err)
    return personas, errors


def find_persona(ref: str | None) -> Persona:
    """Resolve ``ref`` (an id, a name, or a folder path) to a persona."""
    ref = ref or DEFAULT_PERSONA
    folders = {f.name: f for f in persona_folders()}
    # An installed persona's id wins over a folder of that name in the working directory
    # (the folder it was added from, say); a path is taken as one when it looks like one.
    if ref in folders:
        return load_persona(folders[ref])
    as_path = Path(ref).expanduser()
    if as_path.is_dir():
        return load_persona(as_path)
    personas, _ = list_personas()
    for persona in personas:
        if persona.name.lower() == ref.lower():
            return persona
    from engine.models.catalogue import catalogue_entry

    entry = catalogue_entry(ref)
    if entry is not None and entry.kind == "hub":
        raise PersonaError(
            f"{entry.name} is not downloaded yet ({entry.size_mb} MB).",
            hint=f"Pull it with: talk-to-transformers models pull {entry.id}",
            code="persona_not_pulled",
        )
    if entry is not None and entry.kind == "recipe":
        raise PersonaError(
            f"{entry.name} is trained on your machine, and has not been trained yet.",
            hint=f"Train it: talk-to-transformers train all --recipe {entry.id} (or Tools → "
                 "Train a persona… in the window).",
            code="persona_not_trained",
        )
    known = ", ".join(sorted(folders)) or "none"
    raise PersonaError(
        f"No persona called {ref!r}.",
        hint=f"Installed personas: {known}. See: talk-to-transformers models list",
        code="persona_not_found",
    )
