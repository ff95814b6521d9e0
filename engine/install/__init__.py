"""Getting models onto this machine and off it.

Pulls (personas and voice models), added folders, removals, and persona archives to hand to
someone. Above engine.models, engine.tts and engine.voices (it uses all three), so none of them
needs to import it: the catalogue and the loaders stay below, what installs them sits here.
"""
