"""Allow ``python -m napari_risnet``."""
from napari_risnet.cli import main

raise SystemExit(main())
