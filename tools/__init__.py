"""Developer tools that are not part of the installed hydrocast package (run from the repository root)."""
