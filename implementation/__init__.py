"""The default FRVT 1:1 implementation: detection, alignment and a TVM-compiled face embedder.

``implementation:FaceVerifier`` is what ``frvt validate`` runs by default. Importing this package
loads no model and no compiler.
"""

from implementation.pipeline import FaceVerifier

__all__ = ["FaceVerifier"]
