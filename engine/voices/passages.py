"""What a person reads aloud while a voice is enrolled: one text for the window and the CLI.

The opening of the Rainbow Passage (Fairbanks, *Voice and Articulation Drillbook*, 1940), which
speech work uses because it holds nearly every sound of English: a recording of it gives the
speaker encoder and the voice model a fair sample of how the person speaks.
"""

from __future__ import annotations

READ_ALOUD = ("The rainbow is a division of white light into many beautiful colours. These take "
              "the shape of a long round arch, with its path high above, and its two ends "
              "apparently beyond the horizon.")
