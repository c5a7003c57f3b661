"""Repository tooling (not part of the installed package): the book build."""
