"""How methods are measured: the one robot user (``robot``), the 2D protocol with its NoC / IoU
curves (``images``), the stack protocol (``stacks``) and the classic baselines (``baselines``).
Import the submodule you need; this package imports nothing itself, so the annotation layer can
share the robot's metrics without loading torch."""
