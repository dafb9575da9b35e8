"""Everything that talks to napari or Qt: the dock widgets, the layer converter, the reader,
sample data and the demo. The rest of the package never imports from here (a test checks it),
and importing this package alone imports neither napari nor Qt: each module brings its own."""
