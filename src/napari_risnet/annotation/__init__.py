"""Annotation state beyond one session: projects that autosave, reopen and replay.

Free of napari and Qt (the widget and the CLI both use it).
"""
