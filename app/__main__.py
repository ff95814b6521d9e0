"""``python -m app``: open the window."""

from app.main import main

raise SystemExit(main())
