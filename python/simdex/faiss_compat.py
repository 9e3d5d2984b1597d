"""The FAISS-style surface (`simdex.faiss`) under its earlier module name; ``simdex`` imports these names to its top
level, so ``import simdex as faiss`` runs FAISS code."""

from .faiss import *  # noqa: F403
from .faiss import __all__  # noqa: F401
