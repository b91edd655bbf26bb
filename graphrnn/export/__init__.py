"""graphrnn.export: a compiled model as a C library with a stable ABI (`export_library`),
and such a library loaded back into Python (`load_library`)."""
from __future__ import annotations

from .build import BuildError
from .library import ExportedLibrary, export_library
from .loader import LibraryError, LibraryInputError, LoadedLibrary, load_library

__all__ = ["export_library", "load_library", "ExportedLibrary", "LoadedLibrary",
           "LibraryError", "LibraryInputError", "BuildError"]
